"""Recovery strategies (predict/recovery.py): one per failure type, backoff, retry limit, start-up loops."""

import dataclasses

import pandas as pd
import pytest

from ftops.plans import append, ledger_rows
from ftops.policy import RecoveryPolicy
from ftops.predict.recovery import (
    attempts_so_far,
    backoff_minutes,
    is_startup_failure,
    plan_recovery,
    recovery_key,
    recovery_steps,
    running_job_problems,
)
from ftops.schemas import ACTION_LEDGER, ALERTS, JOB_FAILURES, JOBS, validate

T0 = pd.Timestamp("2026-11-03T10:00:00Z")
ENFORCE = RecoveryPolicy(mode="enforce")


def _minutes(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=n)


def _jobs(status: str = "failed", **extra) -> pd.DataFrame:
    row = {"job_id": "ft-1", "status": status, "batch_size": 8, "grad_accum": 2, "pricing": "spot",
           "budget_category": "research", **extra}
    return validate(pd.DataFrame([row]), JOBS)


def _failure(failure_type: str, ended: float = 0.0, started: float = -60.0, job_id: str = "ft-1") -> pd.DataFrame:
    return validate(pd.DataFrame([{
        "job_id": job_id, "status": "failed", "started_at": _minutes(started), "ended_at": _minutes(ended),
        "exit_code": 1, "failure_type": failure_type, "basis": "exit_reason", "evidence": f"exit_reason={failure_type}",
    }]), JOB_FAILURES)


def _applied(actions, at: pd.Timestamp, ledger=None, status: str = "applied", mode: str = "enforce") -> pd.DataFrame:
    rows = ledger_rows([dataclasses.replace(a, mode=mode) for a in actions], status=status, ts=at)
    return append(ledger if ledger is not None else ACTION_LEDGER.empty(), rows)


def _plan(failures, ledger=None, now=None, policy=ENFORCE, jobs=None, stalled=None):
    return plan_recovery(failures, jobs if jobs is not None else _jobs(), ledger, stalled, policy,
                         now if now is not None else _minutes(5))


# -- one strategy per failure type ------------------------------------------------------------------


def test_oom_halves_the_micro_batch_keeps_the_effective_batch_and_resumes():
    [action] = _plan(_failure("oom"))
    assert action.action == "resume_smaller_batch" and action.trigger == "recovery" and action.mode == "enforce"
    assert action.params["micro_batch_size"] == 4 and action.params["grad_accum"] == 4
    assert action.params["effective_batch_size"] == 16 and action.params["resume_from"] == "last_checkpoint"
    assert action.params["attempt"] == 1 and action.budget_category == "research"
    assert action.action_id == recovery_key("ft-1", "resume_smaller_batch", 1)


def test_a_second_oom_halves_from_the_batch_the_first_recovery_set_not_the_stale_registry():
    first = _plan(_failure("oom"))
    ledger = _applied(first, _minutes(5))
    # restarted at +5, ran 40 minutes, out of memory again; the registry still says 8 × 2
    [second] = _plan(_failure("oom", ended=45, started=6), ledger, now=_minutes(46))
    assert (second.params["micro_batch_size"], second.params["grad_accum"]) == (2, 8)
    assert second.params["attempt"] == 2


def test_oom_at_micro_batch_one_cannot_be_halved_and_notifies_the_owner():
    [action] = _plan(_failure("oom"), jobs=_jobs(batch_size=1, grad_accum=16))
    assert action.action == "notify_owner" and action.params["retry"] is False


@pytest.mark.parametrize("before, pricing", [(0, None), (1, "on_demand"), (2, "on_demand")])
def test_preemption_resumes_and_goes_on_demand_from_the_nth(before, pricing):
    ledger, ended = None, 0.0
    for _ in range(before):  # earlier preemptions, each resumed
        ledger = _applied(_plan(_failure("preempted", ended=ended), ledger, now=_minutes(ended + 1)),
                          _minutes(ended + 1), ledger)
        ended += 60
    [action] = _plan(_failure("preempted", ended=ended, started=ended - 50), ledger, now=_minutes(ended + 1))
    assert action.action == "resume" and action.params["resume_from"] == "last_checkpoint"
    assert action.params["preemptions"] == before + 1
    assert action.params.get("pricing") == pricing


def test_nan_loss_rolls_back_to_the_last_good_checkpoint_with_a_lower_learning_rate():
    [action] = _plan(_failure("nan_loss"))
    assert action.action == "rollback"
    assert action.params["resume_from"] == "last_good_checkpoint"
    assert action.params["learning_rate_ratio"] == 0.5
    assert action.params["checkpoint_before"] == "2026-11-03T10:00:00Z"


def test_node_failure_reschedules_elsewhere():
    [action] = _plan(_failure("node_failure"))
    assert action.action == "reschedule" and action.params["exclude_previous_nodes"] is True


def test_hang_of_an_ended_job_restarts():
    [action] = _plan(_failure("hang"))
    assert action.action == "restart" and action.params["resume_from"] == "last_checkpoint"


def test_code_error_is_never_retried_and_the_owner_is_told():
    [step] = recovery_steps(_failure("code_error"), _jobs(), None, None, ENFORCE, _minutes(5))
    assert step.action.action == "notify_owner" and step.action.params["retry"] is False
    assert "not retried" in step.reason
    # telling the owner is not a retry
    assert attempts_so_far(_applied([step.action], _minutes(5)), "ft-1") == 0


def test_cancelled_jobs_and_jobs_running_again_get_nothing():
    assert _plan(_failure("cancelled")) == []
    assert _plan(_failure("oom"), jobs=_jobs(status="running")) == []  # relaunched since: a stale failure
    assert _plan(_failure("oom"), policy=RecoveryPolicy(mode="off")) == []


# -- running jobs: stalled and diverged -------------------------------------------------------------


def _alert(rule: str, value: float, last_seen: pd.Timestamp, state: str = "firing") -> pd.DataFrame:
    return validate(pd.DataFrame([{
        "alert_id": f"ft-1:{rule}", "job_id": "ft-1", "rule": rule, "category": "training", "severity": "critical",
        "state": state, "started_at": _minutes(-5), "last_seen_at": last_seen, "value": value, "threshold": 15.0,
        "message": f"{rule} fired",
    }]), ALERTS)


@pytest.mark.parametrize("silent, expected", [(35.0, ["restart"]), (10.0, []), (25.0, ["restart"])])
def test_a_running_job_silent_for_stall_minutes_is_restarted(silent, expected):
    # evaluated at +5 with `silent` minutes of silence then; 5 more minutes have passed since
    alerts = _alert("heartbeat_lost", silent, _minutes(0))
    jobs = _jobs(status="running")
    stalled = running_job_problems(alerts, jobs, ENFORCE.stall_minutes, _minutes(5))
    actions = plan_recovery(None, jobs, None, stalled, ENFORCE, _minutes(5))
    assert [a.action for a in actions] == expected
    if actions:
        assert actions[0].params["stop_running"] is True and actions[0].params["cause"] == "hang"


def test_a_running_job_with_a_non_finite_loss_is_rolled_back_even_if_also_silent():
    alerts = pd.concat([_alert("heartbeat_lost", 40.0, _minutes(0)), _alert("loss_non_finite", float("nan"),
                                                                              _minutes(0))])
    jobs = _jobs(status="running")
    stalled = running_job_problems(alerts, jobs, 30.0, _minutes(5))
    assert stalled[["job_id", "failure_type"]].values.tolist() == [["ft-1", "nan_loss"]]
    [action] = plan_recovery(None, jobs, None, stalled, ENFORCE, _minutes(5))
    assert action.action == "rollback" and action.params["stop_running"] is True


def test_resolved_alerts_and_jobs_not_running_are_no_problem():
    assert running_job_problems(_alert("heartbeat_lost", 90.0, _minutes(0), state="resolved"), _jobs("running"),
                                30.0, _minutes(5)).empty
    assert running_job_problems(_alert("heartbeat_lost", 90.0, _minutes(0)), _jobs("failed"), 30.0,
                                _minutes(5)).empty


# -- backoff, retry limit, start-up failures --------------------------------------------------------


@pytest.mark.parametrize("attempt, minutes", [(1, 1.0), (2, 2.0), (3, 4.0)])
def test_backoff_doubles(attempt, minutes):
    assert backoff_minutes(attempt, 1.0, 2.0) == minutes


def test_unknown_failures_restart_after_1_2_4_minutes_and_not_before():
    ledger, ended = None, 0.0
    for attempt, wait in ((1, 1.0), (2, 2.0), (3, 4.0)):
        failure = _failure("unknown", ended=ended, started=ended - 30)
        [early] = recovery_steps(failure, _jobs(), ledger, None, ENFORCE, _minutes(ended + wait - 0.5))
        assert early.action is None and early.not_before == _minutes(ended + wait)
        assert "backoff" in early.reason
        [action] = _plan(failure, ledger, now=_minutes(ended + wait))
        assert action.action == "restart" and action.params["attempt"] == attempt
        assert action.params["backoff_minutes"] == wait
        assert action.params["not_before"] == _minutes(ended + wait).isoformat().replace("+00:00", "Z")
        ledger = _applied([action], _minutes(ended + wait), ledger)
        ended += 60  # each restart runs an hour, then fails again: not a start-up failure
    assert attempts_so_far(ledger, "ft-1") == 3


def test_the_fourth_failure_is_not_retried_and_the_owner_is_told():
    ledger, ended = None, 0.0
    for kind in ("oom", "preempted", "unknown"):  # every restart-type action counts
        [action] = _plan(_failure(kind, ended=ended, started=ended - 30), ledger, now=_minutes(ended + 10))
        ledger = _applied([action], _minutes(ended + 10), ledger)
        ended += 60
    [step] = recovery_steps(_failure("oom", ended=ended, started=ended - 30), _jobs(), ledger, None, ENFORCE,
                            _minutes(ended + 10))
    assert step.action.action == "notify_owner" and step.action.params["retries"] == 3
    assert "3 of 3 retries" in step.reason and step.attempt == 4


def test_a_blind_restart_that_fails_again_at_start_up_stops():
    [first] = _plan(_failure("unknown"), now=_minutes(1))
    ledger = _applied([first], _minutes(1))
    # restarted at +1, failed again 4 minutes later: the same restart would loop
    [step] = recovery_steps(_failure("unknown", ended=5, started=1.5), _jobs(), ledger, None, ENFORCE, _minutes(20))
    assert step.action.action == "notify_owner" and step.action.params["startup_failure"] is True
    assert "within 10 min" in step.reason


def test_an_oom_at_start_up_is_still_retried_because_a_smaller_batch_is_a_real_fix():
    [first] = _plan(_failure("oom"))
    ledger = _applied([first], _minutes(5))
    [second] = _plan(_failure("oom", ended=8, started=6), ledger, now=_minutes(9))
    assert second.action == "resume_smaller_batch" and second.params["micro_batch_size"] == 2


def test_is_startup_failure():
    assert is_startup_failure(_minutes(5), _minutes(0), 10.0)
    assert not is_startup_failure(_minutes(15), _minutes(0), 10.0)
    assert not is_startup_failure(_minutes(5), None, 10.0)


# -- idempotency -------------------------------------------------------------------------------------


def test_keys_are_stable_and_one_failure_is_recovered_once():
    failure = _failure("oom")
    first, again = _plan(failure), _plan(failure)
    assert [a.action_id for a in first] == [a.action_id for a in again]
    assert first[0].action_id == recovery_key("ft-1", "resume_smaller_batch", 1)
    # in flight (planned by a run that may have died) or applied: this failure is handled
    for status in ("planned", "applied"):
        assert _plan(failure, _applied(first, _minutes(5), status=status)) == []
    # a failed actuation may be tried again, under the same key
    assert [a.action_id for a in _plan(failure, _applied(first, _minutes(5), status="failed"))] == [
        first[0].action_id]


def test_a_dry_run_record_does_not_stand_in_for_enforcement_but_does_for_another_dry_run():
    dry = RecoveryPolicy(mode="dry_run")
    failure = _failure("oom")
    [action] = _plan(failure, policy=dry)
    ledger = _applied([action], _minutes(5), status="skipped", mode="dry_run")
    assert _plan(failure, ledger, policy=dry) == []
    assert attempts_so_far(ledger, "ft-1", "dry_run") == 1 and attempts_so_far(ledger, "ft-1", "enforce") == 0
    [enforced] = _plan(failure, ledger)
    assert enforced.action_id == action.action_id and enforced.mode == "enforce"


def test_notify_owner_is_keyed_by_incident_so_a_relaunched_job_failing_again_is_reported_again():
    [first] = _plan(_failure("code_error"))
    ledger = _applied([first], _minutes(5))
    assert _plan(_failure("code_error"), ledger) == []
    [second] = _plan(_failure("code_error", ended=120, started=100), ledger, now=_minutes(121))
    assert second.action == "notify_owner" and second.action_id != first.action_id
