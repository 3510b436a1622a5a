"""Actuators: how a planned enforcement or recovery action reaches the world.

Every actuator has a `name` and `apply(action) -> detail`; it raises `ActuatorError` when the action
could not be carried out (the ledger then records `failed` and a later run may try again).

`apply` must be idempotent per `action_id` wherever the target allows it, because the ledger's
write-ahead discipline (`ftops.actions.ledger_store`) re-applies an action whose run died after the
side effect but before the ledger said `applied`:
- record: no side effect at all.
- control_file: a command already in the job's file (same action_id) is not written again. Budget
  commands reach the running trainer; recovery commands (resume_smaller_batch, resume, rollback,
  restart, reschedule, notify_owner) reach the launcher that supervises the trainer, which reads the
  same file before it starts the job again (the trainer's callback leaves them alone; see
  docs/control-files.md). `launch_calibration` (a new job) is refused: nothing polls a file for a
  job that does not exist yet.
- webhook: cannot know what the receiver did; it sends `Idempotency-Key: <action_id>` and the
  receiver must de-duplicate on it (documented in docs/control-files.md).
- kubernetes (`ftops.actions.actuators_kubernetes`): patches are repeatable; deleting a Job that is
  already gone counts as done. Recovery actions are annotations for an operator or controller.

Actuators receive their whole configuration as arguments; none reads the environment.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import requests

from ftops.actions.http import (
    SIGNATURE_HEADER,
    HttpFailure,
    attempts_of,
    retrying_session,
    send,
    sign,
    write_atomic,
)
from ftops.plans import PlannedAction

CONTROL_FORMAT_VERSION = 1
# The training side keeps at most this many commands; older obeyed ones are of no use to it.
MAX_COMMANDS_PER_FILE = 20
_RESERVED = ("ftops_control", "action", "action_id", "job_id", "budget_category", "trigger", "level_pct",
             "period_key", "message", "issued_at")
# a job id becomes a file name: no separators, no leading dot, nothing a shell or object store mangles
_SAFE_JOB_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+@-]{0,199}$")


# Actions that start a new job: only an actuator that reaches a scheduler (webhook, record) can do that.
LAUNCH_ACTIONS = ("launch_calibration",)


class ActuatorError(RuntimeError):
    """The action could not be applied; the message says why (it becomes the ledger detail)."""


@runtime_checkable
class Actuator(Protocol):
    name: str

    def apply(self, action: PlannedAction) -> str:
        """Carry the action out and return a short detail text; raise ActuatorError on failure."""
        ...


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def command_payload(action: PlannedAction, issued_at: str | None = None) -> dict[str, Any]:
    """The JSON command for an action: identity fields plus its params flattened to the top level.

    Flattened so a training loop reads `cmd["micro_batch_size"]` without knowing the ledger's shape;
    a param named like an identity field would be ambiguous, so it is refused.
    """
    clash = sorted(set(action.params) & set(_RESERVED))
    if clash:
        raise ActuatorError(f"action {action.action_id}: params {clash} clash with command fields {list(_RESERVED)}")
    payload: dict[str, Any] = {
        "ftops_control": CONTROL_FORMAT_VERSION,
        "action": action.action,
        "action_id": action.action_id,
        "job_id": action.job_id,
        "budget_category": action.budget_category,
        "trigger": action.trigger,
        "level_pct": action.level_pct,
        "period_key": action.period_key,
        "message": action.reason,
        "issued_at": issued_at or utc_now_iso(),
    }
    payload.update(action.params)
    return payload


class RecordActuator:
    """The default: changes nothing outside ftops; the ledger row is the whole effect."""

    name = "record"

    def apply(self, action: PlannedAction) -> str:
        return "recorded (dry run)"


def _checked_job_id(job_id: str) -> str:
    if not _SAFE_JOB_ID.match(job_id or ""):
        raise ActuatorError(f"job id {job_id!r} cannot name a control file (letters, digits and _.=+@- only)")
    return job_id


def write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON so a reader sees the old file or the new one, never a torn one."""
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(path, text.encode("utf-8"))


class ControlFileActuator:
    """Writes `<folder>/<job_id>.json`, the command file the training side polls.

    The file holds the newest command at the top level (what a simple loop reads) and, under
    `commands`, every command not yet pushed out, oldest first, so two steps issued in one run
    (switch to spot, then halve the batch) are both seen even if the trainer polls only once.
    Format and pick-up: docs/control-files.md and `ftops.integrations.hf`.
    """

    name = "control_file"

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path_for(self, job_id: str) -> Path:
        return self.folder / f"{_checked_job_id(job_id)}.json"

    def apply(self, action: PlannedAction) -> str:
        if action.action in LAUNCH_ACTIONS:
            raise ActuatorError(
                f"control_file cannot launch a new job: {action.action} for {action.job_id} needs a scheduler; "
                "a control file only reaches a trainer that is already running: use the webhook actuator")
        path = self.path_for(action.job_id)
        commands = self._existing_commands(path)
        if any(c.get("action_id") == action.action_id for c in commands):
            return f"control file {path.name} already holds action {action.action_id}"
        command = command_payload(action)
        commands = (commands + [command])[-MAX_COMMANDS_PER_FILE:]
        try:
            write_json_atomic(path, {**command, "commands": commands})
        except (OSError, ValueError) as exc:
            raise ActuatorError(f"cannot write control file {path}: {exc}") from exc
        return f"wrote {action.action} to control file {path.name}"

    @staticmethod
    def _existing_commands(path: Path) -> list[dict[str, Any]]:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            # Overwriting a file we cannot parse could drop a command the trainer has not seen.
            raise ActuatorError(f"control file {path} exists but is not readable JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ActuatorError(f"control file {path} does not hold a JSON object")
        commands = document.get("commands")
        if isinstance(commands, list):
            return [c for c in commands if isinstance(c, dict)]
        return [document] if "action_id" in document else []


class WebhookActuator:
    """POSTs the command as JSON to a URL that carries it out (a scheduler, an operator, a chat bot).

    The receiver must de-duplicate on `Idempotency-Key` (the action_id): after a crash the same
    action may be posted again. With a secret, the body is signed (`X-Ftops-Signature`) so the
    receiver can refuse forged commands. Transient failures are retried as `ftops.actions.http`
    says (connection errors, timeouts, 408/425/429/5xx); any other 4xx answer is final.
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        timeout_seconds: float = 10.0,
        retries: int = 2,
        backoff_seconds: float = 0.5,
        session: requests.Session | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s): {url!r}")
        self.url = url
        self.secret = secret
        self.timeout_seconds = timeout_seconds
        self.session = session or retrying_session(max(int(retries), 0), backoff_seconds, user_agent="ftops-actuator")

    def apply(self, action: PlannedAction) -> str:
        body = json.dumps({"event": "ftops.action", **command_payload(action)}, sort_keys=True,
                          allow_nan=False).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": action.action_id}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.secret)
        try:
            response = send(self.session, "POST", self.url, timeout_seconds=self.timeout_seconds, data=body,
                            headers=headers)
        except HttpFailure as exc:
            raise ActuatorError(f"webhook {exc}") from exc
        if response.status_code >= 300:
            raise ActuatorError(f"webhook POST {self.url} failed after {attempts_of(response)} attempt(s): "
                                f"HTTP {response.status_code}: {response.text[:200]}")
        return f"webhook answered {response.status_code}"


def __getattr__(name: str) -> Any:
    # KubernetesActuator lives in its own module; importing it here on demand keeps one import path.
    if name == "KubernetesActuator":
        from ftops.actions.actuators_kubernetes import KubernetesActuator

        return KubernetesActuator
    raise AttributeError(name)
