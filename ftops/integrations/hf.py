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
(pricing: "spot") and `terminate` (reason). Recovery commands (`LAUNCHER_ACTIONS`: resume_smaller_batch,
resume, rollback, restart, reschedule, notify_owner) are the launcher's: the callback leaves them for it. The training side remembers what it obeyed in
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

from ftops.pathparts import safe_path_part

log = logging.getLogger(__name__)

SOURCE = "hf_callback"
# Recovery commands (ftops.predict.recovery) are for the launcher, not the Trainer: the job they are
# about has ended, or is stuck or diverged and must be stopped and started again from a checkpoint.
# The callback leaves them unobeyed (not in `.done`) so the launcher's reader still sees them.
LAUNCHER_ACTIONS = ("resume_smaller_batch", "resume", "rollback", "restart", "reschedule", "notify_owner")
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

    One file per process start, so a restarted run never rewrites what was already ingested. The
    job id becomes a folder name only after `safe_path_part`, so an id like `../../x` stays inside.
    """

    def __init__(self, inbox: str | os.PathLike[str], job_id: str, host: str | None = None,
                 source: str = SOURCE, prefix: str = "hf") -> None:
        self.job_id = job_id
        self.host = host if host is not None else socket.gethostname()
        self.source = source
        start = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        # the same folder name `ftops agent` uses for this job id; the records keep the id as given
        self.path = (Path(inbox) / "metrics" / safe_path_part(job_id)
                     / f"{safe_path_part(prefix)}-{start}.jsonl")

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

    def pending(self, skip: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Commands not yet obeyed, less the actions in `skip`: `terminate` first (it supersedes the
        rest), then oldest first."""
        done, skip = self.done_ids(), set(skip)
        todo = [c for c in self.commands() if c["action_id"] not in done and c.get("action") not in skip]
        return sorted(todo, key=lambda c: c.get("action") != "terminate")

    def poll(self, skip: Iterable[str] = ()) -> dict[str, Any] | None:
        """The next command to obey (actions in `skip` left for someone else), or None. It stays
        next until `mark_done` is called for it."""
        todo = self.pending(skip)
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


def _model_loss(outputs: Any) -> Any:
    """The loss a Hugging Face model returned (ModelOutput or dict), or None.

    A plain tuple is left alone: whether its first item is a loss depends on whether labels were given.
    """
    get = getattr(outputs, "get", None)
    loss = get("loss") if callable(get) else None
    return loss if hasattr(loss, "isfinite") else None


class _NonFiniteLossWatch:
    """Sees every training loss the model returns, before the Trainer's `logging_nan_inf_filter` hides it.

    With the filter on (the Trainer's default), a NaN/Inf training loss counts as the average of the
    logging window's finite ones, and a window of only NaN losses is logged as 0.0. A forward hook on
    the model records whether any training-mode loss since the last look was not finite. The flag stays
    a tensor on the model's device until a log reads it, so training pays no extra synchronisation.
    Evaluation is left to the Trainer: it logs NaN when every batch's loss was NaN, and a single NaN
    batch can be a harmless one (all labels ignored), unlike a NaN training step, whose gradients
    reach the weights.
    """

    def __init__(self) -> None:
        self._handle: Any = None
        self._bad: Any = None  # bool tensor: a non-finite training loss since the last take
        self.saw_loss = False

    def attach(self, model: Any) -> None:
        self.detach()
        if model is not None and hasattr(model, "register_forward_hook"):
            self._handle = model.register_forward_hook(self._record)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._bad = None

    def _record(self, module: Any, inputs: Any, outputs: Any) -> None:
        loss = _model_loss(outputs)
        if loss is None or not getattr(module, "training", True):
            return
        bad = loss.detach().isfinite().all().logical_not()
        self._bad = bad if self._bad is None else self._bad | bad
        self.saw_loss = True

    def take(self) -> bool | None:
        """Whether a training loss was non-finite since the last take; None when none was seen."""
        bad, self._bad = self._bad, None
        return None if bad is None else bool(bad)


class FtopsCallback(_callback_base()):  # type: ignore[misc]
    """Hugging Face Trainer callback: metric exports for ftops (on_log), control files (on_step_end).

    on_log (rank 0 only) appends loss → training_loss, eval_loss → val_loss, learning_rate,
    grad_norm, epoch, and samples_per_second measured between two training logs
    (optimizer steps × per-device batch × gradient accumulation × world size / wall time, less
    the `eval_runtime` of evaluations in between). training_loss is exported as NaN when any loss
    the model returned in that logging window was NaN or infinite, whatever `logging_nan_inf_filter`
    made of it for the Trainer's own log: see `_NonFiniteLossWatch`. When the model's outputs carry
    no `loss` (a custom `compute_loss`), the callback cannot see the raw loss and says so once if
    the filter is on.

    on_step_end, every `poll_every_steps` optimizer steps, obeys the next unobeyed command:
    - terminate: `control.should_save = True` and `control.should_training_stop = True`; the
      restart request says `restart: false`.
    - reduce_batch_size: sets `args.per_device_train_batch_size` / `args.gradient_accumulation_steps`
      to the new sizes, saves a checkpoint and stops training, and writes a restart request with
      the sizes. The running Trainer does NOT pick the sizes up by itself (its dataloader and
      schedule are built); the launcher must build a new Trainer with them and call
      `train(resume_from_checkpoint=True)`. The effective batch is unchanged, so an optimizer step
      still covers the same number of samples after the restart.
    - switch_to_spot: logs that the job must be restarted on spot capacity and saves a checkpoint.
      With `stop_on_switch_to_spot=True` it stops training and writes a restart request with
      `pricing: "spot"`. Otherwise (the default: moving needs the scheduler, which stops the job
      itself) training goes on and no restart request is written, because the launcher would restart
      a run that had finished; `pricing: "spot"` joins a later restart request of the same run.
    A restart request exists only when this callback stopped training, and says `restart: false`
    (with `finished: true`) when the run had reached `max_steps` anyway.
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
        self._losses = _NonFiniteLossWatch()
        self._warned_blind = False
        self._stopped = False  # this callback stopped training and wrote a restart request
        # what commands obeyed without stopping asked for: it joins a later restart request
        self._carried: dict[str, Any] = {}
        self._carried_ids: list[str] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._last_log = (int(state.global_step or 0), time.monotonic())
        if self.writer is not None and getattr(state, "is_world_process_zero", True):
            self._losses.attach(kwargs.get("model"))
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._losses.detach()  # a model trained again by another Trainer gets that Trainer's callback
        if self._stopped and self.reader is not None and getattr(state, "is_world_process_zero", True):
            self._settle_restart_request(state)
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if self.writer is None or not logs or not getattr(state, "is_world_process_zero", True):
            return control
        step = getattr(state, "global_step", None)
        values = {key: logs[key] for key in LOG_KEYS if _is_number(logs.get(key))}
        if "loss" in values:
            non_finite = self._losses.take()
            if non_finite:
                values["loss"] = math.nan
            elif non_finite is None:
                self._warn_if_blind(args)
        samples = [(LOG_KEYS[key], value, step) for key, value in values.items()]
        if "loss" in logs:
            throughput = self._throughput(args, int(step or 0))
            if throughput is not None:
                samples.append(("samples_per_second", throughput, step))
        elif _is_number(logs.get("eval_runtime")) and self._last_log is not None:
            # evaluation time is not training time: leave it out of the next throughput sample
            self._last_log = (self._last_log[0], self._last_log[1] + float(logs["eval_runtime"]))
        self.writer.write(samples)
        return control

    def _warn_if_blind(self, args: Any) -> None:
        if self._warned_blind or self._losses.saw_loss or not getattr(args, "logging_nan_inf_filter", False):
            return
        self._warned_blind = True
        log.warning("ftops: job %s: the model's outputs carry no loss, so a NaN/Inf training loss reaches ftops "
                    "only as the Trainer logs it, and logging_nan_inf_filter=True logs it as a finite number; "
                    "set logging_nan_inf_filter=False for ftops to see it", self.job_id)

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
        command = _agree(self.reader.poll(skip=LAUNCHER_ACTIONS) if zero else None)
        if command is not None:
            self._obey(command, args, state, control, zero)
        return control

    def _obey(self, command: dict[str, Any], args: Any, state: Any, control: Any, zero: bool) -> None:
        action, action_id = command.get("action"), command["action_id"]
        changes: dict[str, Any] = {}
        stops, restart = True, True
        if action == "terminate":
            control.should_save = control.should_training_stop = True
            restart = False
            log.warning("ftops: terminating job %s (%s): checkpoint, then stop", self.job_id, command.get("message"))
        elif action == "reduce_batch_size":
            micro, accum = int(command["micro_batch_size"]), int(command["grad_accum"])
            for name, value in (("per_device_train_batch_size", micro), ("gradient_accumulation_steps", accum)):
                try:
                    setattr(args, name, value)
                except Exception as exc:  # some transformers versions freeze TrainingArguments
                    log.warning("ftops: cannot set args.%s (%s); the restart request carries it", name, exc)
            control.should_save = control.should_training_stop = True
            changes = {"per_device_train_batch_size": micro, "gradient_accumulation_steps": accum}
            log.warning("ftops: job %s must continue with micro-batch %d × accumulation %d: checkpoint, stop, "
                        "restart from the checkpoint", self.job_id, micro, accum)
        elif action == "switch_to_spot":
            control.should_save = True
            stops = self.stop_on_switch_to_spot
            control.should_training_stop = control.should_training_stop or stops
            changes = {"pricing": "spot"}
            log.warning("ftops: job %s should move to spot capacity: checkpoint saved for a restart on spot%s",
                        self.job_id, "" if stops else "; training goes on until the scheduler moves it")
        else:
            log.warning("ftops: job %s got unknown control action %r (ignored)", self.job_id, action)
            stops, changes = False, {}
        known = action in ("terminate", "reduce_batch_size", "switch_to_spot")
        if zero:
            if known and (stops or self._stopped):
                request = {"resume_from_checkpoint": True, "output_dir": getattr(args, "output_dir", None),
                           "stopped_at_step": int(state.global_step or 0), **self._carried, **changes}
                self._merge_restart_request([*self._carried_ids, action_id], request, restart)
                self._carried, self._carried_ids = {}, []
            elif known:
                self._carried.update(changes)
                self._carried_ids.append(action_id)
            self.reader.mark_done(action_id)
        self._stopped = self._stopped or (known and stops)

    def _merge_restart_request(self, action_ids: list[str], request: dict[str, Any], restart: bool) -> None:
        # Two commands before one restart (spot, then a smaller batch) must both survive it.
        path = restart_request_path(self.reader.control_dir, self.job_id)
        try:
            merged = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            merged = {}
        restart = bool(merged.get("restart", True)) and restart  # a terminate is never undone
        merged.update(request, restart=restart, action_ids=[*merged.get("action_ids", []), *action_ids])
        _write_json_atomic(path, merged)

    def _settle_restart_request(self, state: Any) -> None:
        # A command obeyed at the last step stops a run that was ending anyway: restarting it would
        # train past max_steps.
        max_steps = int(getattr(state, "max_steps", 0) or 0)
        if max_steps <= 0 or int(state.global_step or 0) < max_steps:
            return
        path = restart_request_path(self.reader.control_dir, self.job_id)
        try:
            request = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return
        if request.get("restart"):
            log.warning("ftops: job %s reached max_steps (%d): no restart needed", self.job_id, max_steps)
            _write_json_atomic(path, {**request, "restart": False, "finished": True})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
