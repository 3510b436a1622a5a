"""The Prometheus server as a Dagster resource: `query_range` over HTTP with timeouts and retries.

Only the I/O lives here; turning a response into `metric_samples` is the pure
`ftops.readers.prometheus_api.samples_from_query_range`.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from urllib.parse import quote

import dagster as dg
import pandas as pd
import requests
from pydantic import Field, field_validator

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

    Connection errors, timeouts, 429 and 5xx answers are retried with exponential backoff
    (`backoff_seconds` × 2^attempt) up to `max_retries` times after the first attempt; then
    `PrometheusQueryError` is raised. A 4xx answer carrying Prometheus' error JSON (a bad query)
    is not retried: it comes back as a rejected record, like any other bad input.
    """

    url: str = Field(description="Base URL of the Prometheus server, e.g. http://prometheus:9090")
    timeout_seconds: float = Field(default=10.0, description="Connect and read timeout of each HTTP request")
    max_retries: int = Field(default=3, description="Retries after the first attempt on connection errors and 5xx")
    backoff_seconds: float = Field(default=0.5, description="First wait between attempts; doubles each retry")
    job_label: str = Field(default="job_id", description="Series label that holds the ftops job id")
    max_points_per_request: int = Field(
        default=PROMETHEUS_MAX_POINTS, description="Points per series per request; longer ranges are split"
    )

    @field_validator("url", mode="before")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if isinstance(value, dg.EnvVar):  # resolved later, at run time
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("timeout_seconds")
    @classmethod
    def _check_timeout(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"timeout_seconds must be > 0, got {value}")
        return value

    @field_validator("max_retries")
    @classmethod
    def _check_retries(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"max_retries must be >= 0, got {value}")
        return value

    @field_validator("backoff_seconds")
    @classmethod
    def _check_backoff(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"backoff_seconds must be >= 0, got {value}")
        return value

    @field_validator("max_points_per_request")
    @classmethod
    def _check_points(cls, value: int) -> int:
        if not 2 <= value <= PROMETHEUS_MAX_POINTS:
            raise ValueError(f"max_points_per_request must be in 2..{PROMETHEUS_MAX_POINTS}, got {value}")
        return value

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
        attempts = self.max_retries + 1
        cause = "no attempt made"
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                response = requests.get(self.endpoint, params=params, timeout=self.timeout_seconds)
            except requests.Timeout as exc:
                cause = f"timed out after {self.timeout_seconds} s ({type(exc).__name__})"
                continue
            except requests.ConnectionError as exc:
                cause = f"connection failed: {exc}"
                continue
            except requests.RequestException as exc:  # invalid URL and the like: retrying cannot help
                raise PrometheusQueryError(f"Prometheus query to {self.endpoint} failed: {exc}") from exc
            payload = _json_or_none(response)
            if response.status_code == 429 or response.status_code >= 500:
                detail = payload.get("error") if isinstance(payload, dict) else response.text[:200]
                cause = f"HTTP {response.status_code}: {detail}"
                continue
            if isinstance(payload, dict) and payload.get("status") == "error":
                return payload, True
            if response.status_code >= 400 or not isinstance(payload, dict):
                raise PrometheusQueryError(
                    f"Prometheus query to {self.endpoint} failed: HTTP {response.status_code}, "
                    f"not a Prometheus API answer: {response.text[:200]!r}"
                )
            return payload, False
        raise PrometheusQueryError(
            f"Prometheus query to {self.endpoint} failed after {attempts} attempt(s): {cause}"
        )


def _json_or_none(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
