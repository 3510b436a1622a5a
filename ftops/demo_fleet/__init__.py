"""A seeded synthetic fine-tuning fleet: the inbox that `ftops demo` and the end-to-end tests read.

`write_demo_inbox` writes, for `n_jobs` jobs over the `days` before `end`:

- `jobs/jobs.csv`: the job registry (the `jobs` contract of ftops.schemas);
- `metrics/<job_id>/`: per job, the trainer's log and the node agent's resource samples. Most jobs
  log long-format JSONL (`trainer.jsonl`, `agent-<YYYYMMDD>.jsonl`, rotated daily like an agent
  does); two jobs log a wide CSV (`trainer_log.csv`) and one a Hugging Face `trainer_state.json`,
  because those are the other formats people produce;
- `billing/focus-<YYYY-MM-DD>.csv`: FOCUS 1.0 hourly line items (same columns, order and `NULL`
  convention as the public FOCUS sample data), tagged with job_id / budget_category / team, plus
  untagged storage and networking lines and one credit. Bills lag: the last 12 hours have no lines;
- `logs/<job_id>.log`: each started job's console tail (Trainer log lines, then the summary, the
  traceback of its failure, or nothing where its node went away);
- `demo_manifest.json` and `demo_policy.yaml` at the inbox root (neither is an inbox input).

The curves follow what real fine-tuning runs log: loss falling as a power law with per-step noise
and a drop at each epoch boundary, linear warm-up from ~1e-6 then cosine decay, gradient norms
between ~0.3 and 5 that start high and settle, GPU utilisation 80-95 % while training. Some jobs
carry injected faults (divergence, gradient explosion, idle GPUs, OOM, spot preemption, a node
that stops answering while the registry says running, budget overrun, overfitting, throughput loss,
learning rate out of range); the manifest lists each one with the alert rule expected to catch it.
Healthy jobs stay inside the default rules (docs/architecture.md §5). Beside those scenario slots,
every other job may fail the way fleets fail (~15 % of jobs, as in the Helios trace) with odds that
follow its spec (`plan._failure_odds`): OOM on 24 GB cards with long sequences or full fine-tuning of
7B+ models, spot reclaims on long spot runs, code errors on the first launch of a configuration (and
again after a crash), NaN losses at high learning rates. About a third of the jobs relaunch an earlier
job's configuration under its name (a sweep, a re-run), so a configuration has a history. The manifest
lists these drawn faults too, with the spec that made them likely.

Everything is drawn from `numpy.random.default_rng` streams derived from the seed, job by job, so
the same seed and `end` give byte-identical files. Per-sample work is vectorised; only jobs are
looped over. The default size writes ~2.4 million metric samples (~380 MB) in about 6 s on two
cores; `python -m ftops.demo_fleet <inbox>` prints the counts and the time.

Modules: `plan` (jobs, configurations, timelines, fault assignment), `signals` (the curves), `writers`
(metric export formats and the registry), `console` (the console logs), `billing` (usage and FOCUS lines), `policy` (budgets and
prices), `manifest` (the faults and the rules expected to catch them), `inbox` (writes it all).
"""

from ftops.demo_fleet.billing import FOCUS_COLUMNS
from ftops.demo_fleet.inbox import main, write_demo_inbox
from ftops.demo_fleet.instances import DEMO_INSTANCES, DemoInstance
from ftops.demo_fleet.manifest import DemoManifest, InjectedFault
from ftops.demo_fleet.plan import BILL_LAG_HOURS, BUDGET_CATEGORIES, FAULTS, MIN_JOBS, OVERRUN_CATEGORY
from ftops.demo_fleet.policy import demo_policy

__all__ = [
    "BILL_LAG_HOURS",
    "BUDGET_CATEGORIES",
    "DEMO_INSTANCES",
    "FAULTS",
    "FOCUS_COLUMNS",
    "MIN_JOBS",
    "OVERRUN_CATEGORY",
    "DemoInstance",
    "DemoManifest",
    "InjectedFault",
    "demo_policy",
    "main",
    "write_demo_inbox",
]
