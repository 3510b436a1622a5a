"""`ftops serve-metrics`: the exporter (ftops/exporter.py) on /metrics and /health."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from ftops.exporter import DEFAULT_CACHE_SECONDS, DEFAULT_HOST, DEFAULT_PORT


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 1..65535, got {text}")
    return value


def add_serve_metrics_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve-metrics",
        help="serve budget, cost, alert and anomaly metrics from the warehouse for Prometheus",
        description="Serve ftops' derived metrics (budget usage, spend and forecast, cost per hour and per "
                    "sample of running jobs, firing alerts, anomalies, table freshness) on /metrics, and "
                    "/health (503 when the warehouse cannot be read or ingest is stale).",
    )
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 lets a "
                        "Prometheus on another host scrape it)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port (default: %(default)s)")
    parser.add_argument("--warehouse", help="warehouse folder or URL (default: FTOPS_WAREHOUSE or .ftops/warehouse)")
    parser.add_argument("--max-ingest-age", type=_non_negative, default=None, metavar="SECONDS",
                        help="/health answers 503 when no ingest table was written for longer than this "
                        "(default: ingest.max_age_seconds of ftops.yaml; unset there: never stale)")
    parser.add_argument("--cache-seconds", type=_non_negative, default=DEFAULT_CACHE_SECONDS,
                        help="seconds a read of the warehouse is served before the next scrape reads it again "
                        "(default: %(default)s)")
    parser.set_defaults(func=run_serve_metrics)
    return parser


def run_serve_metrics(args: argparse.Namespace) -> int:
    from ftops.definitions import settings_from_env  # builds no definitions; imports Dagster (a few seconds)
    from ftops.exporter import WarehouseExporter, make_server
    from ftops.policy import PolicyError, load_policy

    settings = settings_from_env()
    max_age = args.max_ingest_age
    if max_age is None:
        try:
            max_age = load_policy(settings.config).ingest.max_age_seconds
        except PolicyError as exc:
            print(f"ftops serve-metrics: {exc}", file=sys.stderr)
            return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exporter = WarehouseExporter(args.warehouse or settings.warehouse, cache_seconds=args.cache_seconds,
                                 max_ingest_age_seconds=max_age)
    try:
        server = make_server(exporter, args.host, args.port)
    except OSError as exc:  # port in use, address not on this machine
        print(f"ftops serve-metrics: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # stop like Ctrl-C: close the socket
    host, port = server.server_address[:2]
    logging.getLogger(__name__).info("serving http://%s:%d/metrics and /health for %s", host, port,
                                     exporter.reader.base_path)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
