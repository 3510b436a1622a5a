"""`ftops risk`: train a failure-risk model on finished runs and score other runs (spec §3).

`--train` and `--score` take what ftops reads: W&B run folders (a folder with wandb-metadata.json;
the exit code comes from the runs_summary.csv beside or up to two folders above), folders holding
such runs (searched recursively), inboxes (jobs/ registry exports with metrics/ beside), and job
registry files (CSV/JSONL/Parquet) with metric exports. A run's id is the one ftops reads for it
(the W&B run folder's name, the registry's job_id).

Training uses the finished runs under --train (cancelled runs are left out). Scoring uses, for each
run under --score, only what was known `--horizon-minutes` after its start: its spec, the launch
context of every run given (trained on or scored) that was launched or ended before it started,
and its metrics up to the horizon (rolled up per minute). `--horizon-minutes 0` scores at launch
and reads no metrics. Exit 0 with scores; 2 with one line on stderr when an input cannot be read,
nothing is found to train on or to score, or the training runs hold one outcome only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from ftops.predict.risk import RiskModel

_PROG = "ftops risk"
_WANDB_METADATA = "wandb-metadata.json"
# `ftops risk` rolls samples up this finely so early signals see the first minutes of a run
_WINDOW_MINUTES = 1


class _Usage(ValueError):
    """A malformed request or unusable input: one line on stderr, exit 2."""


def add_risk_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `risk` subcommand on an argparse subparsers object; `func` runs it."""
    parser = subparsers.add_parser(
        "risk",
        help="train a failure-risk model on finished runs and score other runs",
        description="Train a failure-risk model on the finished runs under --train and score the runs under "
                    "--score with what was known in their first --horizon-minutes (0: at launch). PATH is a W&B "
                    "run folder, a folder of runs, an inbox, or a job registry file. Exit 2 with one line on "
                    "stderr when an input cannot be read or nothing can be trained or scored.",
    )
    parser.add_argument("--train", nargs="+", required=True, metavar="PATH", help="finished runs to learn from")
    parser.add_argument("--score", nargs="+", required=True, metavar="PATH", help="runs to score")
    parser.add_argument("--horizon-minutes", default="0", metavar="M",
                        help="score with the first M minutes of each run (default 0: at launch)")
    parser.add_argument("--json", action="store_true",
                        help='print a JSON list of {"job_id", "risk", "top_factors"} instead of a table')
    parser.set_defaults(func=run_risk)
    return parser


def _horizon(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Usage(f"--horizon-minutes must be a number, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise _Usage(f"--horizon-minutes must be 0 or more, not {text}")
    return value


def _one_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return (lines[0] if lines else "")[:400]


def _run_folders(path: Path) -> list[Path]:
    if (path / _WANDB_METADATA).is_file():
        return [path]
    return sorted({p.parent for p in path.rglob(_WANDB_METADATA)})


def _registry_files(path: Path) -> list[Path]:
    from ftops.readers.formats import data_format

    if path.is_file():
        return [path] if data_format(path.name) is not None else []
    folder = path / "jobs"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and data_format(p.name) is not None)


def read_runs(paths: list[str], flag: str, *, with_samples: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(job rows, metric samples) of every run under `paths`; _Usage naming the path that has none."""
    from ftops.readers.jobs import read_jobs
    from ftops.readers.wandb_job import read_wandb_job
    from ftops.schemas import JOBS, METRIC_SAMPLES

    jobs: list[pd.DataFrame] = []
    metric_paths: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise _Usage(f"{flag} {raw}: file or folder not found")
        found = 0
        runs = _run_folders(path) if path.is_dir() else []
        for run in runs:
            accepted = read_wandb_job(run).accepted
            found += len(accepted)
            jobs.append(accepted)
        metric_paths.extend(runs)
        registries = [] if runs else _registry_files(path)
        for registry in registries:
            accepted = read_jobs(registry).accepted
            found += len(accepted)
            jobs.append(accepted)
        if registries and path.is_dir() and (path / "metrics").is_dir():
            metric_paths.append(path / "metrics")
        if not found:
            raise _Usage(f"{flag} {raw}: no runs found (expected a W&B run folder, a folder of runs, an inbox "
                         "with jobs/, or a job registry file)")
    frame = pd.concat(jobs, ignore_index=True) if jobs else JOBS.empty()
    frame = frame.drop_duplicates("job_id", keep="last").reset_index(drop=True)
    samples = METRIC_SAMPLES.empty()
    if with_samples and metric_paths:
        from ftops.check_run import read_paths

        read = read_paths([str(p) for p in metric_paths])
        if read.problems:
            raise _Usage(f"{flag}: {_one_line(read.problems[0])}")
        samples = read.samples
    return frame, samples


def risk_scores(train: list[str], score: list[str], horizon_minutes: float,
                now: pd.Timestamp | None = None) -> tuple[pd.DataFrame, RiskModel]:
    """Scores (job_id, risk, top_factors) of the runs under `score` by a model trained under `train`,
    and the model (its time-ordered evaluation)."""
    from ftops.monitoring.health import run_health
    from ftops.predict.risk import RiskModelError, failure_labels, fit_risk_model, score_jobs

    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    with_samples = horizon_minutes > 0
    train_jobs, train_samples = read_runs(train, "--train", with_samples=with_samples)
    score_jobs_frame, score_samples = read_runs(score, "--score", with_samples=with_samples)
    samples = pd.concat([s for s in (train_samples, score_samples) if not s.empty], ignore_index=True) \
        if with_samples and not (train_samples.empty and score_samples.empty) else None
    health = run_health(samples, window_minutes=_WINDOW_MINUTES) if samples is not None else None
    try:
        model = fit_risk_model(train_jobs, health, failure_labels(train_jobs), horizon_minutes, now)
    except RiskModelError as exc:
        raise _Usage(f"--train: {exc}") from None
    return score_jobs(model, score_jobs_frame, health, now, context=train_jobs), model


def _objects(scores: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"job_id": str(row.job_id), "risk": round(float(row.risk), 4),
             "top_factors": [f for f in str(row.top_factors or "").split("; ") if f]}
            for row in scores.itertuples(index=False)]


def run_risk(args: argparse.Namespace) -> int:
    """Run `ftops risk` from parsed arguments; returns the exit code."""
    try:
        horizon = _horizon(args.horizon_minutes)
        scores, model = risk_scores(args.train, args.score, horizon)
    except _Usage as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    objects = _objects(scores.sort_values("risk", ascending=False, kind="stable"))
    if args.json:
        print(json.dumps(objects, indent=2, allow_nan=False, ensure_ascii=False))
        return 0
    from tabulate import tabulate

    print(tabulate([[o["job_id"], f"{o['risk']:.2f}", ", ".join(o["top_factors"]) or "-"] for o in objects],
                   headers=["job", "risk", "top factors"], disable_numparse=True))
    print(evaluation_line(model.evaluation))
    return 0


def evaluation_line(evaluation: dict[str, Any]) -> str:
    """How far to trust the scores: the time-ordered evaluation on the training runs, baseline beside it."""
    if evaluation.get("skipped"):
        return f"evaluation: skipped ({evaluation['skipped']})"

    def num(key: str) -> str:
        value = evaluation.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    return (f"evaluation (train on the earlier {evaluation.get('n_train')} runs, test on the later "
            f"{evaluation.get('n_test')}): AUC {num('auc')} (majority baseline 0.5), precision {num('precision')}, "
            f"recall {num('recall')}, accuracy {num('accuracy')} vs {num('baseline_accuracy')}, "
            f"Brier {num('brier')} vs {num('baseline_brier')}")
