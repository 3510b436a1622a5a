from __future__ import annotations

import pandas as pd
import pytest

from ftops.costs import CurrencyMismatchError, attribute_costs, job_cost_summary, job_hours
from ftops.policy import InstancePrice

from .frames import bill, jobs, ts

PRICES = {"gpu.1x": InstancePrice(on_demand_usd_per_hour=10.0, spot_usd_per_hour=4.0)}
NOW = ts("2024-09-10 12:00")


def costs(billing, registry, now=NOW, **kwargs):
    return attribute_costs(billing, registry, job_hours(registry, now), PRICES, now, **kwargs)


def test_job_hours_cuts_running_time_at_hour_boundaries():
    registry = jobs(
        {"job_id": "a", "started_at": "2024-09-10 09:30"},  # running: until now
        {"job_id": "b", "started_at": "2024-09-10 10:00", "ended_at": "2024-09-10 10:15", "status": "succeeded"},
        {"job_id": "c", "started_at": "2024-09-10 10:00", "status": "failed"},  # stop time unknown
        {"job_id": "d", "status": "pending"},
    )
    usage = job_hours(registry, NOW)
    assert usage.groupby("job_id")["hours"].sum().to_dict() == {"a": 2.5, "b": 0.25}
    assert list(usage.loc[usage.job_id == "a", "hour_start"]) == [ts("2024-09-10 09:00"), ts("2024-09-10 10:00"),
                                                                  ts("2024-09-10 11:00")]


def test_job_hours_counts_instances_from_gpus_per_instance():
    registry = jobs({"job_id": "a", "started_at": "2024-09-10 11:00", "gpu_count": 16})
    assert job_hours(registry, NOW, {"gpu.1x": 8})["instances"].tolist() == [2.0]
    assert job_hours(registry, NOW)["instances"].tolist() == [1.0]


def test_tagged_lines_belong_to_their_job_with_the_registry_category():
    registry = jobs({"job_id": "a", "started_at": "2024-09-10 10:00", "budget_category": "research"})
    out = costs(bill({"at": "2024-09-10 10:00", "billed_cost": 9.0, "job_id": "a", "budget_category": "other"},
                     {"at": "2024-09-10 11:00", "billed_cost": 9.0, "job_id": "a"},
                     {"at": "2024-09-10 11:00", "billed_cost": 4.0, "job_id": "ghost", "budget_category": "x"}), registry)
    assert out["attribution"].tolist() == ["tag", "tag", "tag"]
    # the registry names a job's category; a job the registry does not know yet keeps its bill's tag
    assert out["budget_category"].tolist() == ["research", "research", "x"]
    assert out["job_id"].tolist() == ["a", "a", "ghost"]
    assert out["cost_usd"].sum() == 22.0 and not out["estimated"].any()


def test_untagged_lines_are_unattributed_not_dropped_unless_the_resource_maps_to_a_job():
    registry = jobs({"job_id": "a", "started_at": "2024-09-10 10:00", "ended_at": "2024-09-10 12:00",
                     "status": "succeeded"})
    billing = bill(
        {"at": "2024-09-10 10:00", "billed_cost": 10.0, "resource_id": "i-1", "provider": "AWS", "service_name": "EC2"},
        {"at": "2024-09-10 11:00", "billed_cost": 10.0, "resource_id": "i-1", "provider": "AWS", "service_name": "EC2"},
        {"at": "2024-09-10 10:00", "billed_cost": 2.5, "resource_id": "bucket", "provider": "AWS", "service_name": "S3"},
    )
    without_map = costs(billing, registry)
    lines = without_map[~without_map["estimated"]]
    assert lines["job_id"].isna().all() and (lines["attribution"] == "unattributed").all()
    assert set(lines["service_name"]) == {"EC2", "S3"} and lines["cost_usd"].sum() == 22.5

    with_map = costs(billing, registry, resource_map=pd.DataFrame({"job_id": ["a"], "resource_id": ["i-1"]}))
    by_attribution = with_map.groupby("attribution")["cost_usd"].sum().to_dict()
    assert by_attribution == {"resource_id": 20.0, "unattributed": 2.5}  # billed hours: no estimate left
    assert with_map.loc[with_map.attribution == "unattributed", "provider"].tolist() == ["AWS"]


def test_a_resource_shared_by_jobs_goes_to_the_job_running_then_or_is_split():
    registry = jobs(
        {"job_id": "a", "started_at": "2024-09-10 08:00", "ended_at": "2024-09-10 09:00", "status": "succeeded"},
        {"job_id": "b", "started_at": "2024-09-10 09:00", "ended_at": "2024-09-10 11:00", "status": "succeeded"},
        {"job_id": "c", "started_at": "2024-09-10 09:00", "ended_at": "2024-09-10 10:00", "status": "succeeded"},
    )
    node = pd.DataFrame({"job_id": ["a", "b", "c"], "resource_id": ["node-1"] * 3})
    out = costs(bill({"at": "2024-09-10 08:00", "billed_cost": 6.0, "resource_id": "node-1"},
                     {"at": "2024-09-10 09:00", "billed_cost": 6.0, "resource_id": "node-1"}), registry, resource_map=node)
    lines = out[~out["estimated"]]
    assert lines.groupby("job_id")["cost_usd"].sum().to_dict() == {"a": 6.0, "b": 3.0, "c": 3.0}
    assert lines["cost_usd"].sum() == 12.0
    assert set(lines.loc[lines.job_id != "a", "attribution"]) == {"resource_id_shared"}


def test_estimates_are_replaced_by_the_bill_never_counted_twice():
    registry = jobs({"job_id": "a", "started_at": "2024-09-10 08:00"})
    before = costs(bill(), registry)
    assert before["estimated"].all() and before["cost_usd"].sum() == pytest.approx(4 * 10.0)

    billed_two_hours = bill({"at": "2024-09-10 08:00", "billed_cost": 9.5, "job_id": "a"},
                            {"at": "2024-09-10 09:00", "billed_cost": 9.5, "job_id": "a"})
    after = costs(billed_two_hours, registry)
    estimates = after[after["estimated"]]
    assert estimates["period_start"].min() == ts("2024-09-10 10:00")
    assert after["cost_usd"].sum() == pytest.approx(19.0 + 2 * 10.0)
    # each clock hour is costed once: billed or estimated
    assert not after.groupby("period_start")["estimated"].nunique().gt(1).any()


def test_a_bill_for_part_of_an_hour_leaves_only_the_rest_estimated():
    registry = jobs({"job_id": "a", "started_at": "2024-09-10 11:00"})
    out = costs(bill({"at": "2024-09-10 11:00", "end": "2024-09-10 11:30", "billed_cost": 5.0, "job_id": "a"}), registry)
    assert out.loc[out.estimated, "running_hours"].tolist() == [0.5]
    assert out["cost_usd"].sum() == pytest.approx(10.0)


def test_credits_and_negative_lines_lower_cost_and_do_not_stop_estimates():
    registry = jobs({"job_id": "a", "started_at": "2024-09-10 10:00"})
    out = costs(bill({"at": "2024-09-01 00:00", "end": "2024-10-01 00:00", "billed_cost": -7.0, "job_id": "a"},
                     {"at": "2024-09-10 10:00", "billed_cost": -1.0, "job_id": "a"},
                     {"at": "2024-09-10 10:00", "billed_cost": -3.0}), registry)
    assert out["cost_usd"].sum() == pytest.approx(2 * 10.0 - 7.0 - 1.0 - 3.0)
    assert out.loc[out.estimated, "running_hours"].sum() == 2.0
    assert out.loc[out.job_id.isna(), "cost_usd"].tolist() == [-3.0]


@pytest.mark.parametrize("currencies, named", [(["USD", "EUR"], "['EUR', 'USD']"), (["EUR"], "['EUR']")])
def test_other_or_several_currencies_are_refused_naming_them(currencies, named):
    billing = bill(*({"at": "2024-09-10 10:00", "billed_cost": 1.0, "currency": c} for c in currencies))
    with pytest.raises(CurrencyMismatchError, match=named.replace("[", r"\[").replace("]", r"\]")) as info:
        costs(billing, jobs())
    assert sorted(info.value.currencies) == sorted(currencies)


def test_spot_jobs_use_the_spot_price_and_unknown_instances_stay_visible():
    registry = jobs({"job_id": "s", "started_at": "2024-09-10 11:00", "pricing": "spot"},
                    {"job_id": "u", "started_at": "2024-09-10 11:00", "instance_type": "mystery.8x"})
    out = costs(bill(), registry).set_index("job_id")
    assert out.loc["s", "cost_usd"] == 4.0
    assert pd.isna(out.loc["u", "cost_usd"]) and "mystery.8x" in out.loc["u", "note"]
    summary = job_cost_summary(costs(bill(), registry), registry, now=NOW).set_index("job_id")
    assert summary.loc["u", "unpriced_hours"] == 1.0


def test_job_cost_summary_per_hour_sample_and_token():
    registry = jobs(
        {"job_id": "done", "started_at": "2024-09-10 08:00", "ended_at": "2024-09-10 10:00", "status": "succeeded",
         "dataset_samples": 1000, "epochs": 2, "seq_len": 512},
        {"job_id": "half", "started_at": "2024-09-10 10:00", "dataset_samples": 1000, "epochs": 1, "total_steps": 100},
        {"job_id": "steps", "started_at": "2024-09-10 10:00", "batch_size": 4, "grad_accum": 2, "gpu_count": 2},
    )
    billing = bill({"at": "2024-09-10 08:00", "billed_cost": 12.0, "job_id": "done"},
                   {"at": "2024-09-10 09:00", "billed_cost": 8.0, "job_id": "done"})
    progress = pd.DataFrame({"job_id": ["half", "steps"], "steps_done": [50, 10]})
    summary = job_cost_summary(costs(billing, registry), registry, progress, now=NOW).set_index("job_id")
    done = summary.loc["done"]
    assert (done.total_cost_usd, done.billed_cost_usd, done.estimated_cost_usd) == (20.0, 20.0, 0.0)
    assert done.cost_per_hour_usd == 10.0 and done.samples_processed == 2000
    assert done.cost_per_sample_usd == pytest.approx(0.01)
    assert done.cost_per_token_usd == pytest.approx(0.01 / 512)
    half = summary.loc["half"]
    assert half.estimated_cost_usd == 20.0 and half.samples_processed == 500 and half.progress == 0.5
    assert summary.loc["steps", "samples_processed"] == 10 * 4 * 2 * 2
    assert pd.isna(summary.loc["half", "cost_per_token_usd"])  # no seq_len


def test_estimates_never_extend_before_the_partitions_start():
    # a running job whose registry says it started in 1970 (an epoch-0 "unknown")
    registry = jobs({"job_id": "a", "started_at": "1970-01-01 00:00"})
    earliest = ts("2024-09-10 00:00")
    usage = job_hours(registry, NOW, earliest=earliest)
    assert len(usage) == 12 and usage["period_start"].min() == earliest
    out = attribute_costs(bill(), registry, usage, PRICES, NOW)
    assert out["cost_usd"].sum() == pytest.approx(120.0)
    # a job that ended before the start has no hours at all
    ended = jobs({"job_id": "b", "started_at": "2024-09-01 00:00", "ended_at": "2024-09-02 00:00",
                  "status": "succeeded"})
    assert job_hours(ended, NOW, earliest=earliest).empty


BOUND = 10_000.0


def test_a_line_beyond_the_sanity_bound_is_kept_but_held_and_does_not_stop_estimates():
    registry = jobs({"job_id": "a", "started_at": "2024-09-10 10:00"})
    billing = bill({"at": "2024-09-10 10:00", "billed_cost": 1e12, "job_id": "a"},
                   {"at": "2024-09-10 09:00", "billed_cost": -2e12},  # an implausible credit is held too
                   {"at": "2024-09-10 09:00", "billed_cost": 5.0})
    out = costs(billing, registry, max_line_item_cost_usd=BOUND)
    billed = out[~out["estimated"]].set_index("cost_usd")
    assert bool(billed.loc[1e12, "suspicious"]) and bool(billed.loc[-2e12, "suspicious"])
    assert not billed.loc[5.0, "suspicious"] and not out.loc[out["estimated"], "suspicious"].any()
    assert billed.loc[1e12, "note"].startswith("held as suspicious")
    # kept: every billed USD is in job_costs; the held hour is still estimated (2 hours x 10 USD)
    assert out.loc[~out["estimated"], "cost_usd"].sum() == pytest.approx(billing["billed_cost"].sum())
    assert out.loc[out["estimated"], "cost_usd"].sum() == pytest.approx(20.0)
    # without a bound nothing is held
    assert not costs(billing, registry)["suspicious"].any()
    # the job's cost figures leave the held line out: 2 estimated hours, nothing billed
    summary = job_cost_summary(out, registry, now=NOW).set_index("job_id")
    assert summary.loc["a", "total_cost_usd"] == pytest.approx(20.0)


def test_a_confirmed_line_counts_again():
    registry = jobs({"job_id": "a", "started_at": "2024-09-10 10:00"})
    billing = bill({"at": "2024-09-10 10:00", "billed_cost": 5e4, "job_id": "a"})
    line = billing["line_item_id"].iloc[0]
    out = costs(billing, registry, max_line_item_cost_usd=BOUND, confirmed_line_items=(line,))
    assert not out["suspicious"].any()
    assert out.loc[out["estimated"], "cost_usd"].sum() == pytest.approx(10.0)  # 10:00-11:00 billed
