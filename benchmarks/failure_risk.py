"""Failure-risk model on the Alibaba PAI GPU trace (openb, 8,152 pods): pod_phase Failed vs Succeeded.

Reads `<realdata>/traces/alibaba_pai_v2023_openb/openb_pod_list_default.csv` (research data without a
licence file: read in place, never copied). Pods Running/Pending are left out. Time-ordered split by
creation_time (earlier 70 % train, later 30 % test). Prints AUC with and without the QoS class, AUC
within non-best-effort pods (87 % of failures are best-effort, and in the later 30 % every BE pod failed:
the shortcut a good model must go beyond), and the largest coefficients. Launch context is ftops.predict.risk.launch_context over the
pod's resource request (the trace's "configuration"); deletion_time is the end, used only to decide
which earlier pods had ended when a pod was created.

    python benchmarks/failure_risk.py [REALDATA]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ftops.predict.risk import launch_context, risk_pipeline

ORIGIN = pd.Timestamp("2023-01-01", tz="UTC")
NUMERIC = ["log_cpu_milli", "log_memory_mib", "num_gpu", "gpu_milli", "recent_failures_same_config",
           "failure_rate_same_config", "launches_same_config_recent", "log_hours_since_launch_same_name"]


def load(realdata: Path) -> pd.DataFrame:
    pods = pd.read_csv(realdata / "traces" / "alibaba_pai_v2023_openb" / "openb_pod_list_default.csv")
    pods = pods[pods["pod_phase"].isin(["Failed", "Succeeded"])].copy()
    pods["gpu_spec"] = pods["gpu_spec"].astype(object).fillna("any")
    frame = pd.DataFrame({
        "job_id": pods["name"], "started_at": ORIGIN + pd.to_timedelta(pods["creation_time"], unit="s"),
        "ended_at": ORIGIN + pd.to_timedelta(pods["deletion_time"], unit="s"),
        "status": np.where(pods["pod_phase"] == "Failed", "failed", "succeeded"),
        # the resource request stands for the spec: pods with the same one are "the same configuration"
        "technique": pods["qos"], "base_model": pods["gpu_spec"], "model_params_b": pods["gpu_milli"],
        "gpu_count": pods["num_gpu"], "batch_size": pods["cpu_milli"], "grad_accum": pods["memory_mib"],
        "name": pods["cpu_milli"].astype(str) + "/" + pods["memory_mib"].astype(str) + "/" + pods["num_gpu"].astype(str)
        + "/" + pods["gpu_milli"].astype(str) + "/" + pods["gpu_spec"],
    })
    context = launch_context(frame, burst_hours=6.0)
    out = pd.concat([frame, context], axis=1)
    out["log_cpu_milli"] = np.log1p(pods["cpu_milli"].to_numpy())
    out["log_memory_mib"] = np.log1p(pods["memory_mib"].to_numpy())
    out["num_gpu"] = pods["num_gpu"].to_numpy()
    out["gpu_milli"] = pods["gpu_milli"].to_numpy()
    out["gpu_spec"] = pods["gpu_spec"].to_numpy()
    out["qos"] = pods["qos"].to_numpy()
    return out.sort_values("started_at", kind="stable").reset_index(drop=True)


def evaluate(frame: pd.DataFrame, numeric: list[str], categorical: list[str]):
    cut = int(len(frame) * 0.7)
    train, test = frame.iloc[:cut], frame.iloc[cut:]
    y_train, y_test = (train["status"] == "failed").to_numpy(), (test["status"] == "failed").to_numpy()
    pipe = risk_pipeline(numeric, categorical, 1.0).fit(train[numeric + categorical], y_train)
    p = pipe.predict_proba(test[numeric + categorical])[:, 1]
    be = (test["qos"] != "BE").to_numpy()  # the test BE pods all failed: rank within the rest
    auc_be = roc_auc_score(y_test[be], p[be]) if len(np.unique(y_test[be])) == 2 else float("nan")
    names = pipe.named_steps["features"].get_feature_names_out()
    coef = pipe.named_steps["classifier"].coef_[0]
    top = ", ".join(f"{names[i].split('__')[-1]} {coef[i]:+.2f}" for i in np.argsort(-np.abs(coef))[:5])
    return len(train), len(test), int(y_test.sum()), roc_auc_score(y_test, p), auc_be, float((y_test == (y_train.mean() > 0.5)).mean()), top


def main(argv: list[str]) -> int:
    realdata = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "realdata"
    frame = load(realdata)
    rows = [
        ("spec + context + QoS", NUMERIC, ["gpu_spec", "qos"]),
        ("spec + context, no QoS", NUMERIC, ["gpu_spec"]),
        ("QoS only", [], ["qos"]),
        ("spec only, no QoS", NUMERIC[:4], ["gpu_spec"]),
    ]
    print(f"pods Failed/Succeeded: {len(frame)} ({int((frame['status'] == 'failed').sum())} failed)")
    print("| features | n_train | n_test | test failures | AUC | AUC within non-BE | majority acc | top coefficients |")
    print("|---|---|---|---|---|---|---|---|")
    for name, numeric, categorical in rows:
        n_train, n_test, fails, auc, auc_be, base, top = evaluate(frame, numeric, categorical)
        print(f"| {name} | {n_train} | {n_test} | {fails} | {auc:.3f} | {auc_be:.3f} | {base:.3f} | {top} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
