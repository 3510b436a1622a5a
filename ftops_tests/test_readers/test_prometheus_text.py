from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ftops.readers.prometheus_text import read_prometheus_text
from ftops.readers.samples import CONFLICT_REASON
from ftops.schemas import METRIC_SAMPLES, METRICS, REJECTED_RECORDS, validate

DCGM_DIR = Path("telemetry/dcgm_scrapes_k8s_ai_conformance")
NVSMI_DIR = Path("telemetry/nvidia_smi_captures_nvidia_gpu_exporter")
GPU_METRICS = {
    "gpu_utilization_pct", "gpu_memory_copy_util_pct", "gpu_memory_used_ratio", "gpu_power_watts", "gpu_temperature_c",
}
T0 = pd.Timestamp("2024-05-01 12:00:00", tz="UTC")

# What each real dcgm-exporter scrape gives, and why where it is not the full five metrics of one GPU.
DCGM_EXPECTED = {
    "v1.35_ericsson-ccd.prom": (GPU_METRICS, 0),  # Tesla T4 under load
    # The file holds the same scrape twice (lines 70-138 repeat lines 1-69): the repeat is refused.
    "v1.35_kops.prom": (GPU_METRICS, 5),
    # No DCGM_FI_DEV_MEM_COPY_UTIL here: DCGM_FI_PROF_DRAM_ACTIVE (0-1) stands in.
    "v1.35_rafay.prom": (GPU_METRICS, 0),
    "v1.35_upcloud.prom": (GPU_METRICS, 0),
    # Copied from a Markdown report with label sets elided as `{gpu="0",...,modelName=...,...}`:
    # 18 invalid exposition lines; the 2 complete lines are SM clock series ftops does not track.
    "v1.35_viettel-ai-platform.prom": (set(), 18),
    # vGPU (GRID A100): the exporter reports no power or temperature.
    "v1.35_vks.prom": (GPU_METRICS - {"gpu_power_watts", "gpu_temperature_c"}, 0),
    "v1.36_vks.prom": (GPU_METRICS - {"gpu_power_watts", "gpu_temperature_c"}, 0),
}


def _check_contract(result) -> None:
    pd.testing.assert_frame_equal(result.accepted, validate(result.accepted, METRIC_SAMPLES))
    pd.testing.assert_frame_equal(result.rejected, validate(result.rejected, REJECTED_RECORDS))


def _check_ranges(accepted: pd.DataFrame) -> None:
    by_metric = accepted.groupby("metric")["value"]
    for metric, values in by_metric:
        assert values.notna().all(), metric
        if metric.endswith("_pct"):
            assert values.between(0, 100).all(), (metric, values.tolist())
        if metric.endswith("_ratio"):
            assert values.between(0, 1).all(), (metric, values.tolist())
        if metric == "gpu_power_watts":
            assert values.between(1, 1500).all(), values.tolist()
        if metric == "gpu_temperature_c":
            assert values.between(5, 110).all(), values.tolist()


def _by_metric(result) -> dict[str, float]:
    return dict(zip(result.accepted["metric"], result.accepted["value"]))


def test_dcgm_exporter_scrapes(realdata: Path) -> None:
    files = sorted((realdata / DCGM_DIR).glob("*.prom"))
    assert {f.name for f in files} == set(DCGM_EXPECTED), "new scrape files: add what they should give"
    for path in files:
        result = read_prometheus_text(path, scraped_at=T0)
        metrics, rejected = DCGM_EXPECTED[path.name]
        _check_contract(result)
        assert set(result.accepted["metric"]) == metrics, path.name
        assert len(result.accepted) == len(metrics), path.name  # one GPU per scrape, no duplicates
        # a scrape pasted twice repeats identical samples: dropped and counted, not refused
        assert len(result.rejected) + result.duplicates == rejected, (path.name, result.rejection_counts())
        _check_ranges(result.accepted)
        if metrics:
            assert set(result.accepted["device"]) == {"0"}, path.name  # the `gpu` label, not `device="nvidia0"`
            assert result.accepted["host"].notna().all(), path.name  # from the Hostname label
            assert (result.accepted["job_id"] == path.stem).all()  # no pod label: the file stem
            assert (result.accepted["ts"] == T0).all()

    kops = read_prometheus_text(realdata / DCGM_DIR / "v1.35_kops.prom", scraped_at=T0)
    assert kops.rejected.empty and kops.duplicates == 5
    viettel = read_prometheus_text(realdata / DCGM_DIR / "v1.35_viettel-ai-platform.prom", scraped_at=T0)
    assert viettel.rejection_counts() == {"malformed line: invalid label set": 18}
    assert viettel.rejected["raw"].str.contains(r"\.\.\.", regex=True).all()


def test_dcgm_loaded_t4_against_idle_gpus(realdata: Path) -> None:
    loaded = _by_metric(read_prometheus_text(realdata / DCGM_DIR / "v1.35_ericsson-ccd.prom", scraped_at=T0))
    # DCGM_FI_DEV_GPU_UTIL (91 %) wins over the profiling field GR_ENGINE_ACTIVE (0.156) it coexists with.
    assert loaded["gpu_utilization_pct"] == 91.0
    assert loaded["gpu_memory_copy_util_pct"] == 73.0
    assert loaded["gpu_memory_used_ratio"] == pytest.approx(5120 / (5120 + 9791))
    assert loaded["gpu_power_watts"] == pytest.approx(68.244)
    for idle in ("v1.35_kops.prom", "v1.35_upcloud.prom", "v1.35_rafay.prom"):
        values = _by_metric(read_prometheus_text(realdata / DCGM_DIR / idle, scraped_at=T0))
        assert values["gpu_utilization_pct"] < loaded["gpu_utilization_pct"]
        assert values["gpu_power_watts"] < loaded["gpu_power_watts"]


def _nvsmi_pairs(realdata: Path) -> list[tuple[Path, Path]]:
    idle = sorted((realdata / NVSMI_DIR).glob("*__idle.metrics"))
    return [(p, p.with_name(p.name.replace("__idle.metrics", "__load.metrics"))) for p in idle]


def test_nvidia_gpu_exporter_captures(realdata: Path) -> None:
    files = sorted((realdata / NVSMI_DIR).glob("*.metrics"))
    assert len(files) == 20
    for path in files:
        result = read_prometheus_text(path, job_id="job-a", scraped_at=T0)
        _check_contract(result)
        assert result.rejected.empty, (path.name, result.rejection_counts())
        expected = GPU_METRICS
        if "-mig__" in path.name:
            # nvidia-smi reports no utilisation for a GPU in MIG mode; the exporter omits those series.
            expected = GPU_METRICS - {"gpu_utilization_pct", "gpu_memory_copy_util_pct"}
        assert set(result.accepted["metric"]) == expected, path.name
        assert len(result.accepted) == len(expected), path.name
        _check_ranges(result.accepted)
        # Series carry only `uuid`; the index comes from nvidia_smi_index / nvidia_smi_gpu_info.
        assert set(result.accepted["device"]) == {"0"}, path.name
        assert (result.accepted["job_id"] == "job-a").all()


def test_nvidia_gpu_exporter_load_against_idle(realdata: Path) -> None:
    pairs = _nvsmi_pairs(realdata)
    assert len(pairs) == 10
    for idle_path, load_path in pairs:
        idle = _by_metric(read_prometheus_text(idle_path, scraped_at=T0))
        load = _by_metric(read_prometheus_text(load_path, scraped_at=T0))
        # Every load (gpu-burn + memhog, or two NVENC encodes) allocates GPU memory.
        assert load["gpu_memory_used_ratio"] > idle["gpu_memory_used_ratio"], load_path.name
        if "gpu_utilization_pct" not in idle:
            continue  # MIG
        if "nvidia-l40s" in idle_path.name:
            # The L40S "idle" capture shows 100 % utilisation and 145 W (the GPU was still busy);
            # its load is NVENC encoding, which barely moves the SM utilisation (9 %).
            assert (idle["gpu_utilization_pct"], load["gpu_utilization_pct"]) == (100.0, 9.0)
            continue
        assert load["gpu_utilization_pct"] > idle["gpu_utilization_pct"], load_path.name
        assert load["gpu_power_watts"] > idle["gpu_power_watts"], load_path.name


def test_nvidia_gpu_exporter_h100_load_values(realdata: Path) -> None:
    path = realdata / NVSMI_DIR / "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01__load.metrics"
    values = _by_metric(read_prometheus_text(path, scraped_at=T0))
    assert values == pytest.approx({
        "gpu_utilization_pct": 100.0,  # nvidia_smi_utilization_gpu_ratio 1 -> percent
        "gpu_memory_copy_util_pct": 11.0,  # utilization_memory_ratio 0.11 -> percent
        "gpu_memory_used_ratio": 2.0780679168e10 / 8.5520809984e10,  # used / total bytes
        "gpu_power_watts": 631.95,  # power_draw_watts, not the instant reading
        "gpu_temperature_c": 59.0,
    })


# --- inline fixtures -------------------------------------------------------------------------

def test_malformed_lines_rejected_rest_read() -> None:
    text = "\n".join([
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).",
        "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="n1"} 85',
        'DCGM_FI_DEV_GPU_UTIL{gpu="1",...} 70',  # elided labels
        'DCGM_FI_DEV_GPU_UTIL{gpu="2",gpu="3"} 70',  # repeated label name
        'DCGM_FI_DEV_GPU_TEMP{gpu="0"} hot',
        'DCGM_FI_DEV_GPU_TEMP{gpu="1"} 50 2024-05-01',
        'DCGM_FI_DEV_GPU_TEMP{gpu="2"} 50 1714564800000 extra',
        "9DCGM 1",
        'some_other_metric{gpu="0"} 1',  # not tracked: skipped, not rejected
        'DCGM_FI_DEV_SM_CLOCK{gpu="0"} 1410',
        "",
    ])
    result = read_prometheus_text(text, job_id="job-1", scraped_at=T0)
    _check_contract(result)
    assert result.accepted[["metric", "value", "device", "host"]].values.tolist() == [
        ["gpu_utilization_pct", 85.0, "0", "n1"]
    ]
    assert dict(zip(result.rejected["record"], result.rejected["reason"])) == {
        "line 4": "malformed line: invalid label set",
        "line 5": "malformed line: label name repeated",
        "line 6": "malformed line: sample value is not a number",
        "line 7": "malformed line: timestamp is not integer milliseconds",
        "line 8": "malformed line: unexpected text after the timestamp",
        "line 9": "malformed line: invalid metric name",
    }
    assert '"DCGM_FI_DEV_GPU_TEMP{gpu=\\"0\\"} hot"' in result.rejected["raw"].iloc[2]


def test_timestamps_line_then_argument_then_mtime(tmp_path: Path) -> None:
    text = (
        'DCGM_FI_DEV_GPU_UTIL{gpu="0"} 10 1714564800000\n'
        'DCGM_FI_DEV_GPU_UTIL{gpu="1"} 20\n'
    )
    result = read_prometheus_text(text, job_id="j", scraped_at=pd.Timestamp("2024-05-02 00:00"))
    assert result.accepted["ts"].tolist() == [
        pd.Timestamp("2024-05-01 12:00:00", tz="UTC"), pd.Timestamp("2024-05-02 00:00", tz="UTC")
    ]
    path = tmp_path / "scrape.prom"
    path.write_text(text)
    mtime = 1_700_000_000
    os.utime(path, (mtime, mtime))
    from_file = read_prometheus_text(path)
    assert from_file.accepted["ts"].tolist() == [
        pd.Timestamp("2024-05-01 12:00:00", tz="UTC"), pd.Timestamp(mtime, unit="s", tz="UTC")
    ]
    assert (from_file.accepted["job_id"] == "scrape").all()  # the file stem
    assert (from_file.accepted["source"] == str(path)).all()
    # Inline text has no file time: without scraped_at its untimestamped samples are refused.
    inline = read_prometheus_text(text, job_id="j")
    assert len(inline.accepted) == 1
    assert inline.rejection_counts() == {"timestamp missing or unparseable": 1}


def test_job_id_precedence() -> None:
    text = "\n".join([
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",job_id="train-1",pod="p"} 1',
        'DCGM_FI_DEV_GPU_UTIL{gpu="1",exported_pod="train-2",pod="dcgm-exporter-abc"} 2',
        'DCGM_FI_DEV_GPU_UTIL{gpu="2",pod="train-3"} 3',
        'DCGM_FI_DEV_GPU_UTIL{gpu="3",pod=""} 4',  # an empty label is no label
        "",
    ])
    result = read_prometheus_text(text, job_id="fallback", scraped_at=T0)
    assert result.accepted["job_id"].tolist() == ["train-1", "train-2", "train-3", "fallback"]


def test_ftops_agent_names_and_special_values() -> None:
    text = "\n".join([
        '# TYPE ftops_gpu_utilization_pct gauge',
        'ftops_gpu_utilization_pct{job_id="job-9",device="GPU-1234",host="node-b"} 88.5 1714564800000',
        'ftops_gpu_memory_used_ratio{job_id="job-9",device="0",host="node-b"} 0.5',
        'ftops_cpu_utilization_pct{job_id="job-9",host="node-b"} 41',
        'ftops_training_loss{job_id="job-9"} NaN',
        'ftops_grad_norm{job_id="job-9"} +Inf',
        'ftops_not_a_metric{job_id="job-9"} 1',  # unknown name: not tracked
        'ftops_cpu_utilization_pct{job_id="job-9",host="node-b"} 42',  # line 4's sample, another value
        "",
    ])
    result = read_prometheus_text(text, scraped_at=T0)
    _check_contract(result)
    assert result.rejected["record"].tolist() == ["line 8"]
    assert result.rejection_counts() == {CONFLICT_REASON: 1}
    assert '"kept_value": 41.0' in result.rejected["raw"].iloc[0]
    got = result.accepted.set_index("metric")
    assert got.loc["gpu_utilization_pct", "device"] == "GPU-1234"
    assert got.loc["gpu_utilization_pct", "ts"] == pd.Timestamp("2024-05-01 12:00", tz="UTC")
    assert got.loc["gpu_memory_used_ratio", "value"] == 0.5
    assert pd.isna(got.loc["cpu_utilization_pct", "device"])
    assert got.loc["cpu_utilization_pct", "host"] == "node-b"
    assert np.isnan(got.loc["training_loss", "value"])
    assert got.loc["grad_norm", "value"] == np.inf
    assert set(result.accepted["job_id"]) == {"job-9"}


def test_fallbacks_ratios_and_devices() -> None:
    text = "\n".join([
        # GR_ENGINE_ACTIVE only where GPU_UTIL is absent (gpu 1), scaled 0-1 -> %.
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="h"} 50',
        'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",Hostname="h"} 0.9',
        'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="1",Hostname="h"} 0.25',
        # MIG instances of one GPU stay apart.
        'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="2",GPU_I_ID="1",Hostname="h"} 0.5',
        'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="2",GPU_I_ID="2",Hostname="h"} 0.75',
        # FB pair -> capacity ratio; a lone FB_USED cannot make one.
        'DCGM_FI_DEV_FB_USED{gpu="0",Hostname="h"} 1024',
        'DCGM_FI_DEV_FB_FREE{gpu="0",Hostname="h"} 3072',
        'DCGM_FI_DEV_FB_USED{gpu="1",Hostname="h"} 10',
        # nvidia_gpu_exporter without an index series: the UUID is the device.
        'nvidia_smi_utilization_gpu_ratio{uuid="GPU-aaa"} 0.42',
        # mindprince exporter: milliwatts -> watts, minor_number is the index.
        'nvidia_gpu_power_usage_milliwatts{minor_number="3",uuid="GPU-bbb"} 250000',
        # node_exporter host memory, host from the instance label without its port.
        'node_memory_MemAvailable_bytes{instance="10.1.2.3:9100"} 25',
        'node_memory_MemTotal_bytes{instance="10.1.2.3:9100"} 100',
        # Escaped quote and brace inside a label value do not break the label set.
        'DCGM_FI_DEV_GPU_TEMP{gpu="5",Hostname="h",modelName="A \\"quoted\\" {name}"} 40',
        "",
    ])
    result = read_prometheus_text(text, job_id="j", scraped_at=T0)
    _check_contract(result)
    rows = {(m, d): v for m, d, v in result.accepted[["metric", "device", "value"]].itertuples(index=False)}
    assert rows[("gpu_utilization_pct", "0")] == 50.0
    assert rows[("gpu_utilization_pct", "1")] == 25.0
    assert rows[("gpu_utilization_pct", "2:mig1")] == 50.0
    assert rows[("gpu_utilization_pct", "2:mig2")] == 75.0
    assert rows[("gpu_memory_used_ratio", "0")] == 0.25
    assert rows[("gpu_utilization_pct", "GPU-aaa")] == pytest.approx(42.0)
    assert rows[("gpu_power_watts", "3")] == 250.0
    assert rows[("gpu_temperature_c", "5")] == 40.0
    host_mem = result.accepted[result.accepted["metric"] == "host_memory_used_ratio"]
    assert host_mem[["value", "host"]].values.tolist() == [[0.75, "10.1.2.3"]]
    assert len(result.accepted) == 9
    assert result.rejection_counts() == {
        "memory 'free'/'total' series missing for this GPU/time: capacity ratio cannot be computed": 1
    }
    assert result.rejected["record"].tolist() == ["line 8"]


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    missing = read_prometheus_text(tmp_path / "nope.prom")
    assert missing.accepted.empty and len(missing.rejected) == 1
    assert missing.rejected["reason"].iloc[0].startswith("cannot read file")
    binary = tmp_path / "gz.prom"
    binary.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe\x00")
    refused = read_prometheus_text(binary)
    assert refused.rows_in == 1 and refused.rejected["reason"].iloc[0].startswith("not UTF-8 text")
    empty = tmp_path / "empty.prom"
    empty.write_text("# HELP nothing\n\n")
    assert read_prometheus_text(empty).rows_in == 0


def test_large_scrape_is_fast() -> None:
    # 1,000 hosts x 8 GPUs x 6 series = 48,000 lines, a fleet-wide federation dump.
    hosts = np.repeat(np.arange(1000), 8 * 6)
    gpus = np.tile(np.repeat(np.arange(8), 6), 1000)
    names = np.tile(
        ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
         "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP"], 8000,
    )
    lines = pd.Series(names) + '{gpu="' + pd.Series(gpus).astype(str) + '",Hostname="node-' + \
        pd.Series(hosts).astype(str) + '",pod="job-' + pd.Series(hosts % 50).astype(str) + '"} 42'
    text = "\n".join(lines) + "\n"
    started = time.perf_counter()
    result = read_prometheus_text(text, scraped_at=T0)
    elapsed = time.perf_counter() - started
    assert result.rejected.empty
    assert len(result.accepted) == 8000 * 5
    assert set(result.accepted["metric"]) <= set(METRICS)
    assert elapsed < 10, f"{elapsed:.1f} s for 48k lines"
