"""The demo's answer key: the faults it injected, each with the rule expected to catch it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ftops.demo_fleet.plan import FAULTS, PlannedJob
from ftops.demo_fleet.signals import ResourceSignals, TrainingSignals
from ftops.demo_fleet.times import iso, ms_text


@dataclass(frozen=True)
class InjectedFault:
    job_id: str
    fault: str
    expected_rule: str
    category: str
    onset: str  # ISO-8601 UTC: when the fault starts to show in the data
    detail: str


@dataclass(frozen=True)
class DemoManifest:
    seed: int
    n_jobs: int
    days: int
    start: pd.Timestamp
    end: pd.Timestamp
    counts: dict[str, int]
    faults: tuple[InjectedFault, ...]
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "n_jobs": self.n_jobs,
            "days": self.days,
            "start": iso(self.start),
            "end": iso(self.end),
            "counts": dict(self.counts),
            "faults": [asdict(f) for f in self.faults],
            "policy": self.policy,
        }


def fault_record(job: PlannedJob, tr: TrainingSignals, res: ResourceSignals) -> InjectedFault:
    rule, category = FAULTS[job.fault or ""]
    onset = tr.fault_onset_ms or res.fault_onset_ms
    if onset is None:
        onset = job.ended_ms if job.fault in ("spot_preemption", "code_error") and job.ended_ms else job.started_ms
    details = {
        "loss_divergence": "training loss rises for a few dozen logging steps, then NaN; job failed (nan_loss)",
        "gradient_explosion": "grad_norm 50-100x its running level for 3 logging steps, then back to normal",
        "gpu_underutilized": "GPU utilisation ~30-45 % for the whole run (data loader bound, CPU ~93 %)",
        "oom": "gpu_memory_used_ratio climbs to ~0.99, then the job fails (oom)",
        "spot_preemption": "spot instance reclaimed: samples and heartbeats stop, job preempted",
        "budget_overrun": f"8x H100 on-demand full fine-tune charged to {job.budget_category}",
        "val_overfitting": "val_loss rises after ~40 % of training while training loss keeps falling",
        "throughput_degradation": "samples_per_second drops to ~0.55x its early steady state",
        "lr_out_of_range": f"peak learning rate {job.peak_lr:g} (warm-up crosses 1e-3 early)",
        "heartbeat_lost": "node stops answering: samples, heartbeats and step progress stop hours before the "
                          "end while the registry still says running (and the instance is still billed)",
        "code_error": "the training script raises (a traceback in the console log); job failed (code_error)",
    }
    detail = details[job.fault or ""]
    if job.cause:  # drawn from the job's spec rather than placed in a scenario slot
        detail = f"{detail}; drawn from the spec: {job.cause}"
    return InjectedFault(job.job_id, job.fault or "", rule, category, ms_text(int(onset)) or "", detail)
