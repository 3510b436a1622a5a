"""The Prometheus server as a Dagster resource, and the scheduled pull of its series into the inbox.

`PrometheusResource.query_range` asks `/api/v1/query_range` (retries and timeouts from
`ftops.actions.http`); turning an answer into `metric_samples` is the pure
`ftops.readers.prometheus_api.samples_from_query_range`. The `prometheus_pull` job writes what it
read as a metric export under `<inbox>/metrics/prometheus/`, so Prometheus data takes the same path
as every other input (staging, partitions, rejections, de-duplication of overlapping windows).
"""

import io
import math
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pandas as pd
import requests
from upath import UPath

from ftops.actions.http import HttpFailure, attempts_of, retrying_session, send, write_atomic
from ftops.defs.resources import InboxResource
from ftops.readers.base import ReadResult, combine
from ftops.readers.prometheus_api import samples_from_query_range
from ftops.schemas import METRIC_SAMPLES

# Prometheus refuses a range query whose (end - start) / step exceeds 11,000 points per series.
PROMETHEUS_MAX_POINTS = 11_000


class PrometheusQueryError(RuntimeError):
    """Prometheus could not be asked or did not answer usefully; the message names the URL and cause."""


def _unix_seconds(value: datetime | pd.Timestamp | str | float | int, name: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a datetime, an ISO 8601 string or unix seconds, got {value!r}") from exc
    if pd.isna(stamp):
        raise ValueError(f"{name} is missing (NaT)")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")  # naive times are taken as UTC, like every ftops timestamp
    return stamp.timestamp()


class PrometheusResource(dg.ConfigurableResource):
    """A Prometheus server's HTTP API (`/api/v1/query_range`).

    Connection errors, timeouts, 429 and 5xx answers are retried with exponential backoff up to
    `max_retries` times after the first attempt (`ftops.actions.http`); then
    `PrometheusQueryError` is raised. A 4xx answer carrying Prometheus' error JSON (a bad query)
    is not retried: it comes back as a rejected record, like any other bad input.
    """

    # Field descriptions are the attribute docstrings (shown in the Dagster UI's resource config).
    model_config = {**dg.ConfigurableResource.model_config, "use_attribute_docstrings": True}

    url: str
    """Base URL of the Prometheus server, e.g. http://prometheus:9090"""
    timeout_seconds: float = 10.0
    """Connect and read timeout of each HTTP request"""
    max_retries: int = 3
    """Retries after the first attempt on connection errors, timeouts, 429 and 5xx"""
    backoff_seconds: float = 0.5
    """Backoff factor: waits of 0, 2x, 4x ... this between retries (urllib3 Retry)"""
    job_label: str = "job_id"
    """Series label that holds the ftops job id"""
    max_points_per_request: int = PROMETHEUS_MAX_POINTS
    """Points per series per request; longer ranges are split"""

    def model_post_init(self, context: object) -> None:
        super().model_post_init(context)
        problems = []
        # a dg.EnvVar is resolved at run time, so only a literal URL can be checked now
        if not isinstance(self.url, dg.EnvVar) and not self.url.startswith(("http://", "https://")):
            problems.append(f"url must start with http:// or https://, got {self.url!r}")
        if not self.timeout_seconds > 0:
            problems.append(f"timeout_seconds must be > 0, got {self.timeout_seconds}")
        if self.max_retries < 0:
            problems.append(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_seconds < 0:
            problems.append(f"backoff_seconds must be >= 0, got {self.backoff_seconds}")
        if not 2 <= self.max_points_per_request <= PROMETHEUS_MAX_POINTS:
            problems.append(f"max_points_per_request must be in 2..{PROMETHEUS_MAX_POINTS}, "
                            f"got {self.max_points_per_request}")
        if problems:
            raise ValueError("PrometheusResource: " + "; ".join(problems))

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/api/v1/query_range"

    def query_range(
        self,
        query: str,
        start: datetime | pd.Timestamp | str | float,
        end: datetime | pd.Timestamp | str | float,
        step_seconds: float,
        metric: str | None = None,
    ) -> ReadResult:
        """Evaluate `query` from `start` to `end` every `step_seconds` -> `metric_samples`.

        `metric` names the canonical metric of an expression query (its result has no series
        name); a plain selector of exporter series needs none. Ranges longer than
        `max_points_per_request` steps are fetched in consecutive chunks on the same step grid.
        """
        start_s, end_s = _unix_seconds(start, "start"), _unix_seconds(end, "end")
        if not (step_seconds > 0 and math.isfinite(step_seconds)):
            raise ValueError(f"step_seconds must be a positive number, got {step_seconds!r}")
        if end_s < start_s:
            raise ValueError(f"end ({end}) is before start ({start})")
        source = f"{self.endpoint}?query={quote(query, safe='')}"
        results = []
        for chunk_start, chunk_end in self._chunks(start_s, end_s, float(step_seconds)):
            payload, is_error_answer = self._get(
                {"query": query, "start": f"{chunk_start:.3f}", "end": f"{chunk_end:.3f}", "step": f"{step_seconds}"}
            )
            results.append(samples_from_query_range(payload, metric, self.job_label, source=source))
            if is_error_answer:
                break  # the same query would be refused again for every later chunk
        return combine(METRIC_SAMPLES, results)

    def _chunks(self, start_s: float, end_s: float, step_s: float) -> list[tuple[float, float]]:
        # Each chunk starts on the original step grid (start + k·step), so chunks neither overlap
        # nor leave a gap, and no chunk asks for more than max_points_per_request points.
        per_chunk = self.max_points_per_request
        total_points = math.floor((end_s - start_s) / step_s + 1e-9) + 1
        chunks = []
        for first in range(0, total_points, per_chunk):
            last = min(first + per_chunk, total_points) - 1
            chunks.append((start_s + first * step_s, min(start_s + last * step_s, end_s)))
        return chunks

    def _get(self, params: dict[str, str]) -> tuple[dict, bool]:
        """One API call with retries -> (JSON payload, whether it is Prometheus' error answer)."""
        session = retrying_session(self.max_retries, self.backoff_seconds)
        try:
            response = send(session, "GET", self.endpoint, timeout_seconds=self.timeout_seconds, params=params)
        except HttpFailure as exc:
            raise PrometheusQueryError(f"Prometheus query to {exc}") from exc
        finally:
            session.close()
        payload = _json_or_none(response)
        if response.status_code == 429 or response.status_code >= 500:
            detail = payload.get("error") if isinstance(payload, dict) else response.text[:200]
            raise PrometheusQueryError(
                f"Prometheus query to GET {self.endpoint} failed after {attempts_of(response)} attempt(s): "
                f"HTTP {response.status_code}: {detail}"
            )
        if isinstance(payload, dict) and payload.get("status") == "error":
            return payload, True
        if response.status_code >= 400 or not isinstance(payload, dict):
            raise PrometheusQueryError(
                f"Prometheus query to {self.endpoint} failed: HTTP {response.status_code}, "
                f"not a Prometheus API answer: {response.text[:200]!r}"
            )
        return payload, False


def _json_or_none(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


# Every GPU exporter series ftops maps (readers/prometheus_text.py); a user adds their own queries.
DEFAULT_QUERIES = (
    '{__name__=~"DCGM_FI_DEV_(GPU_UTIL|MEM_COPY_UTIL|FB_USED|FB_FREE|POWER_USAGE|GPU_TEMP)"}',
    '{__name__=~"nvidia_smi_(utilization_gpu_ratio|utilization_memory_ratio|memory_used_bytes'
    '|memory_total_bytes|power_draw_watts|temperature_gpu)"}',
)
PULL_CRON = "*/15 * * * *"


class PrometheusPullConfig(dg.Config):
    model_config = {**dg.Config.model_config, "use_attribute_docstrings": True}

    end: str = ""
    """End of the window (ISO 8601, UTC); empty: now. The schedule passes its tick time."""
    lookback_minutes: float = 30.0
    """Window length; longer than the schedule's interval, so a late tick leaves no gap"""
    step_seconds: float = 60.0
    """Resolution of the samples"""
    queries: list[str] = list(DEFAULT_QUERIES)
    """PromQL selectors of exporter series (or expressions, see PrometheusResource.query_range)"""


def export_path(inbox_path: str, end: pd.Timestamp) -> UPath:
    """Where one pull lands: one file per window end, so a re-run of a tick replaces its own file."""
    return UPath(inbox_path) / "metrics" / "prometheus" / f"prometheus-{end:%Y%m%dT%H%M%SZ}.parquet"


def _write_export(samples: pd.DataFrame, target: UPath) -> None:
    buffer = io.BytesIO()
    samples.to_parquet(buffer, index=False)
    if getattr(target, "protocol", "") in ("", "file", "local"):
        write_atomic(Path(target.path), buffer.getvalue())
        return
    # an object store has no atomic rename; the inbox ignores `.part` names until the rename lands
    part = target.with_name(target.name + ".part")
    part.write_bytes(buffer.getvalue())
    part.rename(target)


# Nothing: the effect is the inbox file; the warehouse IO manager stores asset outputs only
@dg.op(out=dg.Out(dg.Nothing),
       description="Read the configured Prometheus queries over one window into a metric export in the inbox.")
def pull_prometheus(context: dg.OpExecutionContext, config: PrometheusPullConfig, prometheus: PrometheusResource,
                    inbox: InboxResource) -> None:
    end = pd.Timestamp(config.end or pd.Timestamp.now(tz="UTC"))
    end = (end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")).floor("s")
    start = end - pd.Timedelta(minutes=config.lookback_minutes)
    result = combine(METRIC_SAMPLES, [prometheus.query_range(q, start, end, config.step_seconds)
                                      for q in config.queries])
    if not result.rejected.empty:
        # Not inbox rows: a refused query or an unmapped series is a configuration problem to show, not data.
        context.log.warning(f"Prometheus: {len(result.rejected)} record(s) refused: {result.rejection_counts()}")
    target = export_path(inbox.inbox_path, end)
    if not result.accepted.empty:
        _write_export(result.accepted, target)
    context.add_output_metadata(
        {
            "window": f"{start.isoformat()} .. {end.isoformat()}",
            "samples": len(result.accepted),
            "jobs": int(result.accepted["job_id"].nunique()) if not result.accepted.empty else 0,
            "rejected": len(result.rejected),
            "rejection_reasons": dg.MetadataValue.json(
                {str(k): int(v) for k, v in result.rejected["reason"].value_counts().items()}),
            "export": str(target) if not result.accepted.empty else "none (no samples)",
        }
    )


@dg.job(description="Pull GPU series from Prometheus into the inbox; the inbox sensor ingests them.")
def prometheus_pull() -> None:
    pull_prometheus()


def prometheus_pull_schedule(running: bool) -> dg.ScheduleDefinition:
    """Every 15 minutes; running by default only where a Prometheus URL is configured."""

    @dg.schedule(job=prometheus_pull, cron_schedule=PULL_CRON, execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
                 name="prometheus_pull_schedule")
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        end = pd.Timestamp(context.scheduled_execution_time).tz_convert("UTC").isoformat()
        return dg.RunRequest(run_key=end, run_config={"ops": {"pull_prometheus": {"config": {"end": end}}}})

    return _schedule
