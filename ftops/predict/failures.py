"""Why every ended, unsuccessful job ended: one `job_failures` row per failed, preempted or cancelled job.

Evidence, strongest first (the first that says something decides; `basis` names it):

1. the registry's own word on why the job ended. A `cancelled` status stays cancelled and a
   `preempted` status stays preempted whatever the job left behind (basis `status`): the scheduler
   knows it stopped the job, while the console of a stopped job shows the consequences (a
   KeyboardInterrupt's cleanup errors, NCCL timeouts on the ranks that lost a preempted peer, an
   OOM a person was debugging when they pressed Ctrl-C). Recovery must not restart a job a person
   stopped, and must resume a preempted one. Any other finding is kept in `evidence`.
2. `exit_reason` when the registry has it (basis `exit_reason`).
3. the console tail (`classify_console`, basis `console`).
4. the last metrics (basis `metrics`): a non-finite training loss in `run_health` -> nan_loss; a
   `heartbeat_lost` alert raised before the job ended -> hang; a job killed by SIGKILL (exit 137,
   -9 or a last console line `Killed`) while host memory was at or above `host_memory_oom_ratio`
   in its last `run_health` window -> oom (the kernel's OOM killer: host memory, not GPU memory;
   the contract has one `oom`, and a smaller micro-batch with gradient accumulation lowers both).
5. the exit code (basis `exit_code`): 130 / 143 (and -2 / -15, Python's way of saying the child
   died of SIGINT / SIGTERM) -> cancelled. Exit 137 / -9 alone is *not* oom: SIGKILL is also what
   a person's `kill -9` and every scheduler's grace-period kill send, so without memory evidence it
   stays unknown (the evidence says "SIGKILL"). Exit 255 alone is unknown too: W&B exits 255 on
   Ctrl-C, but so does any `exit(-1)`; an interrupt shows in the console, which decided already.
6. otherwise `unknown` (basis `none`), with the exit code as evidence when there is one.

The exit code is the registry's `exit_code` column when the caller's frame has one (the
contract has none), else the console tail table's `exit_code` (a tracker export records it),
else the last `exit code N` / `exitcode: N` line of the console tail.

Console rule (`classify_console`): `CONSOLE_PATTERNS` are ordered by what is a root cause and what
is a consequence; the first pattern that matches *anywhere* in the tail decides, and its *last*
matching line is the evidence. So specific signatures (a GPU fallen off the bus, a preemption
notice, CUDA/host OOM, a NaN loss, NCCL failures) beat the generic ones wherever they are: an OOM
on one rank is followed by NCCL timeouts on the others and by a wrapper's traceback, never the
other way round. Among the generic ones an interrupt beats a traceback (Ctrl-C in a debugger ends
in a BrokenPipeError or a cleanup error). Within one pattern the last line is the one that ended
the process: with chained exceptions ("During handling of the above exception...") the earlier
ones were handled. Bare `Killed` (SIGKILL) is no console pattern (see 4 and 5 above). A generic
exception the list does not name (BrokenPipeError, OSError: disk full, ConnectionError) is not
called a code error: those are the environment's as often as the code's.

Pure: no dagster, no environment, no clock. Vectorised: one `str.extract` per pattern over all
tails, `np.select` over the evidence columns; loops only over the (few dozen) patterns.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ftops.schemas import JOB_FAILURES, to_utc, validate

# Statuses of an ended job that did not succeed: the rows of job_failures.
ENDED_UNSUCCESSFUL = ("failed", "preempted", "cancelled")
# Registry statuses that are their own failure type (see the module doc, 1).
FINAL_STATUSES = ("cancelled", "preempted")
EVIDENCE_CHARS = 300
DEFAULT_HOST_MEMORY_OOM_RATIO = 0.95  # the host-memory critical level of the monitoring policy

# Exit codes: a shell reports death by signal N as 128 + N; Python's subprocess as -N.
CANCEL_EXIT_CODES = (130, 143, -2, -15)  # SIGINT, SIGTERM
SIGKILL_EXIT_CODES = (137, -9)

_CODE_EXCEPTIONS = (
    "ImportError", "ModuleNotFoundError", "FileNotFoundError", "KeyError", "TypeError", "ValueError",
    "AttributeError", "AssertionError", "SyntaxError", "IndentationError", "NameError", "IndexError",
    "ZeroDivisionError", "NotImplementedError", "UnboundLocalError", "RecursionError",
)
# A RuntimeError whose message names one of these is a device, memory or communication fault, not the
# code's (PyTorch raises RuntimeError for those too). "device" alone is not in the list: "Expected all
# tensors to be on the same device" is a code error.
_NOT_CODE = (r"CUDA error|CUDA out of memory|CUDA driver|out of memory|NCCL|cuDNN error|CUDNN_STATUS|CUBLAS_STATUS"
             r"|\bECC\b|fell off the bus|illegal memory access|Connection reset|Connection refused|Broken pipe"
             r"|timed out|timeout")
_XID_NODE_FAILURE = "48|61|62|63|64|74|79|92|94|95|119|120|122|123|140"


def _p(regex: str, flags: int = 0) -> re.Pattern:
    # MULTILINE: `^`/`$` are line starts and ends inside a tail; `.` never crosses a line
    return re.compile(regex, flags | re.MULTILINE)


# (failure_type, pattern of one line, name), root causes first (see the module doc).
CONSOLE_PATTERNS: tuple[tuple[str, re.Pattern, str], ...] = (
    # NVIDIA driver Xid codes of hardware faults (48 DBE ECC, 63/64 page retirement, 74 NVLink, 79 fell off
    # the bus, 92/94/95 ECC, 119/120 GSP). 13/31/43 are usually the application's own fault: not here.
    ("node_failure", _p(rf"NVRM: Xid \([^)]*\):\s*(?:{_XID_NODE_FAILURE})\b"), "nvidia_xid"),
    ("node_failure", _p(r"fallen off the bus|uncorrectable ECC error|ECC error(?:s)? detected|"
                        r"double[- ]bit ECC|GPU is lost|Unable to determine the device handle", re.I), "gpu_lost"),
    # Preemption and spot interruption notices: AWS, GCP, Azure scheduled events, Kubernetes, Slurm.
    ("preempted", _p(r"spot instance interruption|instance-action|interruption notice|"
                     r"\b(?:was|been|got|being|is being) preempted\b|compute\.instances\.preempted|"
                     r"EventType\W+Preempt\b|DUE TO PREEMPTION|\bEvicted\b|reason:\s*Evicted|"
                     r"(?:imminent |graceful )?node shutdown|node is shutting down|"
                     r"The node was low on resource", re.I), "preemption_notice"),
    # GPU memory. `torch.OutOfMemoryError` (2.5+), `torch.cuda.OutOfMemoryError`, the older
    # `RuntimeError: CUDA out of memory`, the CUDA runtime's `CUDA error: out of memory`, ROCm's HIP, XLA.
    ("oom", _p(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory|HIP out of memory|"
               r"CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_(?:ALLOC_FAILED|NOT_ENOUGH_WORKSPACE)|"
               r"Cuda failure 'out of memory'|RESOURCE_EXHAUSTED: Out of memory", re.I), "cuda_oom"),
    # Host memory, when the kill names it (the kernel's message, Kubernetes' reason, a DataLoader worker:
    # SIGKILL of a worker is the OOM killer nearly always). A bare `Killed` is not enough (see the doc).
    ("oom", _p(r"Out of memory: Kill(?:ed)? process|oom[-_ ]kill|OOMKilled|Memory cgroup out of memory|"
               r"DataLoader worker \(pid[^)]*\) is killed by signal: Killed|"
               r"Cannot allocate memory|std::bad_alloc|MemoryError", re.I), "host_oom"),
    # Divergence: a loss that became NaN/Inf ("loss is nan", HF's {'loss': nan}, "non-finite loss"), and
    # fp16 training that gave up because the loss scale hit its floor (overflow on every step).
    ("nan_loss", _p(r"\bloss\b[^\n]{0,24}?(?:\bis\b|=|:|\bbecame\b|\bbecomes\b)\s*['\"]?[-+]?(?:nan|inf)\b|"
                    r"non-finite loss|loss (?:is|became|has become) (?:non-finite|infinite|NaN)|"
                    r"nan loss detected|loss scale already at minimum|minimum loss scale reached", re.I),
     "nan_loss"),
    # NCCL: a collective that stalled until the watchdog killed it is a hang; an NCCL system, network or
    # remote error is a node (or its network) failing.
    ("hang", _p(r"Watchdog caught collective operation timeout|NCCL (?:watchdog )?timeout|"
                r"ProcessGroupNCCL[^\n]*time(?:d )?out|collective operation timeout|"
                r"NCCL communicator was aborted[^\n]*timeout", re.I), "nccl_timeout"),
    ("node_failure", _p(r"unhandled system error|ncclSystemError|ncclRemoteError|remote process exited|"
                        r"NCCL WARN NET/IB|NCCL error[^\n]*(?:unhandled cuda error|internal error|remote error)|"
                        r"Connection closed by peer|Connection reset by peer", re.I), "nccl_error"),
    # Stopped by a person: Ctrl-C (also pdb's --KeyboardInterrupt--), SIGINT/SIGTERM received, torchrun's
    # agent getting signal 2/15, a Slurm job cancelled (scancel: no "DUE TO"). torchrun's own "Sending
    # process N closing signal SIGTERM" is its cleanup after a worker failed: not matched.
    ("cancelled", _p(r"^\s*(?:[\w.]+\.)?KeyboardInterrupt\b|--KeyboardInterrupt--|"
                     r"\breceived\s+(?:signal\s+)?(?:SIGINT|SIGTERM)\b|\breceived signal (?:2|15)\b|"
                     r"got signal:?\s*(?:2|15)\b|SignalException: Process \d+ got signal|"
                     r"\*\*\* JOB \d+ ON \S+ CANCELLED AT \S+ \*\*\*(?![^\n]*DUE TO)", re.I), "interrupt"),
    # The code's own errors: a Python exception line the traceback ends with. CUDA's device-side assert is
    # an index out of range in the code (labels, embeddings) nearly always.
    ("code_error", _p(r"CUDA error: device-side assert triggered|"
                      rf"^\s*(?:[\w.]+\.)?(?:{'|'.join(_CODE_EXCEPTIONS)})\b(?::|\s*$)|"
                      rf"^\s*(?:[\w.]+\.)?RuntimeError:(?![^\n]*(?:{_NOT_CODE}))"), "python_exception"),
)
_PATTERN_NAMES = tuple(name for _, _, name in CONSOLE_PATTERNS)
assert len(set(_PATTERN_NAMES)) == len(_PATTERN_NAMES), "pattern names are unique"

# Lower-case words, one of which every line a pattern matches contains: a plain substring test over all
# tails first (fast), the regex only on the tails that have one (case-insensitive alternations are slow
# in `re`: ~20x on real tails). The tests check each pattern's example lines against these.
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "nvidia_xid": ("xid",),
    "gpu_lost": ("off the bus", "ecc", "gpu is lost", "device handle"),
    "preemption_notice": ("interruption", "instance-action", "preempt", "evicted", "shutdown", "shutting down",
                          "low on resource"),
    "cuda_oom": ("out of memory", "outofmemoryerror", "alloc_failed", "not_enough_workspace"),
    "host_oom": ("out of memory", "oom", "killed by signal", "cannot allocate memory", "bad_alloc", "memoryerror"),
    "nan_loss": ("nan", "inf", "non-finite", "loss scale"),
    "nccl_timeout": ("timeout", "timed out"),
    "nccl_error": ("unhandled system error", "ncclsystemerror", "ncclremoteerror", "remote process exited", "net/ib",
                   "nccl error", "connection closed by peer", "connection reset by peer"),
    "interrupt": ("keyboardinterrupt", "received", "got signal", "signalexception", "cancelled at"),
    "python_exception": ("device-side assert", "error"),
}
assert set(_KEYWORDS) == set(_PATTERN_NAMES), "every pattern has its keywords"

# The last line of a tail that matches a pattern: a greedy `.*` across lines backtracks from the end.
_LAST_LINE = {
    name: re.compile(r"\A(?s:.*)^([^\n]*?(?:" + rx.pattern + r")[^\n]*)", rx.flags | re.MULTILINE)
    for _, rx, name in CONSOLE_PATTERNS
}
# "exit code 137", "exited with code 1", "exit status 2", torchrun's "(exitcode: -9)", k8s "Exit Code: 137"
_EXIT_CODE_LINE = re.compile(
    r"\A(?s:.*)\b(?:exit(?:ed)?(?: with)?[ _]?(?:code|status)|exitcode)\s*[:=]?\s*(-?\d{1,3})\b", re.IGNORECASE)
_KILLED = re.compile(r"\bKilled\b")


def _trim(lines: pd.Series) -> pd.Series:
    """Evidence text: the line stripped, cut to EVIDENCE_CHARS characters."""
    text = lines.astype("string").str.strip()
    long = text.str.len() > EVIDENCE_CHARS
    return text.where(~long.fillna(False), text.str.slice(0, EVIDENCE_CHARS - 1) + "…")


def classify_console(tails: pd.Series) -> pd.DataFrame:
    """The failure type a console tail shows, per tail (same index): columns failure_type, pattern
    (the name in CONSOLE_PATTERNS) and evidence (the pattern's last matching line, trimmed); all null
    where no pattern matches or the tail is null. See the module doc for the rule."""
    text = tails.astype("string")
    out = pd.DataFrame({"failure_type": pd.Series(pd.NA, index=tails.index, dtype="string"),
                        "pattern": pd.Series(pd.NA, index=tails.index, dtype="string"),
                        "evidence": pd.Series(pd.NA, index=tails.index, dtype="string")})
    if text.notna().sum() == 0:
        return out
    # one extraction per pattern over every tail; a pattern only looks at tails no earlier pattern took
    open_ = text.notna().to_numpy(dtype=bool, copy=True)
    lower = text.str.lower()
    regex_text = text.astype(object)  # Python's `re`: Arrow strings use RE2, which has no look-ahead
    for ftype, _, name in CONSOLE_PATTERNS:
        candidate = open_.copy()
        if candidate.any():
            candidate[candidate] = _contains_any(lower[candidate], _KEYWORDS[name])
        if not candidate.any():
            continue
        line = regex_text[candidate].str.extract(_LAST_LINE[name], expand=False)
        hit = line.notna()
        if not hit.any():
            continue
        rows = line.index[hit.to_numpy()]
        out.loc[rows, "failure_type"] = ftype
        out.loc[rows, "pattern"] = name
        out.loc[rows, "evidence"] = _trim(line[hit])
        open_ &= ~tails.index.isin(rows)
    return out


def exit_code_from_console(tails: pd.Series) -> pd.Series:
    """The last exit code a console tail reports ("exit code 137", "exitcode: -9"), nullable Int64."""
    text = tails.astype("string")
    out = pd.Series(pd.NA, index=tails.index, dtype="Int64")
    some = _contains_any(text.str.lower(), ("exit",))
    if some.any():
        found = text[some].astype(object).str.extract(_EXIT_CODE_LINE, expand=False)
        out[some] = pd.to_numeric(found, errors="coerce").astype("Int64")
    return out


def _contains_any(lower: pd.Series, words: tuple[str, ...]) -> np.ndarray:
    """Which (lower-case) texts hold one of the words: one linear-time scan (RE2 on Arrow strings)."""
    pattern = "|".join(re.escape(w) for w in words)
    return lower.astype("string").str.contains(pattern, regex=True).to_numpy(dtype=bool, na_value=False)


def _last_line_killed(tails: pd.Series) -> np.ndarray:
    """Whether a tail's last line says the process was killed (a shell's `Killed`: SIGKILL)."""
    last = tails.astype("string").str.rstrip().str.rsplit("\n", n=1).str[-1]
    return last.astype(object).str.contains(_KILLED, na=False).to_numpy(dtype=bool)


def _column(df: pd.DataFrame, name: str, dtype: str) -> pd.Series:
    if name in df.columns:
        return df[name]
    return pd.Series(pd.NA if dtype != "datetime64[ns, UTC]" else pd.NaT, index=df.index, dtype=dtype)


def _latest_tails(console_tails: pd.DataFrame | None) -> pd.DataFrame:
    """One console row per job: the newest by `ts` (the later row on ties)."""
    if console_tails is None or console_tails.empty or "job_id" not in console_tails:
        return pd.DataFrame({"tail": pd.Series(dtype="string"), "exit_code": pd.Series(dtype="Int64")},
                            index=pd.Index([], dtype="string", name="job_id"))
    tails = console_tails.assign(job_id=console_tails["job_id"].astype("string"))
    if "ts" in tails:
        tails = tails.assign(ts=to_utc(tails["ts"])).sort_values("ts", kind="stable", na_position="first")
    tails = tails.drop_duplicates("job_id", keep="last").set_index("job_id")
    return pd.DataFrame({"tail": _column(tails, "tail", "string").astype("string"),
                         "exit_code": pd.to_numeric(_column(tails, "exit_code", "Int64"),
                                                    errors="coerce").astype("Int64")}, index=tails.index)


def _nan_loss(run_health: pd.DataFrame | None) -> pd.Series:
    """Per job with a non-finite training loss sample in run_health: the evidence text."""
    if run_health is None or run_health.empty or not {"job_id", "metric", "non_finite"} <= set(run_health):
        return pd.Series(dtype="string")
    loss = run_health[(run_health["metric"] == "training_loss")
                      & (pd.to_numeric(run_health["non_finite"], errors="coerce") > 0)]
    if loss.empty:
        return pd.Series(dtype="string")
    when = to_utc(loss["window_start"]) if "window_start" in loss else pd.Series(pd.NaT, index=loss.index)
    per_job = (loss.assign(_n=pd.to_numeric(loss["non_finite"]), _when=when)
               .groupby(loss["job_id"].astype(str)).agg(n=("_n", "sum"), last=("_when", "max")))
    return ("training_loss: " + per_job["n"].astype(int).astype(str) + " non-finite sample(s), last in the window from "
            + per_job["last"].dt.strftime("%Y-%m-%dT%H:%MZ").fillna("?")).astype("string")


def _heartbeat_lost(alerts: pd.DataFrame | None, ended_at: pd.Series) -> pd.Series:
    """Per job with a heartbeat_lost alert raised before it ended (or whose end is unknown): evidence."""
    if alerts is None or alerts.empty or not {"job_id", "rule"} <= set(alerts):
        return pd.Series(dtype="string")
    lost = alerts[alerts["rule"] == "heartbeat_lost"]
    if lost.empty:
        return pd.Series(dtype="string")
    started = to_utc(_column(lost, "started_at", "datetime64[ns, UTC]"))
    job = lost["job_id"].astype(str)
    end = job.map(ended_at)
    before_end = (started.isna() | pd.isna(end) | (started <= pd.to_datetime(end, utc=True))).to_numpy(dtype=bool)
    lost = lost[before_end].assign(_started=started[before_end]).sort_values("_started", kind="stable")
    if lost.empty:
        return pd.Series(dtype="string")
    first = lost.assign(_job=lost["job_id"].astype(str)).drop_duplicates("_job", keep="first").set_index("_job")
    message = _column(first, "message", "string").astype("string").fillna("")
    text = ("heartbeat_lost alert since " + first["_started"].dt.strftime("%Y-%m-%dT%H:%MZ").fillna("?")
            + message.where(message == "", ": " + message))
    return _trim(text)


def _host_memory_last(run_health: pd.DataFrame | None) -> pd.Series:
    """Per job: the highest host memory ratio in its last run_health window of that metric."""
    if run_health is None or run_health.empty or not {"job_id", "metric", "max"} <= set(run_health):
        return pd.Series(dtype="float64")
    host = run_health[run_health["metric"] == "host_memory_used_ratio"]
    if host.empty:
        return pd.Series(dtype="float64")
    host = host.assign(_start=to_utc(host["window_start"]) if "window_start" in host else pd.NaT,
                       _job=host["job_id"].astype(str))
    last = host.sort_values("_start", kind="stable").drop_duplicates("_job", keep="last")
    return pd.Series(pd.to_numeric(last["max"], errors="coerce").to_numpy(), index=last["_job"].to_numpy())


def classify_failures(jobs: pd.DataFrame, console_tails: pd.DataFrame | None = None,
                      run_health: pd.DataFrame | None = None, alerts: pd.DataFrame | None = None, *,
                      host_memory_oom_ratio: float = DEFAULT_HOST_MEMORY_OOM_RATIO) -> pd.DataFrame:
    """`job_failures` rows (schemas.JOB_FAILURES) for every job whose status is failed, preempted or
    cancelled, in the registry's order; see the module doc for the evidence and its precedence.

    `jobs`: the job registry (an extra `exit_code` column is used when present). `console_tails`:
    CONSOLE_TAILS rows (job_id, ts, tail, optional exit_code). `run_health`, `alerts`: the monitoring
    tables (any subset of their rows; all partitions of run_health the job has).
    """
    if jobs is None or jobs.empty or "status" not in jobs:
        return JOB_FAILURES.empty()
    ended = jobs[jobs["status"].isin(ENDED_UNSUCCESSFUL).to_numpy(dtype=bool, na_value=False)].reset_index(drop=True)
    if ended.empty:
        return JOB_FAILURES.empty()
    job = ended["job_id"].astype(str)
    status = ended["status"].astype("string")
    ended_at = to_utc(_column(ended, "ended_at", "datetime64[ns, UTC]"))
    exit_reason = _column(ended, "exit_reason", "string").astype("string")

    tails = _latest_tails(console_tails)
    tail = pd.Series(job.map(tails["tail"]).to_numpy(), dtype="string")
    console = classify_console(tail)

    exit_code = pd.to_numeric(_column(ended, "exit_code", "Int64"), errors="coerce").astype("Int64")
    exit_code = exit_code.fillna(pd.Series(job.map(tails["exit_code"]).to_numpy(), dtype="Int64"))
    exit_code = exit_code.fillna(exit_code_from_console(tail))

    nan_loss = pd.Series(job.map(_nan_loss(run_health)).to_numpy(), dtype="string")
    end_of_job = pd.Series(ended_at.to_numpy(), index=job).groupby(level=0).max()  # a repeated job id: its last end
    hang = pd.Series(job.map(_heartbeat_lost(alerts, end_of_job)).to_numpy(), dtype="string")
    host_memory = pd.Series(job.map(_host_memory_last(run_health)).to_numpy(), dtype="float64")
    killed = (exit_code.isin(SIGKILL_EXIT_CODES).fillna(False)
              | _last_line_killed(tail)).to_numpy(dtype=bool)
    host_oom = killed & (host_memory >= host_memory_oom_ratio).to_numpy(dtype=bool, na_value=False)
    exit_text = "exit code " + exit_code.astype("string")
    cancel_exit = exit_code.isin(CANCEL_EXIT_CODES).fillna(False).to_numpy(dtype=bool)

    final = status.isin(FINAL_STATUSES).to_numpy(dtype=bool, na_value=False)
    has_reason = exit_reason.notna().to_numpy()
    has_console = console["failure_type"].notna().to_numpy()
    has_nan = nan_loss.notna().to_numpy()
    has_hang = hang.notna().to_numpy()
    conditions = [final, has_reason, has_console, has_nan, has_hang, host_oom, cancel_exit]
    failure_type = np.select(conditions, [status, exit_reason, console["failure_type"], "nan_loss", "hang", "oom",
                                          "cancelled"], default="unknown")
    basis = np.select(conditions, ["status", "exit_reason", "console", "metrics", "metrics", "metrics", "exit_code"],
                      default="none")

    # what else was seen, for a status that decided by itself
    other = console["evidence"].fillna(("exit_reason=" + exit_reason).fillna(nan_loss.fillna(hang)))
    status_evidence = ("registry status " + status) + other.where(other.isna(), "; also seen: " + other).fillna("")
    memory_text = ("SIGKILL (" + exit_text.fillna("'Killed'") + ") with host memory at "
                   + (host_memory * 100).round(0).astype("Int64").astype("string") + "% in the last window")
    killed_text = pd.Series(np.where(killed, "SIGKILL (" + exit_text.fillna("'Killed'") + ")", None),
                            dtype="string")
    evidence = np.select(
        conditions,
        [status_evidence, "exit_reason=" + exit_reason, console["evidence"], nan_loss, hang, memory_text,
         exit_text + " (" + np.where(exit_code.isin((130, -2)).fillna(False), "SIGINT", "SIGTERM") + ")"],
        default=killed_text.fillna(exit_text),
    )
    frame = pd.DataFrame({
        "job_id": job,
        "status": status,
        "started_at": _column(ended, "started_at", "datetime64[ns, UTC]"),
        "ended_at": ended_at,
        "exit_code": exit_code,
        "failure_type": failure_type,
        "basis": basis,
        "evidence": pd.Series(evidence, dtype="object").where(pd.notna(evidence), None),
    })
    frame["evidence"] = _trim(frame["evidence"].astype("string"))
    return validate(frame, JOB_FAILURES)


__all__ = ["CONSOLE_PATTERNS", "ENDED_UNSUCCESSFUL", "classify_console", "classify_failures", "exit_code_from_console"]
