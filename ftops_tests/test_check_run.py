"""`ftops check-run`: the detectors on run logs from the command line (in-process and console script)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ftops.check_run import check_paths, format_table
from ftops.cli import main
from ftops.policy import MonitoringPolicy, policy_from_dict

REQUIRED_KEYS = {"job_id", "rule", "severity", "first_step", "first_ts", "value", "threshold", "message"}
SPIKE_RULES = {"loss_spike", "loss_divergence", "grad_norm_spike", "grad_norm_explosion"}
# where the shared real data set sits beside a developer or CI checkout (see conftest.realdata)
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def _trainer_state(path: Path, *, nan_at: int | None = None, steps: int = 60) -> Path:
    """A small Trainer run: loss decays to a plateau, steady grad norm, lr inside the default range."""
    history = []
    for i in range(1, steps + 1):
        loss: float | str = 1.0 + math.exp(-i / 8)
        if nan_at is not None and i >= nan_at:
            loss = "NaN"
        history.append({"epoch": round(3 * i / steps, 4), "step": 10 * i, "loss": loss,
                        "grad_norm": 0.5 + 0.01 * (i % 3), "learning_rate": 2e-4})
    state = {"global_step": 10 * steps, "max_steps": 10 * steps, "num_train_epochs": 3, "log_history": history}
    # json.dumps writes NaN for the float, as the Trainer does; "NaN" strings are also what it writes
    text = json.dumps(state).replace('"NaN"', "NaN")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["check-run", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _console_script() -> str:
    # the venv's console script sits beside its interpreter; PATH is a fallback for other installs
    beside = Path(sys.executable).parent / ("ftops.exe" if os.name == "nt" else "ftops")
    found = str(beside) if beside.exists() else shutil.which("ftops")
    if found is None:
        pytest.skip("the ftops console script is not installed")
    return found


def _run_script(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run([_console_script(), "check-run", *argv], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


# --- trainer_state --------------------------------------------------------------------------------

def test_nan_loss_is_a_critical_alert_in_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _trainer_state(tmp_path / "job-nan" / "trainer_state.json", nan_at=40)

    rc, out, err = _run_cli(capsys, "--json", str(path))

    assert rc == 0, err
    alerts = json.loads(out)
    assert isinstance(alerts, list) and alerts
    for alert in alerts:
        assert REQUIRED_KEYS <= set(alert), alert
    nan = [a for a in alerts if a["rule"] == "loss_non_finite"]
    assert len(nan) == 1
    assert nan[0]["severity"] == "critical"
    assert nan[0]["job_id"] == "job-nan"
    assert nan[0]["first_step"] == 400
    assert nan[0]["value"] is None  # JSON has no NaN; the message says it
    assert "NaN" in nan[0]["message"]
    assert alerts[0]["severity"] == "critical"  # most severe first


def test_healthy_run_has_no_warning_or_critical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _trainer_state(tmp_path / "job-ok" / "trainer_state.json")

    rc, out, err = _run_cli(capsys, "--json", str(path))

    assert rc == 0, err
    alerts = json.loads(out)
    assert isinstance(alerts, list)
    assert not [a for a in alerts if a["severity"] in ("warning", "critical")], alerts

    rc, out, _ = _run_cli(capsys, str(path))
    assert rc == 0
    assert "0 alerts" in out and "1 job" in out


def test_table_output_lists_alerts_and_fits_the_width(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = _trainer_state(tmp_path / "job-nan" / "trainer_state.json", nan_at=40)
    monkeypatch.setenv("COLUMNS", "100")

    rc, out, _ = _run_cli(capsys, str(path))

    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["job", "rule", "severity"]
    row = next(line for line in lines if "loss_non_finite" in line)
    assert "job-nan" in row and "critical" in row and "step 400" in row
    assert max(len(line) for line in lines) <= 100
    assert lines[-1].startswith("1 alert (1 critical) in ")


def test_format_table_keeps_whole_messages_without_a_width(tmp_path: Path) -> None:
    path = _trainer_state(tmp_path / "job-nan" / "trainer_state.json", nan_at=40)
    anomalies, problems = check_paths([path])
    assert not problems
    message = anomalies.loc[anomalies["rule"] == "loss_non_finite", "message"].iloc[0]
    assert message.removeprefix("job-nan: ") in format_table(anomalies, None)
    assert format_table(anomalies.iloc[0:0], 80) == ""


def test_min_severity_leaves_out_lower_alerts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _trainer_state(tmp_path / "job-nan" / "trainer_state.json", nan_at=40)
    rc, out, _ = _run_cli(capsys, "--json", "--min-severity", "critical", str(path))
    assert rc == 0
    assert {a["severity"] for a in json.loads(out)} == {"critical"}


def test_trainer_state_under_another_name_is_recognised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _trainer_state(tmp_path / "copied" / "state.json", nan_at=40)
    rc, out, err = _run_cli(capsys, "--json", str(path))
    assert rc == 0, err
    assert "loss_non_finite" in {a["rule"] for a in json.loads(out)}


# --- unreadable input ------------------------------------------------------------------------------

def test_missing_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope" / "trainer_state.json"
    rc, out, err = _run_cli(capsys, str(missing))
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"ftops check-run: {missing}: ")


@pytest.mark.parametrize("name, text", [
    ("trainer_state.json", '{"log_history": [{"loss": 1.0, "step": '),  # truncated mid-write
    ("trainer_state.json", '{"global_step": 10}'),  # JSON, but not a trainer state
    ("metrics.jsonl", ""),
    ("history.csv", ""),
    ("notes.txt", "hello"),
])
def test_corrupt_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            name: str, text: str) -> None:
    path = tmp_path / "run" / name
    path.parent.mkdir()
    path.write_text(text)
    rc, out, err = _run_cli(capsys, "--json", str(path))
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"ftops check-run: {path}: ")


def test_one_unreadable_path_fails_the_whole_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _trainer_state(tmp_path / "job-ok" / "trainer_state.json")
    bad = tmp_path / "job-bad" / "trainer_state.json"
    bad.parent.mkdir()
    bad.write_text("{")
    rc, out, err = _run_cli(capsys, str(good), str(bad), str(tmp_path / "gone.jsonl"))
    assert rc == 2 and out == ""
    assert len(err.splitlines()) == 2
    _, problems = check_paths([good, bad])
    assert len(problems) == 1 and problems[0].startswith(f"{bad}: ")


def test_folder_without_metric_files_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run_cli(capsys, str(tmp_path))
    assert rc == 2 and err.startswith(f"ftops check-run: {tmp_path}: no metric files in this folder (expected ")
    # what the inbox would not read either is not a metric file
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 8)
    (tmp_path / ".hidden.jsonl").write_text("{}\n")
    (tmp_path / "open.jsonl.part").write_text("{}\n")
    rc, _, err = _run_cli(capsys, str(tmp_path))
    assert rc == 2 and "no metric files in this folder" in err and len(err.splitlines()) == 1


# --- W&B run folder and metric exports -------------------------------------------------------------

def _wandb_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = ["_runtime,_step,_timestamp,train/epoch,train/global_step,train/learning_rate,train/loss"]
    for i in range(40):
        loss = "NaN" if i >= 30 else f"{1.0 + math.exp(-i / 6):.4f}"
        rows.append(f"{10 * i},{i},{1_700_000_000 + 10 * i},{i / 40:.3f},{10 * (i + 1)},0.0002,{loss}")
    (folder / "history.csv").write_text("\n".join(rows) + "\n")
    stats = ["_runtime,_timestamp,cpu,memory,gpu.0.gpu,gpu.0.memory,gpu.0.memoryAllocated,gpu.0.powerWatts,gpu.0.temp"]
    for i in range(30):
        stats.append(f"{15 * i},{1_700_000_000 + 15 * i},60,40,85,30,70,300,65")
    (folder / "system_stats.csv").write_text("\n".join(stats) + "\n")
    (folder / "wandb-metadata.json").write_text(json.dumps({"host": "node-1", "startedAt": "2023-11-14T22:13:20"}))
    return folder


def test_wandb_run_folder_and_its_csvs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _wandb_run(tmp_path / "a1b2c3d4")

    rc, out, err = _run_cli(capsys, "--json", str(run))
    assert rc == 0, err
    alerts = json.loads(out)
    nan = [a for a in alerts if a["rule"] == "loss_non_finite"]
    assert len(nan) == 1 and nan[0]["severity"] == "critical" and nan[0]["job_id"] == "a1b2c3d4"
    assert nan[0]["first_step"] == 310
    assert not [a for a in alerts if a["category"] == "resource"], alerts  # healthy GPU and host

    # the two CSVs given one by one are the same run, and a path given twice is read once
    rc, out2, _ = _run_cli(capsys, "--json", str(run / "history.csv"), str(run / "system_stats.csv"),
                           str(run / "history.csv"))
    assert rc == 0
    assert json.loads(out2) == alerts
    rc, out3, _ = _run_cli(capsys, "--json", str(run / "history.csv"), str(run))
    assert rc == 0
    assert json.loads(out3) == alerts


def test_wandb_corrupt_metadata_is_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _wandb_run(tmp_path / "a1b2c3d4")
    (run / "wandb-metadata.json").write_text("{broken")
    rc, out, err = _run_cli(capsys, "--json", str(run))
    assert rc == 0
    assert "loss_non_finite" in {a["rule"] for a in json.loads(out)}
    assert "1 rows rejected" in err and "wandb-metadata.json" in err


def test_wandb_folder_with_a_corrupt_csv_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _wandb_run(tmp_path / "a1b2c3d4")
    (run / "history.csv").write_text('a,b\n1,"unterminated\n')
    rc, out, err = _run_cli(capsys, str(run))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"ftops check-run: {run}: history.csv: ")


def _jsonl(path: Path, *, bad_rows: int = 0) -> Path:
    start = pd.Timestamp("2024-05-01T12:00:00Z")
    lines = []
    for i in range(30):
        ts = (start + pd.Timedelta(minutes=i)).isoformat()
        lines.append({"ts": ts, "job_id": "ft-llama-7b-lora-001", "metric": "loss", "value": 2.0 - 0.01 * i,
                      "step": 10 * i})
        # lr far above the default 1e-3 for the whole run: a warning
        lines.append({"ts": ts, "job_id": "ft-llama-7b-lora-001", "metric": "learning_rate", "value": 0.02,
                      "step": 10 * i})
    for i in range(bad_rows):
        lines.append({"ts": start.isoformat(), "job_id": "ft-llama-7b-lora-001", "metric": "loss",
                      "value": "not-a-number", "step": 1000 + i})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_metric_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _jsonl(tmp_path / "export.jsonl")
    rc, out, err = _run_cli(capsys, "--json", str(path))
    assert rc == 0, err
    alerts = json.loads(out)
    lr = [a for a in alerts if a["rule"] == "learning_rate_out_of_range"]
    assert lr and lr[0]["severity"] == "warning" and lr[0]["job_id"] == "ft-llama-7b-lora-001"
    assert lr[0]["threshold"] == pytest.approx(1e-3)
    assert err == ""


def test_rejected_rows_are_counted_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _jsonl(tmp_path / "export.jsonl", bad_rows=2)

    rc, out, err = _run_cli(capsys, "--json", str(path))
    assert rc == 0
    assert json.loads(out)
    assert len(err.splitlines()) == 1 and "2 rows rejected" in err

    rc, out, err = _run_cli(capsys, str(path))
    assert rc == 0 and err == ""
    assert "2 rows rejected" in out.splitlines()[-1]


def test_folder_of_exports_is_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A restarted job leaves one export per start in `<inbox>/metrics/<job_id>/`: the folder is the run."""
    folder = tmp_path / "metrics" / "ft-llama-7b-lora-001"
    first = _jsonl(folder / "hf-20240501T120000000000Z.jsonl")
    lines = [json.loads(line) for line in first.read_text().splitlines()]
    # the second start logs on from step 300, and its loss went NaN
    second = [{**line, "step": line["step"] + 300, "value": "NaN" if line["metric"] == "loss" else line["value"],
               "ts": (pd.Timestamp(line["ts"]) + pd.Timedelta(hours=1)).isoformat()} for line in lines]
    (folder / "nested").mkdir()
    (folder / "nested" / "hf-20240501T130000000000Z.jsonl").write_text(
        "\n".join(json.dumps(line) for line in second) + "\n")
    (folder / "hf-20240501T140000000000Z.jsonl.part").write_text('{"half": ')  # still being written

    rc, out, err = _run_cli(capsys, "--json", str(folder))
    assert rc == 0, err
    alerts = json.loads(out)
    nan = [a for a in alerts if a["rule"] == "loss_non_finite"]
    assert len(nan) == 1 and nan[0]["first_step"] == 300 and nan[0]["job_id"] == "ft-llama-7b-lora-001"
    # the folder given with one of its files reads that file once
    rc, out2, _ = _run_cli(capsys, "--json", str(folder), str(first))
    assert rc == 0 and json.loads(out2) == alerts
    rc, out, _ = _run_cli(capsys, str(folder))
    assert rc == 0 and out.splitlines()[-1].endswith("from 2 files in 1 path")


def test_inbox_reads_its_metrics_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inbox = tmp_path / "inbox"
    _jsonl(inbox / "metrics" / "ft-1" / "hf-1.jsonl")
    _wandb_run(inbox / "metrics" / "a1b2c3d4")
    _trainer_state(inbox / "metrics" / "job-nan" / "trainer_state.json", nan_at=40)
    (inbox / "jobs").mkdir()
    (inbox / "jobs" / "jobs.csv").write_text("job_id,status\nft-1,running\n")  # not metrics: left out
    (inbox / "billing").mkdir()
    (inbox / "billing" / "focus.csv").write_text("BilledCost\n1.0\n")

    rc, out, err = _run_cli(capsys, "--json", str(inbox))
    assert rc == 0, err
    alerts = json.loads(out)
    assert {a["job_id"] for a in alerts if a["rule"] == "loss_non_finite"} == {"a1b2c3d4", "job-nan"}
    assert "learning_rate_out_of_range" in {a["rule"] for a in alerts if a["job_id"] == "ft-llama-7b-lora-001"}
    # the same as the run folders and files given one by one
    rc, out2, _ = _run_cli(capsys, "--json", str(inbox / "metrics" / "a1b2c3d4"),
                           str(inbox / "metrics" / "job-nan" / "trainer_state.json"),
                           str(inbox / "metrics" / "ft-1" / "hf-1.jsonl"))
    assert rc == 0 and json.loads(out2) == alerts


def test_an_unreadable_file_in_a_folder_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _jsonl(tmp_path / "runs" / "good.jsonl")
    bad = tmp_path / "runs" / "bad.parquet"
    bad.write_bytes(b"not parquet")
    rc, out, err = _run_cli(capsys, str(tmp_path / "runs"))
    assert rc == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"ftops check-run: {bad}: ")


# --- policy --------------------------------------------------------------------------------------

def test_config_changes_thresholds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _jsonl(tmp_path / "export.jsonl")
    config = tmp_path / "ftops.yaml"
    config.write_text("monitoring:\n  learning_rate:\n    max: 0.05\n")
    rc, out, _ = _run_cli(capsys, "--json", "--config", str(config), str(path))
    assert rc == 0
    assert "learning_rate_out_of_range" not in {a["rule"] for a in json.loads(out)}
    # the pure function takes the whole policy or its monitoring part
    policy = policy_from_dict({"monitoring": {"learning_rate": {"max": 0.05}}})
    for p in (policy, policy.monitoring):
        anomalies, _ = check_paths([path], p)
        assert "learning_rate_out_of_range" not in set(anomalies["rule"])
    anomalies, _ = check_paths([path], MonitoringPolicy())
    assert "learning_rate_out_of_range" in set(anomalies["rule"])


@pytest.mark.parametrize("text, expected", [
    ("monitoring:\n  loss:\n    spike_robust_zz: 4\n", "monitoring.loss.spike_robust_zz: unknown key"),
    ("monitoring: [1, 2\n", "not valid YAML"),
])
def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str) -> None:
    path = _trainer_state(tmp_path / "job-ok" / "trainer_state.json")
    config = tmp_path / "ftops.yaml"
    config.write_text(text)
    rc, out, err = _run_cli(capsys, "--config", str(config), str(path))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("ftops check-run: ") and expected in err


def test_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _trainer_state(tmp_path / "job-ok" / "trainer_state.json")
    rc, _, err = _run_cli(capsys, "--config", str(tmp_path / "absent.yaml"), str(path))
    assert rc == 2 and "policy file not found" in err


# --- the installed console script ------------------------------------------------------------------

def test_console_script_json_and_exit_codes(tmp_path: Path) -> None:
    nan = _trainer_state(tmp_path / "job-nan" / "trainer_state.json", nan_at=40)
    done = _run_script("--json", str(nan), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    alerts = json.loads(done.stdout)
    critical = [a for a in alerts if a["severity"] == "critical"]
    assert critical and all(REQUIRED_KEYS <= set(a) for a in alerts)

    table = _run_script(str(nan), cwd=tmp_path)
    assert table.returncode == 0 and "loss_non_finite" in table.stdout

    corrupt = tmp_path / "broken" / "trainer_state.json"
    corrupt.parent.mkdir()
    corrupt.write_text("{]")
    failed = _run_script(str(corrupt), cwd=tmp_path)
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("ftops check-run: ")
    assert "Traceback" not in failed.stderr

    bad_config = tmp_path / "ftops.yaml"
    bad_config.write_text("monitoring:\n  nope: 1\n")
    failed = _run_script("--config", str(bad_config), str(nan), cwd=tmp_path)
    assert failed.returncode == 2 and "monitoring.nope: unknown key" in failed.stderr


# --- real data -------------------------------------------------------------------------------------

def _manifest_rows() -> list[tuple[str, str]]:
    manifest = REALDATA / "trainer_states" / "MANIFEST.csv"
    if not manifest.is_file():
        return []
    frame = pd.read_csv(manifest, dtype=str).fillna("")
    return list(zip(frame["file"], frame["flags"]))


def _real_runs() -> list[tuple[str, str, str]]:
    out = []
    for summary in sorted(REALDATA.glob("runs/*/runs_summary.csv")):
        codes = pd.read_csv(summary, dtype=str).fillna("").set_index("run_id")["exit_code"].to_dict()
        for run in sorted(p for p in (summary.parent / "runs").glob("*") if p.is_dir()):
            out.append((summary.parent.name, run.name, codes.get(run.name, "")))
    return out


@pytest.mark.parametrize("file, flags", _manifest_rows())
def test_realdata_trainer_states(realdata: Path, capsys: pytest.CaptureFixture[str], file: str, flags: str) -> None:
    rc, out, err = _run_cli(capsys, "--json", str(realdata / "trainer_states" / file))
    assert rc == 0, err
    alerts = json.loads(out)
    if not flags:
        assert not [a for a in alerts if a["severity"] == "critical"], [a["message"] for a in alerts]
    if "spikes=" in flags:
        assert SPIKE_RULES & {a["rule"] for a in alerts}, [a["message"] for a in alerts]


@pytest.mark.parametrize("folder, run, exit_code", _real_runs())
def test_realdata_wandb_runs(realdata: Path, capsys: pytest.CaptureFixture[str], folder: str, run: str,
                             exit_code: str) -> None:
    rc, out, err = _run_cli(capsys, "--json", str(realdata / "runs" / folder / "runs" / run))
    assert rc == 0, err
    alerts = json.loads(out)
    if exit_code == "0":
        # a run that finished cleanly never pages on its training curves (resource rules may:
        # several runs sit at 99 % of GPU memory)
        training = [a for a in alerts if a["category"] == "training" and a["severity"] == "critical"]
        assert not training, [a["message"] for a in training]


def test_a_job_registry_adds_the_liveness_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --jobs, a running job whose samples stopped long before the others' is heartbeat_lost and a
    preempted job is job_preempted, judged at the newest sample (never the wall clock)."""
    t0 = pd.Timestamp("2026-11-20T08:00:00Z")
    lines = []
    for job, minutes in (("alive", 180), ("hung", 30)):
        for m in range(minutes):
            ts = (t0 + pd.Timedelta(minutes=m)).isoformat().replace("+00:00", "Z")
            lines.append(json.dumps({"ts": ts, "job_id": job, "metric": "heartbeat", "value": 1.0}))
    export = tmp_path / "metrics.jsonl"
    export.write_text("\n".join(lines) + "\n")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,status,exit_reason,started_at,ended_at\n"
                    "alive,running,,2026-11-20T08:00:00Z,\n"
                    "hung,running,,2026-11-20T08:00:00Z,\n"
                    "gone,preempted,preempted,2026-11-20T08:00:00Z,2026-11-20T09:00:00Z\n")

    code, out, _ = _run_cli(capsys, str(export), "--jobs", str(jobs), "--json")
    assert code == 0
    found = {(a["job_id"], a["rule"]) for a in json.loads(out)}
    assert ("hung", "heartbeat_lost") in found and ("gone", "job_preempted") in found
    assert not {rule for job, rule in found if job == "alive"}

    # judged an hour into the run, the hung job was still within its timeout
    code, out, _ = _run_cli(capsys, str(export), "--jobs", str(jobs), "--json",
                            "--as-of", "2026-11-20T08:40:00Z")
    assert ("hung", "heartbeat_lost") not in {(a["job_id"], a["rule"]) for a in json.loads(out)}

    # without the registry the same export raises no liveness alert at all
    code, out, _ = _run_cli(capsys, str(export), "--json")
    assert not {a["rule"] for a in json.loads(out)} & {"heartbeat_lost", "job_preempted"}


def test_an_unusable_job_registry_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = _trainer_state(tmp_path / "trainer_state.json")
    jobs = tmp_path / "jobs.csv"
    jobs.write_bytes("job_id,status\nx,running\n".encode("utf-16"))
    code, _, err = _run_cli(capsys, str(export), "--jobs", str(jobs))
    assert code == 2 and err.count("\n") == 1 and "--jobs" in err
