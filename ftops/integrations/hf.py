"""Training-side helpers: write ftops metric exports and obey ftops control files.

Nothing here needs transformers: the module imports with the standard library only. When
transformers is importable, `FtopsCallback` subclasses `transformers.TrainerCallback`; otherwise it
is a plain class with the same hook methods (the Trainer only ever calls hooks by name), which is
what a custom loop or a test uses.

How a training loop picks up a command
--------------------------------------
ftops' `control_file` actuator writes `<control_dir>/<job_id>.json` atomically (temporary file +
rename, so a reader sees the old or the new file, never half of one). The newest command is at the
top level and every recent command is under `commands`, e.g.::

    {"ftops_control": 1, "action": "reduce_batch_size", "micro_batch_size": 4, "grad_accum": 8,
     "action_id": "…", "job_id": "…", "budget_category": "…", "issued_at": "…Z", "commands": [ … ]}

Actions: `reduce_batch_size` (micro_batch_size, grad_accum, effective_batch_size), `switch_to_spot`
(pricing: "spot") and `terminate` (reason). The training side remembers what it obeyed in
`<control_dir>/<job_id>.done` (one action_id per line), so each action_id is obeyed once, also
across restarts. The control folder must be one both sides can see (a shared volume).

- Hugging Face Trainer: `Trainer(..., callbacks=[FtopsCallback(job_id, inbox=..., control_dir=...)])`.
  Every `poll_every_steps` optimizer steps it polls the file and obeys the oldest unobeyed command
  (`terminate` first), see `FtopsCallback`.
- Custom loop: `reader = ControlFileReader(control_dir, job_id)`; every N steps
  `cmd = reader.poll()`; when it is not None, act on it and call `reader.mark_done(cmd["action_id"])`
  (poll keeps returning the same command until it is marked, so a crash in between does not lose it).

Changing the batch size cannot happen inside a running Trainer: its dataloader, the number of
update steps per epoch and the learning-rate schedule were built from the old sizes. So the
callback checkpoints, stops training and leaves a restart request in `<control_dir>/<job_id>.restart.json`;
the launcher that called `trainer.train()` reads it with `take_restart_request` and starts again from
the checkpoint with the new sizes (docs/control-files.md has the loop).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

SOURCE = "hf_callback"
# Hugging Face log key -> ftops canonical metric. `train_loss` / `train_samples_per_second` are
# whole-run averages logged once at the end, not samples, so they are left out.
LOG_KEYS = {
    "loss": "training_loss",
    "eval_loss": "val_loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "epoch": "epoch",
}


def _utc_iso(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _json_number(value: float) -> float | str:
    # Strict JSON has no NaN; ftops' reader takes these spellings, and a NaN loss must arrive as one.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _write_json_atomic(path: Path, document: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MetricExportWriter:
    """Appends samples to `<inbox>/metrics/<job_id>/<prefix>-<start>.jsonl` in ftops' long format.

    One file per process start, so a restarted run never rewrites what was already ingested.
    """

    def __init__(self, inbox: str | os.PathLike[str], job_id: str, host: str | None = None,
                 source: str = SOURCE, prefix: str = "hf") -> None:
        self.job_id = job_id
        self.host = host if host is not None else socket.gethostname()
        self.source = source
        start = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.path = Path(inbox) / "metrics" / job_id / f"{prefix}-{start}.jsonl"

    def write(self, samples: Iterable[tuple[str, float, int | None]], device: str | None = None) -> int:
        """Append (metric, value, step) samples stamped now; returns how many lines were written."""
        ts = _utc_iso()
        lines = [
            json.dumps({"ts": ts, "job_id": self.job_id, "metric": metric, "value": _json_number(float(value)),
                        "step": None if step is None else int(step), "device": device, "host": self.host,
                        "source": self.source}, allow_nan=False)
            for metric, value, step in samples
        ]
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
        return len(lines)


class ControlFileReader:
    """Reads `<control_dir>/<job_id>.json` and remembers obeyed commands in `<job_id>.done`."""

    def __init__(self, control_dir: str | os.PathLike[str], job_id: str) -> None:
        self.control_dir = Path(control_dir)
        self.job_id = job_id
        self.path = self.control_dir / f"{job_id}.json"
        self.done_path = self.control_dir / f"{job_id}.done"

    def commands(self) -> list[dict[str, Any]]:
        """Every command in the file, oldest first; none when the file is missing or unreadable."""
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("ftops control file %s unreadable, ignored this time: %s", self.path, exc)
            return []
        if not isinstance(document, dict):
            return []
        listed = document.get("commands")
        if isinstance(listed, list):
            return [c for c in listed if isinstance(c, dict) and c.get("action_id")]
        return [document] if document.get("action_id") else []

    def done_ids(self) -> set[str]:
        try:
            return {line.strip() for line in self.done_path.read_text(encoding="utf-8").splitlines() if line.strip()}
        except FileNotFoundError:
            return set()

    def pending(self) -> list[dict[str, Any]]:
        """Commands not yet obeyed: `terminate` first (it supersedes the rest), then oldest first."""
        done = self.done_ids()
        todo = [c for c in self.commands() if c["action_id"] not in done]
        return sorted(todo, key=lambda c: c.get("action") != "terminate")

    def poll(self) -> dict[str, Any] | None:
        """The next command to obey, or None. It stays next until `mark_done` is called for it."""
        todo = self.pending()
        return todo[0] if todo else None

    def mark_done(self, action_id: str) -> None:
        self.control_dir.mkdir(parents=True, exist_ok=True)
        with open(self.done_path, "a", encoding="utf-8") as f:
            f.write(action_id + "\n")
            f.flush()
            os.fsync(f.fileno())


def restart_request_path(control_dir: str | os.PathLike[str], job_id: str) -> Path:
    return Path(control_dir) / f"{job_id}.restart.json"


def take_restart_request(control_dir: str | os.PathLike[str], job_id: str) -> dict[str, Any] | None:
    """The restart request the callback left when it stopped training, removed once read.

    Keys: restart (bool: False after terminate), resume_from_checkpoint, action_ids, and what to
    change: per_device_train_batch_size, gradient_accumulation_steps, pricing ("spot").
    """
    path = restart_request_path(control_dir, job_id)
    try:
        request = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    return request


class _HookDefaults:
    """Stand-in for transformers.TrainerCallback: every `on_*` hook exists and does nothing."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def _callback_base() -> type:
    try:
        from transformers import TrainerCallback
    except ImportError:
        return _HookDefaults
    return TrainerCallback


def _agree(command: dict[str, Any] | None) -> dict[str, Any] | None:
    """Rank 0's command on every rank, so all ranks stop at the same step (one that stops alone hangs DDP).

    Only rank 0 reads the file; without an initialised torch.distributed group this is the identity.
    """
    try:
        import torch.distributed as dist
    except ImportError:
        return command
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return command
    box = [command]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class FtopsCallback(_callback_base()):  # type: ignore[misc]
    """Hugging Face Trainer callback: metric exports for ftops (on_log), control files (on_step_end).

    on_log (rank 0 only) appends loss → training_loss, eval_loss → val_loss, learning_rate,
    grad_norm, epoch, and samples_per_second measured between two training logs
    (optimizer steps × per-device batch × gradient accumulation × world size / wall time, less
    the `eval_runtime` of evaluations in between).

    on_step_end, every `poll_every_steps` optimizer steps, obeys the next unobeyed command:
    - terminate: `control.should_save = True` and `control.should_training_stop = True`; the
      restart request says `restart: false`.
    - reduce_batch_size: sets `args.per_device_train_batch_size` / `args.gradient_accumulation_steps`
      to the new sizes, saves a checkpoint and stops training, and writes a restart request with
      the sizes. The running Trainer does NOT pick the sizes up by itself (its dataloader and
      schedule are built); the launcher must build a new Trainer with them and call
      `train(resume_from_checkpoint=True)`. The effective batch is unchanged, so an optimizer step
      still covers the same number of samples after the restart.
    - switch_to_spot: logs that the job must be restarted on spot capacity, saves a checkpoint and
      writes a restart request with `pricing: "spot"`; it stops training only with
      `stop_on_switch_to_spot=True` (moving needs the scheduler, which can stop the job itself).
    Each action_id is written to `<control_dir>/<job_id>.done` when obeyed, so it is obeyed once.
    In distributed runs rank 0 reads the file and broadcasts its decision to every rank.
    """

    def __init__(
        self,
        job_id: str,
        inbox: str | os.PathLike[str] | None = None,
        control_dir: str | os.PathLike[str] | None = None,
        poll_every_steps: int = 10,
        host: str | None = None,
        stop_on_switch_to_spot: bool = False,
    ) -> None:
        if poll_every_steps < 1:
            raise ValueError("poll_every_steps must be >= 1")
        self.job_id = job_id
        self.writer = MetricExportWriter(inbox, job_id, host=host) if inbox is not None else None
        self.reader = ControlFileReader(control_dir, job_id) if control_dir is not None else None
        self.poll_every_steps = poll_every_steps
        self.stop_on_switch_to_spot = stop_on_switch_to_spot
        self._last_log: tuple[int, float] | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._last_log = (int(state.global_step or 0), time.monotonic())
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if self.writer is None or not logs or not getattr(state, "is_world_process_zero", True):
            return control
        step = getattr(state, "global_step", None)
        samples = [(metric, logs[key], step) for key, metric in LOG_KEYS.items() if _is_number(logs.get(key))]
        if "loss" in logs:
            throughput = self._throughput(args, int(step or 0))
            if throughput is not None:
                samples.append(("samples_per_second", throughput, step))
        elif _is_number(logs.get("eval_runtime")) and self._last_log is not None:
            # evaluation time is not training time: leave it out of the next throughput sample
            self._last_log = (self._last_log[0], self._last_log[1] + float(logs["eval_runtime"]))
        self.writer.write(samples)
        return control

    def _throughput(self, args: Any, step: int) -> float | None:
        now = time.monotonic()
        last, self._last_log = self._last_log, (step, now)
        if last is None or step <= last[0] or now <= last[1]:
            return None
        per_step = (int(getattr(args, "per_device_train_batch_size", 1))
                    * int(getattr(args, "gradient_accumulation_steps", 1))
                    * int(getattr(args, "world_size", 1) or 1))
        return (step - last[0]) * per_step / (now - last[1])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.reader is None or int(state.global_step or 0) % self.poll_every_steps:
            return control
        zero = getattr(state, "is_world_process_zero", True)
        command = _agree(self.reader.poll() if zero else None)
        if command is not None:
            self._obey(command, args, state, control, zero)
        return control

    def _obey(self, command: dict[str, Any], args: Any, state: Any, control: Any, zero: bool) -> None:
        action, action_id = command.get("action"), command["action_id"]
        request: dict[str, Any] = {"resume_from_checkpoint": True, "output_dir": getattr(args, "output_dir", None),
                                   "stopped_at_step": int(state.global_step or 0)}
        if action == "terminate":
            control.should_save = control.should_training_stop = True
            request["restart"] = False
            log.warning("ftops: terminating job %s (%s): checkpoint, then stop", self.job_id, command.get("message"))
        elif action == "reduce_batch_size":
            micro, accum = int(command["micro_batch_size"]), int(command["grad_accum"])
            for name, value in (("per_device_train_batch_size", micro), ("gradient_accumulation_steps", accum)):
                try:
                    setattr(args, name, value)
                except Exception as exc:  # some transformers versions freeze TrainingArguments
                    log.warning("ftops: cannot set args.%s (%s); the restart request carries it", name, exc)
            control.should_save = control.should_training_stop = True
            request.update(restart=True, per_device_train_batch_size=micro, gradient_accumulation_steps=accum)
            log.warning("ftops: job %s must continue with micro-batch %d × accumulation %d: checkpoint, stop, "
                        "restart from the checkpoint", self.job_id, micro, accum)
        elif action == "switch_to_spot":
            control.should_save = True
            control.should_training_stop = control.should_training_stop or self.stop_on_switch_to_spot
            request.update(restart=True, pricing="spot")
            log.warning("ftops: job %s should move to spot capacity: checkpoint saved for a restart on spot",
                        self.job_id)
        else:
            log.warning("ftops: job %s got unknown control action %r (ignored)", self.job_id, action)
            request = {}
        if zero:
            if request:
                self._merge_restart_request(action_id, request)
            self.reader.mark_done(action_id)

    def _merge_restart_request(self, action_id: str, request: dict[str, Any]) -> None:
        # Two commands before one restart (spot, then a smaller batch) must both survive it.
        path = restart_request_path(self.reader.control_dir, self.job_id)
        try:
            merged = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            merged = {}
        wanted = request.pop("restart")
        restart = bool(merged.get("restart", True)) and wanted  # a terminate is never undone
        merged.update(request, restart=restart, action_ids=[*merged.get("action_ids", []), action_id])
        _write_json_atomic(path, merged)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
