from __future__ import annotations

import pandas as pd
import pytest

from ftops.optimize.gpus import canonical_gpu_model, canonical_gpu_models, datasheets


@pytest.mark.parametrize(("name", "model"), [
    # as W&B's wandb-metadata.json and nvidia-smi print them
    ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
    ("NVIDIA A100-SXM4-40GB", "A100"),
    ("A100-PCIE-40GB", "A100"),
    ("Tesla V100-SXM2-16GB", "V100"),
    ("Tesla V100-SXM2-32GB", "V100-32GB"),
    ("NVIDIA H100 80GB HBM3", "H100"),
    ("NVIDIA H200", "H200"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA A10G", "A10G"),
    ("Tesla T4", "T4"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA A10", "A10"),
    ("NVIDIA B200", "B200"),
    # the vocabulary itself, any case
    ("H100", "H100"), ("a100-80gb", "A100-80GB"), ("V100-32GB", "V100-32GB"), ("l40s", "L40S"),
    ("H100-MEGA", "H100-MEGA"),
    # unknown
    ("NVIDIA GeForce RTX 4090", None), ("NVIDIA L40", None), ("MI300X", None), ("tpu-v4-8", None),
    ("", None), (None, None),
])
def test_canonical_names(name, model):
    assert canonical_gpu_model(name) == model


def test_memory_splits_a100_and_v100_when_the_name_lacks_the_size():
    assert canonical_gpu_model("NVIDIA A100-SXM4", 79.2) == "A100-80GB"
    assert canonical_gpu_model("NVIDIA A100-SXM4", 39.4) == "A100"
    assert canonical_gpu_model("A100", 80) == "A100-80GB"
    assert canonical_gpu_model("Tesla V100-SXM2", 31.7) == "V100-32GB"
    assert canonical_gpu_model("Tesla V100-SXM2", 15.8) == "V100"
    # the size in the name wins over a memory figure
    assert canonical_gpu_model("NVIDIA A100-SXM4-40GB", 80) == "A100"


def test_vectorised_form_keeps_the_index_and_calls_once_per_distinct_name(monkeypatch):
    import ftops.optimize.gpus as gpus

    calls = []
    real = gpus.canonical_gpu_model
    monkeypatch.setattr(gpus, "canonical_gpu_model", lambda n, m=None: calls.append(n) or real(n, m))
    names = pd.Series(["Tesla T4", "NVIDIA A100-SXM4-80GB", None, "x"] * 1000, index=range(7, 4007))
    out = gpus.canonical_gpu_models(names)
    assert out.index.equals(names.index) and str(out.dtype) == "string"
    assert out.iloc[:4].tolist() == ["T4", "A100-80GB", pd.NA, pd.NA]
    assert len(calls) == 4
    with_memory = canonical_gpu_models(pd.Series(["A100", "A100"]), pd.Series([80.0, 40.0]))
    assert with_memory.tolist() == ["A100-80GB", "A100"]


def test_datasheets_cover_the_vocabulary_with_dense_figures_and_a_source():
    sheets = datasheets()
    assert list(sheets.columns) == ["memory_gb", "dense_bf16_tflops", "memory_bandwidth_gbps", "source"]
    required = {"H100", "H200", "A100", "A100-80GB", "L4", "L40S", "A10G", "A10", "T4", "V100", "V100-32GB",
                "B200", "H100-MEGA"}
    assert required <= set(sheets.index)
    expect = {"H100": (80, 989, 3350), "H200": (141, 989, 4800), "A100": (40, 312, 1555),
              "A100-80GB": (80, 312, 2039), "L4": (24, 121, 300), "L40S": (48, 362, 864),
              "A10": (24, 125, 600), "A10G": (24, 125, 600), "T4": (16, 65, 320), "V100": (16, 125, 900),
              "V100-32GB": (32, 125, 900), "B200": (180, 2250, 8000)}
    for model, figures in expect.items():
        assert tuple(sheets.loc[model, ["memory_gb", "dense_bf16_tflops", "memory_bandwidth_gbps"]]) == figures
    assert sheets.loc["H100-MEGA"].drop("source").equals(sheets.loc["H100"].drop("source"))
    assert sheets["source"].str.contains("https://www.nvidia.com/").all()
    assert "FP16" in sheets.loc["T4", "source"] and "FP16" in sheets.loc["V100", "source"]
    assert "A10" in sheets.loc["A10G", "source"]
    sheets.loc["H100", "memory_gb"] = 1.0  # a copy: the cached table is not changed
    assert datasheets().loc["H100", "memory_gb"] == 80
