"""The handful of instance types the demo fleet runs on, with the prices its policy bills them at."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoInstance:
    """One row of the demo price table (not a catalogue: a handful of types to make a fleet from)."""

    name: str
    gpu_type: str
    gpu_count: int
    gpu_memory_gib: int
    vcpus: int
    memory_gib: int
    on_demand_usd_per_hour: float
    spot_usd_per_hour: float
    gpu_tdp_watts: float
    effective_tflops_per_gpu: float  # bf16 at a typical ~35-40 % MFU, to derive plausible throughput


# DEMO price table: public AWS us-east-1 on-demand list prices (Linux, 2025) rounded, and typical
# spot prices of that period. Illustrative only; the bundled catalogue is the reference.
DEMO_INSTANCES: dict[str, DemoInstance] = {
    i.name: i
    for i in (
        DemoInstance("g6.xlarge", "L4", 1, 24, 4, 16, 0.8048, 0.35, 72.0, 30.0),
        DemoInstance("g6.12xlarge", "L4", 4, 24, 48, 192, 4.6016, 1.95, 72.0, 30.0),
        DemoInstance("g5.2xlarge", "A10G", 1, 24, 8, 32, 1.212, 0.49, 300.0, 35.0),
        DemoInstance("g5.12xlarge", "A10G", 4, 24, 48, 192, 5.672, 2.30, 300.0, 35.0),
        DemoInstance("g6e.12xlarge", "L40S", 4, 48, 48, 384, 10.4926, 4.20, 350.0, 100.0),
        DemoInstance("p4d.24xlarge", "A100", 8, 40, 96, 1152, 21.9576, 8.20, 400.0, 110.0),
        DemoInstance("p4de.24xlarge", "A100-80GB", 8, 80, 96, 1152, 27.447, 9.90, 400.0, 120.0),
        DemoInstance("p5.48xlarge", "H100", 8, 80, 192, 2048, 55.04, 19.80, 700.0, 280.0),
    )
}
