"""Cost rules (§1.1): cost per hour over the limit, cost per processed sample vs benchmark and target.

Cost per sample = cost_per_hour_usd / (samples_per_second x 3600), pairing each cost sample with
the job's latest throughput sample at or before it. Attribution of billed costs to jobs lives in
ftops.costs; these rules read the `cost_per_hour_usd` samples that attribution (or a live price)
writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.hits import INFO, WARNING, make_hits
from ftops.monitoring.rules_quality import asof
from ftops.monitoring.series import MetricFrame
from ftops.policy import CostPolicy


def cost_hits(cost: MetricFrame, throughput: MetricFrame | None, policy: CostPolicy) -> list[pd.DataFrame]:
    c = cost.take(np.isfinite(cost.value))
    out = [make_hits(c, "cost_per_hour_high", c.value > policy.max_usd_per_hour, WARNING,
                     policy.max_usd_per_hour, "each sample")]
    if throughput is None or len(c) == 0:
        return out
    sps = asof(c, throughput, throughput.value)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_sample = np.where(sps > 0, c.value / (sps * 3600.0), np.nan)
    above_benchmark = per_sample > policy.benchmark_usd_per_sample
    above_target = (per_sample > policy.target_usd_per_sample) & ~above_benchmark
    text = "each cost sample with the latest samples/s"
    out.append(make_hits(c, "cost_per_sample_above_benchmark", above_benchmark, WARNING,
                         policy.benchmark_usd_per_sample, text, ref=c.value, score=sps, value=per_sample))
    out.append(make_hits(c, "cost_per_sample_above_target", above_target, INFO,
                         policy.target_usd_per_sample, text, ref=c.value, score=sps, value=per_sample))
    return out
