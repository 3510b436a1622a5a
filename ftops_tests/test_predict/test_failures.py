"""Failure classification: every console pattern on realistic lines, the precedence of the evidence,
cancelled and preempted jobs, and agreement with the real W&B export's own error labels."""

from __future__ import annotations

import pandas as pd
import pytest

from ftops.predict.failures import (
    _KEYWORDS,
    CONSOLE_PATTERNS,
    classify_console,
    classify_failures,
    exit_code_from_console,
)
from ftops.schemas import JOB_FAILURES, validate

ENDED = pd.Timestamp("2026-11-21T01:00:00Z")

CUDA_OOM = """\
{'loss': 1.1021, 'learning_rate': 1.9e-05, 'epoch': 0.31}
 31%|███       | 377/1218 [41:09<1:31:47,  6.55s/it]
Traceback (most recent call last):
  File "/workspace/train.py", line 212, in <module>
    trainer.train()
  File "/opt/conda/lib/python3.10/site-packages/transformers/trainer.py", line 1555, in train
    return inner_training_loop(
  File "/opt/conda/lib/python3.10/site-packages/torch/nn/modules/module.py", line 1518, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacty of 79.15 GiB \
of which 1.02 GiB is free. Process 2117 has 78.12 GiB memory in use. Of the allocated memory 74.61 GiB is allocated by \
PyTorch, and 2.03 GiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting \
max_split_size_mb to avoid fragmentation.  See documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF
[rank1]:[E ProcessGroupNCCL.cpp:563] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=48211, \
OpType=ALLREDUCE, NumelIn=131334144, NumelOut=131334144, Timeout(ms)=1800000) ran for 1800408 milliseconds before timing out.
WARNING:torch.distributed.elastic.multiprocessing.api:Sending process 4117 closing signal SIGTERM
ERROR:torch.distributed.elastic.multiprocessing.api:failed (exitcode: 1) local_rank: 0 (pid: 4116) of binary: /opt/conda/bin/python
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
"""

NCCL_TIMEOUT = """\
{'loss': 0.8123, 'learning_rate': 1.2e-05, 'epoch': 1.4}
[rank3]:[E ProcessGroupNCCL.cpp:563] [Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=48211, \
OpType=ALLREDUCE, NumelIn=131334144, NumelOut=131334144, Timeout(ms)=1800000) ran for 1800408 milliseconds before timing out.
[rank3]:[E ProcessGroupNCCL.cpp:1537] [PG 0 Rank 3] Timeout at NCCL work: 48211, last enqueued NCCL work: 48211, \
last completed NCCL work: 48210.
terminate called after throwing an instance of 'c10::DistBackendError'
"""

NCCL_SYSTEM_ERROR = """\
Traceback (most recent call last):
  File "/workspace/train.py", line 40, in <module>
    dist.barrier()
torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1691, unhandled \
system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.19.3
ncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error.
"""

XID_79 = """\
{'loss': 0.6120, 'learning_rate': 8.1e-06, 'epoch': 2.1}
[Tue Mar 12 04:17:31 2024] NVRM: Xid (PCI:0000:b7:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
[Tue Mar 12 04:17:31 2024] NVRM: GPU 0000:b7:00.0: GPU has fallen off the bus.
RuntimeError: CUDA error: unknown error
"""

SPOT_INTERRUPTION = """\
{'loss': 0.9731, 'learning_rate': 1.5e-05, 'epoch': 0.77}
2024-03-12T04:15:02Z ftops-agent: EC2 Spot Instance interruption notice: instance-action terminate at 2024-03-12T04:17:02Z
Received SIGTERM, saving checkpoint to /ckpt/step-3200
"""

KEYBOARD_INTERRUPT = """\
 12%|█▏        | 146/1218 [16:01<1:57:40,  6.59s/it]^C
Traceback (most recent call last):
  File "/workspace/train.py", line 212, in <module>
    trainer.train()
  File "/opt/conda/lib/python3.10/site-packages/transformers/trainer.py", line 1885, in _inner_training_loop
    for step, inputs in enumerate(epoch_iterator):
KeyboardInterrupt
"""

NAN_LOSS = """\
{'loss': 1.2334, 'learning_rate': 1.8e-05, 'epoch': 0.41}
{'loss': nan, 'learning_rate': 1.8e-05, 'epoch': 0.42}
WARNING:root:Loss is NaN at step 4200, stopping training
"""

VALUE_ERROR = """\
Traceback (most recent call last):
  File "/workspace/train.py", line 88, in <module>
    main()
  File "/workspace/train.py", line 61, in main
    dataset = load_dataset(args.data_path)
ValueError: Unknown split "validation". Should be one of ['train'].
"""

# (line, failure_type, pattern name): at least one per pattern, each a line as real tools print it
LINES = [
    ("[  812.123] NVRM: Xid (PCI:0000:3b:00): 48, pid=2245, name=python, An uncorrectable double bit error (DBE) "
     "has been detected on GPU in the framebuffer at partition 0, subpartition 0.", "node_failure", "nvidia_xid"),
    ("NVRM: Xid (PCI:0000:b7:00): 74, pid=3310, name=python, NVLink: fatal error detected on link 3",
     "node_failure", "nvidia_xid"),
    ("RuntimeError: CUDA error: uncorrectable ECC error encountered", "node_failure", "gpu_lost"),
    ("Unable to determine the device handle for GPU0000:B7:00.0: Unknown Error", "node_failure", "gpu_lost"),
    ("2024-03-12T04:15:02Z EC2 Spot Instance interruption notice: instance-action terminate", "preempted",
     "preemption_notice"),
    ("Instance was preempted.", "preempted", "preemption_notice"),
    ("Pod train-7f9c was evicted: The node was low on resource: ephemeral-storage.", "preempted", "preemption_notice"),
    ("Status: Failed  Reason: Evicted", "preempted", "preemption_notice"),
    ("Pod was terminated in response to imminent node shutdown.", "preempted", "preemption_notice"),
    ("slurmstepd: error: *** JOB 81234 ON gpu-12 CANCELLED AT 2024-03-12T04:17:02 DUE TO PREEMPTION ***",
     "preempted", "preemption_notice"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.53 GiB.", "oom", "cuda_oom"),
    ("RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total capacity)", "oom",
     "cuda_oom"),
    ("RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`", "oom", "cuda_oom"),
    ("[Tue Mar 12 04:17:31 2024] Out of memory: Killed process 23411 (python) total-vm:251823312kB", "oom",
     "host_oom"),
    ("RuntimeError: DataLoader worker (pid 8123) is killed by signal: Killed. ", "oom", "host_oom"),
    ("Last State: Terminated  Reason: OOMKilled  Exit Code: 137", "oom", "host_oom"),
    ("{'loss': nan, 'learning_rate': 1.8e-05, 'epoch': 0.42}", "nan_loss", "nan_loss"),
    ("WARNING: non-finite loss, ending training", "nan_loss", "nan_loss"),
    ("loss is nan, stopping training", "nan_loss", "nan_loss"),
    ("Current loss scale already at minimum - cannot decrease scale anymore. Exiting run.", "nan_loss", "nan_loss"),
    ("[Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=9, OpType=ALLREDUCE) ran for 1800408 "
     "milliseconds before timing out.", "hang", "nccl_timeout"),
    ("torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1691, unhandled system error, NCCL "
     "version 2.19.3", "node_failure", "nccl_error"),
    ("node-3:2245:2301 [0] NCCL WARN NET/IB : Got completion from peer 10.0.0.7<43002> with error 12", "node_failure",
     "nccl_error"),
    ("KeyboardInterrupt", "cancelled", "interrupt"),
    ("--KeyboardInterrupt--", "cancelled", "interrupt"),
    ("[2024-03-12 04:17:02] Received SIGTERM, shutting down", "cancelled", "interrupt"),
    ("torch.distributed.elastic.multiprocessing.api.SignalException: Process 2117 got signal: 15", "cancelled",
     "interrupt"),
    ("slurmstepd: error: *** JOB 81234 ON gpu-12 CANCELLED AT 2024-03-12T04:17:02 ***", "cancelled", "interrupt"),
    ("ValueError: Unknown split \"validation\". Should be one of ['train'].", "code_error", "python_exception"),
    ("ModuleNotFoundError: No module named 'peft'", "code_error", "python_exception"),
    ("KeyError: 'rationale_input_ids'", "code_error", "python_exception"),
    ("RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!",
     "code_error", "python_exception"),
    ("RuntimeError: CUDA error: device-side assert triggered", "code_error", "python_exception"),
    ("AssertionError", "code_error", "python_exception"),
]

# lines that look alarming and are none of the types
NOT_A_CAUSE = [
    "WARNING:torch.distributed.elastic.multiprocessing.api:Sending process 4117 closing signal SIGTERM",
    "{'loss': 0.3819, 'learning_rate': 8.845116567879342e-10, 'epoch': 2.98}",
    "INFO: checkpoint_on_preemption=True",
    "RuntimeError: CUDA error: an illegal memory access was encountered",
    "BrokenPipeError: [Errno 32] Broken pipe",
    "Killed",
    "[2024-03-12 04:17:02,331] [INFO] [stage_1_and_2.py:1773:step] [deepspeed] OVERFLOW! Rank 0 Skipping step.",
]


def test_every_pattern_has_an_example_line_and_the_names_are_unique():
    names = [name for _, _, name in CONSOLE_PATTERNS]
    assert len(names) == len(set(names))
    assert set(names) == {name for _, _, name in LINES}
    assert {ftype for ftype, _, _ in CONSOLE_PATTERNS} <= set(JOB_FAILURES.columns[5].allowed)


@pytest.mark.parametrize(("line", "ftype", "name"), LINES, ids=[f"{n}-{i}" for i, (_, _, n) in enumerate(LINES)])
def test_each_pattern_on_a_realistic_line(line, ftype, name):
    found = classify_console(pd.Series([line]))
    assert (found.loc[0, "failure_type"], found.loc[0, "pattern"]) == (ftype, name)
    assert found.loc[0, "evidence"] == line.strip()
    # the substring prefilter never hides a line its pattern matches
    assert any(word in line.lower() for word in _KEYWORDS[name])


@pytest.mark.parametrize("line", NOT_A_CAUSE)
def test_lines_that_are_no_cause(line):
    assert classify_console(pd.Series([line])).isna().all(axis=None)


@pytest.mark.parametrize(("tail", "ftype", "name", "evidence_start"), [
    (CUDA_OOM, "oom", "cuda_oom", "torch.cuda.OutOfMemoryError: CUDA out of memory."),
    (NCCL_TIMEOUT, "hang", "nccl_timeout", "[rank3]:[E ProcessGroupNCCL.cpp:1537] [PG 0 Rank 3] Timeout at NCCL"),
    (NCCL_SYSTEM_ERROR, "node_failure", "nccl_error", "ncclSystemError: System call"),
    (XID_79, "node_failure", "nvidia_xid", "[Tue Mar 12 04:17:31 2024] NVRM: Xid (PCI:0000:b7:00): 79"),
    (SPOT_INTERRUPTION, "preempted", "preemption_notice", "2024-03-12T04:15:02Z ftops-agent: EC2 Spot"),
    (KEYBOARD_INTERRUPT, "cancelled", "interrupt", "KeyboardInterrupt"),
    (NAN_LOSS, "nan_loss", "nan_loss", "WARNING:root:Loss is NaN at step 4200"),
    (VALUE_ERROR, "code_error", "python_exception", "ValueError: Unknown split"),
], ids=["cuda_oom", "nccl_timeout", "nccl_error", "xid79", "spot", "keyboard_interrupt", "nan_loss", "value_error"])
def test_whole_tails(tail, ftype, name, evidence_start):
    found = classify_console(pd.Series([tail], index=[7]))
    assert list(found.index) == [7]
    row = found.loc[7]
    assert (row["failure_type"], row["pattern"]) == (ftype, name)
    assert row["evidence"].startswith(evidence_start)
    assert len(row["evidence"]) <= 300


def test_an_oom_anywhere_beats_what_follows_it_and_the_last_line_of_a_pattern_is_the_evidence():
    # the OOM, then NCCL timeouts on the other ranks, torchrun's SIGTERMs and a wrapper's traceback
    assert classify_console(pd.Series([CUDA_OOM + VALUE_ERROR + KEYBOARD_INTERRUPT])).loc[0, "failure_type"] == "oom"
    # chained exceptions: the last one ended the process
    chained = VALUE_ERROR + "\nDuring handling of the above exception, another exception occurred:\n" + \
        "KeyError: 'labels'\n"
    assert classify_console(pd.Series([chained])).loc[0, "evidence"] == "KeyError: 'labels'"
    # an interrupt beats the errors of its own cleanup
    pdb = KEYBOARD_INTERRUPT + "During handling of the above exception, another exception occurred:\n" + \
        "ValueError: I/O operation on closed file.\n"
    assert classify_console(pd.Series([pdb])).loc[0, "failure_type"] == "cancelled"


def test_null_and_empty_tails_give_nulls():
    found = classify_console(pd.Series([None, "", "all good\n"], dtype="string"))
    assert found.isna().all(axis=None) and len(found) == 3


def test_exit_code_from_console():
    tails = pd.Series(["  exitcode  : -9 (pid: 2245)\n  error_file: <N/A>", "Process exited with code 137",
                       "nothing", None])
    assert exit_code_from_console(tails).tolist() == [-9, 137, pd.NA, pd.NA]


# --- classify_failures: precedence -----------------------------------------------------------------

def _jobs(rows: list[dict]) -> pd.DataFrame:
    base = {"status": "failed", "started_at": ENDED - pd.Timedelta(hours=3), "ended_at": ENDED, "exit_reason": None}
    return pd.DataFrame([{**base, **r} for r in rows])


def _tails(mapping: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"job_id": list(mapping), "ts": ENDED, "tail": list(mapping.values()),
                         "source": "logs/x.log"})


def _health(rows: list[dict]) -> pd.DataFrame:
    base = {"window_start": ENDED - pd.Timedelta(hours=1), "window_minutes": 60, "samples": 60, "non_finite": 0,
            "last_ts": ENDED, "devices": 1}
    return pd.DataFrame([{**base, **r} for r in rows])


def _by_job(table: pd.DataFrame) -> dict[str, tuple[str, str]]:
    return {r.job_id: (r.failure_type, r.basis) for r in table.itertuples()}


def test_only_ended_unsuccessful_jobs_are_in_the_table_in_registry_order():
    jobs = _jobs([{"job_id": "a", "status": "succeeded"}, {"job_id": "b"}, {"job_id": "c", "status": "running"},
                  {"job_id": "d", "status": "preempted"}, {"job_id": "e", "status": "cancelled"},
                  {"job_id": "f", "status": "pending"}])
    table = classify_failures(jobs)
    validate(table, JOB_FAILURES)
    assert list(table["job_id"]) == ["b", "d", "e"]
    assert _by_job(table) == {"b": ("unknown", "none"), "d": ("preempted", "status"), "e": ("cancelled", "status")}
    assert classify_failures(jobs[jobs["status"] == "succeeded"]).empty
    assert list(classify_failures(JOB_FAILURES.empty().iloc[:0]).columns) == JOB_FAILURES.column_names


def test_precedence_exit_reason_console_metrics_exit_code():
    jobs = _jobs([
        {"job_id": "reason", "exit_reason": "hang"},  # also an OOM in its console: the registry knows better
        {"job_id": "console"},  # an OOM in the console and a NaN loss in run_health
        {"job_id": "metrics"},  # a NaN loss only
        {"job_id": "exit", "exit_code": 143},
    ])
    tails = _tails({"reason": CUDA_OOM, "console": CUDA_OOM})
    health = _health([{"job_id": j, "metric": "training_loss", "non_finite": 2} for j in ("console", "metrics")])
    table = classify_failures(jobs, tails, health).set_index("job_id")
    assert _by_job(table.reset_index()) == {
        "reason": ("hang", "exit_reason"), "console": ("oom", "console"), "metrics": ("nan_loss", "metrics"),
        "exit": ("cancelled", "exit_code"),
    }
    assert table.loc["reason", "evidence"] == "exit_reason=hang"
    assert table.loc["console", "evidence"].startswith("torch.cuda.OutOfMemoryError")
    assert table.loc["metrics", "evidence"].startswith("training_loss: 2 non-finite sample(s)")
    assert table.loc["exit", "evidence"] == "exit code 143 (SIGTERM)"
    assert table.loc["exit", "exit_code"] == 143


def test_heartbeat_lost_before_the_end_is_a_hang_and_after_it_is_not():
    jobs = _jobs([{"job_id": "stuck"}, {"job_id": "later"}])
    alerts = pd.DataFrame({
        "alert_id": ["1", "2"], "job_id": ["stuck", "later"], "rule": "heartbeat_lost", "category": "training",
        "severity": "critical", "state": "firing",
        "started_at": [ENDED - pd.Timedelta(minutes=40), ENDED + pd.Timedelta(minutes=5)],
        "last_seen_at": ENDED, "message": "no heartbeat or step progress for 30 min",
    })
    table = classify_failures(jobs, alerts=alerts)
    assert _by_job(table) == {"stuck": ("hang", "metrics"), "later": ("unknown", "none")}
    assert table.loc[0, "evidence"] == ("heartbeat_lost alert since 2026-11-21T00:20Z: no heartbeat or step progress "
                                        "for 30 min")


def test_sigkill_is_oom_only_with_host_memory_pressure():
    jobs = _jobs([{"job_id": "full", "exit_code": 137}, {"job_id": "calm", "exit_code": 137},
                  {"job_id": "shell"}])
    tails = _tails({"shell": "{'loss': 0.71, 'epoch': 1.2}\nKilled\n"})
    health = _health([{"job_id": "full", "metric": "host_memory_used_ratio", "max": 0.98},
                      {"job_id": "calm", "metric": "host_memory_used_ratio", "max": 0.41},
                      {"job_id": "shell", "metric": "host_memory_used_ratio", "max": 0.99}])
    table = classify_failures(jobs, tails, health).set_index("job_id")
    assert _by_job(table.reset_index()) == {"full": ("oom", "metrics"), "calm": ("unknown", "none"),
                                             "shell": ("oom", "metrics")}
    assert table.loc["full", "evidence"] == "SIGKILL (exit code 137) with host memory at 98% in the last window"
    assert table.loc["calm", "evidence"] == "SIGKILL (exit code 137)"
    assert table.loc["shell", "evidence"].startswith("SIGKILL ('Killed')")


def test_registry_cancelled_and_preempted_stay_so_whatever_the_console_shows():
    jobs = _jobs([{"job_id": "stopped", "status": "cancelled"}, {"job_id": "spot", "status": "preempted"},
                  {"job_id": "ctrl-c", "exit_code": 1}, {"job_id": "plain", "status": "cancelled"}])
    tails = _tails({"stopped": CUDA_OOM, "spot": NCCL_TIMEOUT, "ctrl-c": KEYBOARD_INTERRUPT})
    table = classify_failures(jobs, tails).set_index("job_id")
    assert _by_job(table.reset_index()) == {
        "stopped": ("cancelled", "status"), "spot": ("preempted", "status"), "ctrl-c": ("cancelled", "console"),
        "plain": ("cancelled", "status"),
    }
    assert table.loc["stopped", "evidence"].startswith("registry status cancelled; also seen: torch.cuda.OutOfMemory")
    assert table.loc["plain", "evidence"] == "registry status cancelled"
    assert table.loc["ctrl-c", "exit_code"] == 1


def test_exit_code_from_the_tail_table_and_from_the_console():
    jobs = _jobs([{"job_id": "table"}, {"job_id": "line"}])
    tails = _tails({"table": "Aborted (core dumped)", "line": "  exitcode  : -15 (pid: 2245)"})
    tails["exit_code"] = [134, None]
    table = classify_failures(jobs, tails).set_index("job_id")
    assert table.loc["table", "exit_code"] == 134 and table.loc["table", "failure_type"] == "unknown"
    assert table.loc["table", "evidence"] == "exit code 134"
    assert table.loc["line", "exit_code"] == -15
    assert (table.loc["line", "failure_type"], table.loc["line", "basis"]) == ("cancelled", "exit_code")


def test_the_newest_tail_of_a_job_decides():
    jobs = _jobs([{"job_id": "j"}])
    tails = pd.DataFrame({"job_id": ["j", "j"], "ts": [ENDED, ENDED - pd.Timedelta(hours=1)],
                          "tail": [CUDA_OOM, VALUE_ERROR], "source": ["b", "a"]})
    assert classify_failures(jobs, tails).loc[0, "failure_type"] == "oom"


# --- the real export ---------------------------------------------------------------------------------

ALPACA = "runs/wandb_stanford_alpaca_early"


def test_agreement_with_the_exports_own_first_error_pattern(realdata):
    from ftops.readers.console_log import read_console_log

    path = realdata / ALPACA / "runs_console_tail.csv"
    raw = pd.read_csv(path, dtype={"run_id": str})
    tails = read_console_log(path).accepted
    assert len(tails) == len(raw) == 82
    # every run as an ended job, so that each tail is classified (exit 0 runs included: they say nothing)
    jobs = pd.DataFrame({"job_id": tails["job_id"], "status": "failed"})
    table = classify_failures(jobs, tails)
    label = raw.set_index("run_id")["first_error_pattern"].fillna("(none)")
    found = table.set_index("job_id")["failure_type"]
    confusion = pd.crosstab(label.rename("first_error_pattern"), found.reindex(label.index).rename("failure_type"))
    print("\n" + confusion.to_string())
    assert (table["basis"].isin(["console", "none"])).all()
    # the W&B heuristic's KeyboardInterrupt: all cancelled (Ctrl-C, often at a pdb prompt)
    interrupted = confusion.loc["KeyboardInterrupt"]
    assert interrupted["cancelled"] == 29 == interrupted.sum()
    assert confusion.loc["KeyError", "code_error"] == 2 and confusion.loc["RuntimeError", "code_error"] == 11
    # no false alarm on the runs the heuristic found no error in
    assert confusion.loc["(none)"].to_dict() == {**{c: 0 for c in confusion.columns}, "unknown": 37}
    # CUDA_OOM: oom wherever the tail still shows the OOM. One run's OOM is earlier in its 52 kB console than
    # its 3 kB tail, which ends in a pdb session a person interrupted (KeyboardInterrupt, BrokenPipeError).
    oom_runs = label.index[label == "CUDA_OOM"]
    shows_oom = raw.set_index("run_id").loc[oom_runs, "console_tail"].str.contains("out of memory", case=False)
    assert (found[shows_oom.index[shows_oom]] == "oom").all() and shows_oom.sum() == 2
    assert (found[shows_oom.index[~shows_oom]] == "cancelled").all()
    # with the exit codes W&B recorded, the same: an exit code adds nothing where the console decided
    with_codes = classify_failures(jobs.assign(exit_code=tails["exit_code"]), tails)
    assert (with_codes["failure_type"] == table["failure_type"]).all()
