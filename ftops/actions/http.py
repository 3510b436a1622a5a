"""The I/O helpers every outbound client shares: a retrying HTTP session, the HMAC signer, atomic writes.

One retry policy for notifiers, actuators and the Prometheus resource: connection errors, timeouts
and the answers worth another try (408, 425, 429, 5xx) are retried by urllib3's `Retry` with
exponential backoff; any other answer is returned at once. POST is retried too, which is safe here
because every payload ftops sends is idempotent by its key (alert_id and state, action_id).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# A receiver's Retry-After is obeyed up to this many seconds: one slow receiver must not hold a run for hours.
MAX_WAIT_SECONDS = 30.0
SIGNATURE_HEADER = "X-Ftops-Signature"
SIGNATURE_PREFIX = "sha256="


class _CappedRetry(Retry):
    def get_retry_after(self, response):  # type: ignore[no-untyped-def]
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, MAX_WAIT_SECONDS)


def retrying_session(max_retries: int = 2, backoff_seconds: float = 0.5, user_agent: str = "ftops") -> requests.Session:
    """A `requests.Session` that retries transient failures up to `max_retries` times after the first try.

    Waits follow urllib3: none before the first retry, then `backoff_seconds` × 2, × 4, … (at most
    MAX_WAIT_SECONDS), or the receiver's Retry-After when it sends one.
    """
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    if backoff_seconds < 0:
        raise ValueError(f"backoff_seconds must be >= 0, got {backoff_seconds}")
    retry = _CappedRetry(
        total=max_retries,
        backoff_factor=backoff_seconds,
        backoff_max=MAX_WAIT_SECONDS,
        status_forcelist=RETRY_STATUS,
        allowed_methods=None,  # every method: our POSTs are idempotent by key
        raise_on_status=False,  # the last answer comes back, so the caller can quote it
        raise_on_redirect=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


class HttpFailure(Exception):
    """No answer came back: the request could not be sent, or timed out, on every attempt."""

    def __init__(self, method: str, url: str, attempts: int, cause: str, timed_out: bool) -> None:
        super().__init__(f"{method} {url} failed after {attempts} attempt(s): {cause}")
        self.method, self.url, self.attempts, self.cause, self.timed_out = method, url, attempts, cause, timed_out


def attempts_of(response: requests.Response) -> int:
    """How many requests it took to get this answer (1 + the retries urllib3 made)."""
    retries = getattr(response.raw, "retries", None)
    return 1 + len(retries.history) if retries is not None else 1


def send(session: requests.Session, method: str, url: str, *, timeout_seconds: float,
         **kwargs: object) -> requests.Response:
    """One request through `session` -> the final answer, whatever its status; HttpFailure if none came."""
    try:
        return session.request(method, url, timeout=timeout_seconds, **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        raise _failure(session, method, url, timeout_seconds, exc) from exc


def _failure(session: requests.Session, method: str, url: str, timeout_seconds: float,
             exc: requests.RequestException) -> HttpFailure:
    # requests wraps urllib3's MaxRetryError (all retries spent) in ConnectionError, even for a read timeout
    wrapped = exc.args[0] if exc.args else None
    exhausted = isinstance(wrapped, MaxRetryError)
    reason = wrapped.reason if exhausted else exc
    adapter = session.get_adapter(url) if url.startswith(("http://", "https://")) else None
    retry = getattr(adapter, "max_retries", None)
    attempts = 1 + (retry.total if exhausted and isinstance(retry, Retry) and retry.total else 0)
    # urllib3 derives NewConnectionError (refused, no route) from its connect-timeout class
    timed_out = isinstance(exc, requests.Timeout) or (
        isinstance(reason, Urllib3Timeout) and not isinstance(reason, NewConnectionError))
    if timed_out:
        cause = f"timed out after {timeout_seconds} s ({type(reason).__name__})"
    elif isinstance(exc, requests.ConnectionError):
        cause = f"connection failed ({type(exc).__name__}: {reason})"
    else:
        cause = f"{type(exc).__name__}: {exc}"
    return HttpFailure(method, url, attempts, cause, timed_out)


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex HMAC-SHA256 of the raw body>`, the X-Ftops-Signature every receiver verifies.

    A receiver recomputes it over the bytes it received and compares with `hmac.compare_digest`.
    """
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` so a reader sees the old file or the new one, never a torn one (even after a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
