"""The synthetic demo fleet: reproducible, valid against the contracts, and its faults are in the data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ftops.demo_fleet import (
    BILL_LAG_HOURS,
    DEMO_INSTANCES,
    FAULTS,
    FOCUS_COLUMNS,
    OVERRUN_CATEGORY,
    DemoManifest,
    demo_policy,
    write_demo_inbox,
)
from ftops.agent import SOURCE as AGENT_SOURCE
from ftops.integrations.hf import SOURCE as CALLBACK_SOURCE
from ftops.monitoring.liveness import liveness_anomalies, signs_of_life_from_samples
from ftops.policy import policy_from_dict
from ftops.schemas import JOBS, METRICS, validate

END = pd.Timestamp("2026-03-18T09:00:00Z")
SMALL = dict(seed=3, n_jobs=18, days=2, end=END)


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _long(inbox: Path, job_id: str) -> pd.DataFrame:
    files = sorted((inbox / "metrics" / job_id).glob("*.jsonl"))
    # pandas reads Python's NaN token, which is what json.dumps writes for a diverged loss
    return pd.concat([pd.read_json(f, lines=True, dtype={"device": str}) for f in files], ignore_index=True)


def _series(frame: pd.DataFrame, metric: str) -> pd.Series:
    return frame.loc[frame["metric"] == metric, "value"].reset_index(drop=True)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoManifest]:
    inbox = tmp_path_factory.mktemp("demo") / "inbox"
    return inbox, write_demo_inbox(inbox, **SMALL)


@pytest.fixture(scope="module")
def jobs(small: tuple[Path, DemoManifest]) -> pd.DataFrame:
    inbox, _ = small
    return validate(pd.read_csv(inbox / "jobs" / "jobs.csv"), JOBS)


def manifest_window_contains(manifest: DemoManifest, epoch_s: float) -> bool:
    return manifest.start <= pd.Timestamp(epoch_s, unit="s", tz="UTC") <= manifest.end


def _fault_jobs(manifest: DemoManifest, fault: str) -> list[str]:
    return [f.job_id for f in manifest.faults if f.fault == fault]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, small: tuple[Path, DemoManifest]) -> None:
    inbox, manifest = small
    again = write_demo_inbox(tmp_path / "again", **SMALL)
    assert _all_bytes(inbox) == _all_bytes(tmp_path / "again")
    assert again == manifest
    other = write_demo_inbox(tmp_path / "other", **{**SMALL, "seed": 4})
    assert (tmp_path / "other" / "jobs" / "jobs.csv").read_bytes() != (inbox / "jobs" / "jobs.csv").read_bytes()
    assert other.counts != manifest.counts


def test_trainer_state_mtime_is_reproducible(tmp_path: Path, small: tuple[Path, DemoManifest]) -> None:
    inbox, _ = small
    (state,) = inbox.glob("metrics/*/trainer_state.json")
    # the reader anchors step times on the mtime (the Trainer writes the file at its last step),
    # so the mtime is part of the content here: inside the window and the same on every run
    assert manifest_window_contains(small[1], state.stat().st_mtime)
    write_demo_inbox(tmp_path / "again", **SMALL)
    assert (tmp_path / "again" / state.relative_to(inbox)).stat().st_mtime == state.stat().st_mtime


def test_jobs_csv_is_a_consistent_registry(small: tuple[Path, DemoManifest], jobs: pd.DataFrame) -> None:
    _, manifest = small
    assert len(jobs) == SMALL["n_jobs"] == manifest.counts["jobs"]
    assert jobs["job_id"].is_unique
    start, end = manifest.start, manifest.end
    assert end == END and start == END - pd.Timedelta(days=SMALL["days"])
    for col in ("submitted_at", "started_at", "ended_at"):
        ts = jobs[col].dropna()
        assert ((ts >= start) & (ts <= end)).all(), col
    assert (jobs["started_at"].dropna() >= jobs.loc[jobs["started_at"].notna(), "submitted_at"]).all()
    ended = jobs["ended_at"].notna()
    assert (jobs.loc[ended, "ended_at"] > jobs.loc[ended, "started_at"]).all()

    status = jobs["status"]
    assert set(status) >= {"succeeded", "failed", "preempted", "running", "pending"}
    assert jobs.loc[status == "pending", "started_at"].isna().all()
    assert jobs.loc[status == "running", "ended_at"].isna().all()
    assert jobs.loc[status.isin(["succeeded", "failed", "preempted"]), "ended_at"].notna().all()
    # the scenario slots' oom and nan_loss, and whatever the spec-driven draws add
    assert {"oom", "nan_loss"} <= set(jobs.loc[status == "failed", "exit_reason"]) <= {"oom", "nan_loss", "code_error"}
    assert (jobs.loc[status == "preempted", "exit_reason"] == "preempted").all()
    assert (jobs.loc[status == "preempted", "pricing"] == "spot").all()
    assert jobs.loc[status.isin(["succeeded", "running", "pending"]), "exit_reason"].isna().all()

    for _, job in jobs.iterrows():
        inst = DEMO_INSTANCES[job["instance_type"]]
        assert (job["gpu_type"], job["gpu_count"]) == (inst.gpu_type, inst.gpu_count)
    assert set(jobs["technique"]) >= {"lora", "qlora", "full"}
    assert set(jobs["pricing"]) == {"spot", "on_demand"}
    assert jobs["budget_category"].nunique() == 3 and jobs["domain"].nunique() >= 3
    assert (jobs["total_steps"] > 0).all()


def test_manifest_lists_every_fault_once_per_job(small: tuple[Path, DemoManifest], jobs: pd.DataFrame) -> None:
    inbox, manifest = small
    # every scenario slot; code_error comes only from the spec-driven draws (not in every small fleet)
    assert set(FAULTS) - {"code_error"} <= {f.fault for f in manifest.faults} <= set(FAULTS)
    assert len({f.job_id for f in manifest.faults}) == len(manifest.faults)
    assert all(f.expected_rule == FAULTS[f.fault][0] for f in manifest.faults)
    assert {f.job_id for f in manifest.faults} <= set(jobs["job_id"])
    on_disk = json.loads((inbox / "demo_manifest.json").read_text())
    assert on_disk == manifest.to_dict()
    by_id = jobs.set_index("job_id")
    for job_id in _fault_jobs(manifest, "spot_preemption"):
        assert by_id.loc[job_id, "status"] == "preempted"
    for fault, reason in (("loss_divergence", "nan_loss"), ("oom", "oom"), ("code_error", "code_error")):
        assert (by_id.loc[_fault_jobs(manifest, fault), "exit_reason"] == reason).all(), fault
    assert by_id.loc[_fault_jobs(manifest, "budget_overrun")[0], "budget_category"] == OVERRUN_CATEGORY


def test_long_jsonl_is_canonical(small: tuple[Path, DemoManifest]) -> None:
    inbox, manifest = small
    files = sorted(inbox.glob("metrics/*/*.jsonl"))
    n = 0
    for f in files:
        lines = f.read_text().splitlines()
        n += len(lines)
        first = json.loads(lines[0])
        assert list(first) == ["ts", "job_id", "metric", "value", "step", "device", "host", "source"]
        assert first["ts"].endswith("Z") and first["job_id"] == f.parent.name
        frame = pd.read_json(f, lines=True, dtype={"device": str})
        assert set(frame["metric"]) <= set(METRICS), f
        assert frame["ts"].is_monotonic_increasing
    assert n == manifest.counts["metric_samples_jsonl"]
    assert manifest.counts["metric_files"] == len(list(inbox.glob("metrics/*/*")))


def test_sources_are_the_labels_the_real_writers_use(small: tuple[Path, DemoManifest]) -> None:
    inbox, _ = small
    for pattern, label in (("agent-*.jsonl", AGENT_SOURCE), ("trainer.jsonl", CALLBACK_SOURCE)):
        files = sorted(inbox.glob(f"metrics/*/{pattern}"))
        assert files, pattern
        sources = set(pd.concat([pd.read_json(f, lines=True, dtype={"device": str})["source"] for f in files]))
        assert sources == {label}, pattern


def test_resource_and_training_cadence(small: tuple[Path, DemoManifest], jobs: pd.DataFrame) -> None:
    inbox, manifest = small
    faulty = {f.job_id for f in manifest.faults}
    candidates = jobs[jobs["started_at"].notna() & ~jobs["job_id"].isin(faulty)
                      & jobs["job_id"].map(lambda j: (inbox / "metrics" / j / "trainer.jsonl").exists())]
    job = candidates.loc[candidates["started_at"].idxmin()]  # the longest observed one
    frame = _long(inbox, job["job_id"])
    frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601", utc=True)
    gpu = frame[frame["metric"] == "gpu_utilization_pct"]
    assert sorted(gpu["device"].unique()) == [str(i) for i in range(job["gpu_count"])]
    assert gpu.groupby("device")["ts"].diff().dt.total_seconds().median() == 30
    hb = frame[frame["metric"] == "heartbeat"]["ts"].diff().dt.total_seconds()
    assert hb.median() == 60
    log = frame[frame["metric"] == "training_loss"]["ts"].diff().dt.total_seconds().median()
    assert 5 <= log <= 90
    n_evals = (frame["metric"] == "val_loss").sum()
    assert 1 <= n_evals <= 12 and (job["status"] != "succeeded" or n_evals >= 8)


def test_healthy_jobs_stay_within_default_rules(small: tuple[Path, DemoManifest], jobs: pd.DataFrame) -> None:
    inbox, manifest = small
    faulty = {f.job_id for f in manifest.faults}
    healthy = [j for j in jobs.loc[jobs["started_at"].notna(), "job_id"]
               if j not in faulty and (inbox / "metrics" / j / "trainer.jsonl").exists()]
    assert len(healthy) >= 2  # 18 jobs: 11 scenario slots, a pending one, the spec-driven failures
    for job_id in healthy:
        frame = _long(inbox, job_id)
        lr = _series(frame, "learning_rate")
        assert lr.between(1e-6, 1e-3).all(), job_id
        util = _series(frame, "gpu_utilization_pct")
        assert 75 <= util.mean() <= 95 and util.max() < 98, job_id
        assert _series(frame, "gpu_memory_used_ratio").max() < 0.9
        assert _series(frame, "cpu_utilization_pct").max() < 90
        loss = _series(frame, "training_loss")
        assert loss.notna().all() and loss.iloc[-20:].mean() < loss.iloc[:20].mean(), job_id
        grad = _series(frame, "grad_norm")
        assert grad.between(0.2, 10).all(), job_id
        acc = _series(frame, "domain_accuracy")
        assert acc.empty or acc.min() >= 0.85


def test_injected_faults_are_in_the_data(small: tuple[Path, DemoManifest]) -> None:
    inbox, manifest = small

    for diverged in _fault_jobs(manifest, "loss_divergence"):  # the slot's, and any drawn from the spec
        loss = _series(_long(inbox, diverged), "training_loss")
        assert loss.isna().sum() >= 1 and loss.iloc[-1] != loss.iloc[-1]  # ends on NaN
        assert loss.dropna().iloc[-1] > 1.5 * loss.dropna().iloc[-60:-40].median()

    (idle,) = _fault_jobs(manifest, "gpu_underutilized")
    util = _series(_long(inbox, idle), "gpu_utilization_pct")
    assert util.mean() < 50 and util.between(25, 50).all()

    for oom in _fault_jobs(manifest, "oom"):
        assert _series(_long(inbox, oom), "gpu_memory_used_ratio").max() > 0.97

    (exploded,) = _fault_jobs(manifest, "gradient_explosion")
    grad = _series(_long(inbox, exploded), "grad_norm")
    assert grad.max() > 30 * grad.median()

    (lr_job,) = _fault_jobs(manifest, "lr_out_of_range")
    assert _series(_long(inbox, lr_job), "learning_rate").max() > 1e-3

    (slow,) = _fault_jobs(manifest, "throughput_degradation")
    sps = _series(_long(inbox, slow), "samples_per_second")
    n = len(sps)
    assert sps.iloc[-n // 10:].median() < 0.8 * sps.iloc[n // 10: n // 4].median()

    (overfit,) = _fault_jobs(manifest, "val_overfitting")
    frame = _long(inbox, overfit)
    val, train = _series(frame, "val_loss"), _series(frame, "training_loss")
    best = int(val.idxmin())
    assert 0 < best < len(val) - 3 and val.iloc[-1] > 1.1 * val.min()
    assert train.iloc[-30:].mean() < train.iloc[len(train) // 2 - 15: len(train) // 2 + 15].mean()


def test_lost_node_is_silent_for_hours_while_the_registry_says_running(
        small: tuple[Path, DemoManifest], jobs: pd.DataFrame) -> None:
    inbox, manifest = small
    (lost,) = _fault_jobs(manifest, "heartbeat_lost")
    by_id = jobs.set_index("job_id")
    assert by_id.loc[lost, "status"] == "running" and pd.isna(by_id.loc[lost, "ended_at"])
    frame = _long(inbox, lost)
    frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601", utc=True)
    last_heartbeat = frame.loc[frame["metric"] == "heartbeat", "ts"].max()
    last_step = frame.loc[frame["metric"] == "training_loss", "ts"].max()
    assert manifest.end - max(last_heartbeat, last_step) >= pd.Timedelta(hours=2)
    onset = next(f.onset for f in manifest.faults if f.fault == "heartbeat_lost")
    assert abs(pd.Timestamp(onset) - last_heartbeat) <= pd.Timedelta(minutes=1)

    # the other running jobs keep beating to the end, so only the lost one looks dead
    others = [j for j in jobs.loc[jobs["status"] == "running", "job_id"] if j != lost]
    assert others
    for job_id in others:
        beats = _long(inbox, job_id)
        beats = pd.to_datetime(beats.loc[beats["metric"] == "heartbeat", "ts"], format="ISO8601", utc=True)
        assert manifest.end - beats.max() <= pd.Timedelta(minutes=2), job_id


def test_liveness_rules_find_exactly_the_liveness_faults(small: tuple[Path, DemoManifest],
                                                         jobs: pd.DataFrame) -> None:
    inbox, manifest = small
    samples = pd.concat([pd.read_json(f, lines=True, dtype={"device": str, "step": "Int64"})
                         for f in sorted(inbox.glob("metrics/*/*.jsonl"))], ignore_index=True)
    samples["ts"] = pd.to_datetime(samples["ts"], format="ISO8601", utc=True)
    found = liveness_anomalies(jobs, signs_of_life_from_samples(samples), now=manifest.end)
    got = sorted(zip(found["job_id"], found["rule"]))
    want = sorted((f.job_id, f.expected_rule) for f in manifest.faults
                  if f.expected_rule in ("heartbeat_lost", "job_preempted"))
    assert got == want and {r for _, r in want} == {"heartbeat_lost", "job_preempted"}


def test_preempted_jobs_fall_silent_before_they_end(small: tuple[Path, DemoManifest], jobs: pd.DataFrame) -> None:
    inbox, manifest = small
    by_id = jobs.set_index("job_id")
    for job_id in _fault_jobs(manifest, "spot_preemption"):
        frame = _long(inbox, job_id)
        last_hb = pd.to_datetime(frame.loc[frame["metric"] == "heartbeat", "ts"], format="ISO8601", utc=True).max()
        assert by_id.loc[job_id, "ended_at"] - last_hb >= pd.Timedelta(minutes=1)


def test_other_formats(small: tuple[Path, DemoManifest]) -> None:
    inbox, manifest = small
    wide = sorted(inbox.glob("metrics/*/trainer_log.csv"))
    assert len(wide) == 2
    frame = pd.read_csv(wide[0])
    assert list(frame.columns[:4]) == ["ts", "job_id", "step", "training_loss"]
    assert {"learning_rate", "grad_norm", "val_loss", "domain_accuracy"} <= set(frame.columns)
    (state_file,) = inbox.glob("metrics/*/trainer_state.json")
    state = json.loads(state_file.read_text())
    history = state["log_history"]
    assert {"loss", "learning_rate", "grad_norm", "epoch", "step"} <= set(history[0])
    assert any("eval_loss" in e for e in history) and "train_runtime" in history[-1]
    assert state["global_step"] == history[-1]["step"]
    # the alternative formats keep their resource samples in agent JSONL
    assert list(state_file.parent.glob("agent-*.jsonl"))


def test_billing_is_focus_tagged_and_lags(small: tuple[Path, DemoManifest], jobs: pd.DataFrame) -> None:
    inbox, manifest = small
    files = sorted((inbox / "billing").glob("focus-*.csv"))
    assert len(files) == manifest.counts["billing_files"] >= SMALL["days"]
    with open(files[0], newline="") as fh:
        assert tuple(next(csv.reader(fh))) == FOCUS_COLUMNS
    bills = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files], ignore_index=True)
    assert len(bills) == manifest.counts["billing_lines"]
    assert "NULL" in set(bills["ChargeClass"])
    for f in files:
        day = f.stem.removeprefix("focus-")
        assert pd.read_csv(f, dtype=str)["ChargePeriodStart"].str.startswith(day).all()

    tags = bills["Tags"].map(lambda t: None if t == "NULL" else json.loads(t))
    tagged = tags.notna()
    assert {t["job_id"] for t in tags[tagged]} <= set(jobs["job_id"])
    assert all({"job_id", "budget_category", "team"} <= set(t) for t in tags[tagged])
    # jobs that ran long enough to be billed are billed; pending ones are not
    assert {t["job_id"] for t in tags[tagged]}.isdisjoint(set(jobs.loc[jobs["status"] == "pending", "job_id"]))
    assert (~tagged).sum() >= 2 and (bills["ChargeCategory"] == "Credit").sum() == 1
    assert (bills.loc[bills["ChargeCategory"] == "Credit", "BilledCost"].astype(float) < 0).all()
    assert bills["Id"].is_unique

    usage = bills[tagged]
    cost = usage["BilledCost"].astype(float)
    qty = usage["ConsumedQuantity"].astype(float)
    assert ((qty > 0) & (qty <= 1)).all()
    od = usage["PricingCategory"] == "Standard"
    unit = usage.loc[od, "ListUnitPrice"].astype(float)
    assert np.allclose(cost[od], qty[od] * unit, atol=1e-6)
    newest = pd.to_datetime(bills["ChargePeriodStart"]).max().tz_localize("UTC")
    assert newest < manifest.end - pd.Timedelta(hours=BILL_LAG_HOURS)


def test_billing_header_matches_the_real_focus_sample(realdata: Path, small: tuple[Path, DemoManifest]) -> None:
    with open(realdata / "billing" / "focus_1.0_sample_1000_anonymized_real.csv", newline="") as fh:
        real = tuple(next(csv.reader(fh)))
    assert real == FOCUS_COLUMNS


def test_policy_is_accepted_and_one_budget_is_over(small: tuple[Path, DemoManifest], jobs: pd.DataFrame) -> None:
    inbox, manifest = small
    policy = policy_from_dict(manifest.policy)
    assert set(policy.budgets) == {"research", "product", "experiments"}
    assert set(policy.prices) == set(DEMO_INSTANCES)
    assert all(p.spot_usd_per_hour < p.on_demand_usd_per_hour for p in policy.prices.values())
    assert demo_policy(**SMALL) == manifest.policy
    assert yaml.safe_load((inbox / "demo_policy.yaml").read_text()) == manifest.policy

    # month-to-date spend as budget_status sees it: usage hours x list price (bills lag, so the
    # newest hours are estimates anyway); spot prices move around the table's level by a few %
    month = manifest.end.tz_convert("UTC").tz_localize(None).to_period("M").start_time.tz_localize("UTC")
    started = jobs["started_at"].clip(lower=month)
    stopped = jobs["ended_at"].fillna(manifest.end)
    hours = ((stopped - started).dt.total_seconds() / 3600).clip(lower=0).fillna(0)
    price = [policy.prices[i].spot_usd_per_hour if p == "spot" else policy.prices[i].on_demand_usd_per_hour
             for i, p in zip(jobs["instance_type"], jobs["pricing"])]
    spent = (hours * pd.Series(price, index=jobs.index)).groupby(jobs["budget_category"]).sum()
    used = {c: spent.get(c, 0.0) / b.limit_usd for c, b in policy.budgets.items()}
    assert used[OVERRUN_CATEGORY] > 0.95
    assert all(v < 0.8 for c, v in used.items() if c != OVERRUN_CATEGORY)

    # and the expensive job that drives it is already in the bills
    files = sorted((inbox / "billing").glob("focus-*.csv"))
    bills = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files], ignore_index=True)
    (expensive,) = _fault_jobs(manifest, "budget_overrun")
    assert bills["Tags"].str.contains(f'"job_id": "{expensive}"').any()
    assert jobs.set_index("job_id").loc[expensive, "ended_at"] < manifest.end - pd.Timedelta(hours=BILL_LAG_HOURS)


def test_console_logs_end_the_way_the_job_ended(small: tuple[Path, DemoManifest], jobs: pd.DataFrame) -> None:
    from ftops.predict.failures import classify_console
    from ftops.readers.console_log import read_console_log

    inbox, manifest = small
    started = jobs.loc[jobs["started_at"].notna(), "job_id"]
    assert sorted(p.stem for p in (inbox / "logs").glob("*.log")) == sorted(started)
    tails = pd.concat([read_console_log(str(inbox / "logs" / f"{j}.log")).accepted for j in started])
    typed = classify_console(tails.set_index("job_id")["tail"])["failure_type"]
    reasons = jobs.set_index("job_id")["exit_reason"]
    for job_id, reason in reasons[reasons.notna()].items():
        if reason != "preempted":  # a reclaimed node's console just stops
            assert typed[job_id] == reason, (job_id, reason, typed[job_id])
    assert typed[jobs.loc[jobs["status"] == "succeeded", "job_id"]].isna().all()


def test_failures_follow_the_spec_on_a_large_fleet() -> None:
    """Over many jobs ~15 % fail, and the risky specs fail more: the odds the risk model can learn."""
    from ftops.demo_fleet.plan import plan_fleet

    planned = [j for j in plan_fleet(7, 1000, 30, END) if j.status in ("succeeded", "failed", "preempted")]
    failed = np.array([j.status != "succeeded" for j in planned])
    assert 0.12 <= failed.mean() <= 0.22
    small_long = np.array([j.instance.gpu_memory_gib <= 24 and j.seq_len >= 4096 for j in planned])
    oom = np.array([j.exit_reason == "oom" for j in planned])
    assert oom[small_long].mean() > 5 * oom[~small_long].mean()
    spot = np.array([j.pricing == "spot" for j in planned])
    preempted = np.array([j.status == "preempted" for j in planned])
    assert preempted[~spot].sum() == 0 and preempted[spot].mean() > 0.1
    names = pd.Series([j.name for j in planned])
    assert names.duplicated().mean() > 0.15  # relaunches of a configuration keep its name


def test_too_few_jobs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_jobs"):
        write_demo_inbox(tmp_path, n_jobs=5, end=END)


def test_readers_accept_everything(small: tuple[Path, DemoManifest]) -> None:
    inbox_mod = pytest.importorskip("ftops.readers.inbox")
    for module in ("ftops.readers.metric_export", "ftops.readers.jobs", "ftops.readers.billing",
                   "ftops.readers.trainer_state"):
        pytest.importorskip(module)
    inbox, manifest = small
    accepted: dict[str, int] = {}
    for path in sorted(p for p in inbox.rglob("*") if p.is_file()):
        kind = inbox_mod.classify(path.relative_to(inbox).as_posix())
        if kind is None:
            continue
        result = inbox_mod.reader_for(kind, str(path))()
        assert result.rejected.empty, (path.name, result.rejection_counts())
        accepted[kind] = accepted.get(kind, 0) + len(result.accepted)
    assert accepted == {"jobs": manifest.counts["jobs"], "metrics": manifest.counts["metric_samples"],
                        "billing": manifest.counts["billing_lines"], "logs": manifest.counts["log_files"]}


def test_default_size_volume(tmp_path: Path) -> None:
    """The defaults make a fleet big enough to look real and small enough for a 2-core demo."""
    manifest = write_demo_inbox(tmp_path, end=END)
    c = manifest.counts
    assert c["jobs"] == 40
    assert 2_000_000 <= c["metric_samples"] <= 4_000_000
    assert c["metric_samples"] == (c["metric_samples_jsonl"] + c["metric_samples_wide_csv"]
                                   + c["metric_samples_trainer_state"])
    assert 300 <= c["billing_lines"] <= 3000 and c["billing_files"] == 7
    # one job per scenario slot (two preemptions), plus the faults drawn from the jobs' specs
    slots = [f for f in manifest.faults if "drawn from the spec" not in f.detail]
    assert len(slots) == len(FAULTS)  # len(FAULTS) - 1 slots (code_error has none) + a second preemption
