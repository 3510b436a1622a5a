"""W&B run folders -> job_registry rows: real exports, synthetic corner cases, and the inbox path."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ftops.readers.inbox import classify, reader_for
from ftops.readers.wandb import read_wandb_run
from ftops.readers.wandb_job import cloud_from_os, exit_reason, model_params_b, read_wandb_job
from ftops.schemas import JOBS, validate

# the real exports are from 2023: judged long after, a run without an exit record is no longer alive
LATER = pd.Timestamp("2024-06-01", tz="UTC")
ALPACA = "runs/wandb_stanford_alpaca_early"
CHATGLM = "runs/wandb_wisdom-pan+ChatGLM-LoRA"


def _jobs(folder: Path, now: pd.Timestamp | None = LATER) -> pd.DataFrame:
    results = [read_wandb_job(run, now=now) for run in sorted((folder / "runs").iterdir())]
    for result in results:
        assert result.rejected.empty, result.rejected[["source", "reason"]].to_numpy()
    return pd.concat([r.accepted for r in results], ignore_index=True)


# ---------------------------------------------------------------------------------------------
# the real exports


def test_alpaca_runs_are_8_a100_80gb_llama_7b_full_fine_tunes(realdata: Path) -> None:
    jobs = _jobs(realdata / ALPACA)
    summary = pd.read_csv(realdata / ALPACA / "runs_summary.csv")

    assert len(jobs) == 82 and jobs["job_id"].is_unique
    assert set(jobs["job_id"]) == set(summary["run_id"])
    known_gpu = jobs[jobs["gpu_type"].notna()]
    # two runs have no GPU in their metadata (one has no metadata at all: only config.yaml)
    assert len(known_gpu) == 80
    assert set(known_gpu["gpu_type"]) == {"A100-80GB"} and set(known_gpu["gpu_count"]) == {8}
    assert set(jobs["technique"]) == {"full"}
    assert set(jobs["model_params_b"].dropna()) == {7.0} and jobs["model_params_b"].notna().sum() == 81
    assert set(jobs["base_model"].dropna()) == {"llama-7b"}
    assert set(jobs["cloud"].dropna()) == {"gcp"}  # "Linux-5.15.0-1046-gcp-x86_64-..."
    # --per_device_train_batch_size 2 --gradient_accumulation_steps 16 --num_train_epochs 3; config.yaml's
    # model_max_length 512
    run = jobs.set_index("job_id").loc["0ezwh62d"]
    assert (run["batch_size"], run["grad_accum"], run["epochs"], run["seq_len"]) == (2, 16, 3.0, 512)
    assert run["started_at"] == pd.Timestamp("2023-11-22T03:03:51.124089Z")
    assert run["ended_at"] == run["started_at"] + pd.Timedelta(seconds=206)  # {"_wandb": {"runtime": 206}}
    assert jobs.set_index("job_id").loc["iqu955sp", "total_steps"] == 1218


def test_alpaca_statuses_follow_the_exit_codes(realdata: Path) -> None:
    jobs = _jobs(realdata / ALPACA).set_index("job_id")
    summary = pd.read_csv(realdata / ALPACA / "runs_summary.csv").set_index("run_id")
    console = pd.read_csv(realdata / ALPACA / "runs_console_tail.csv").set_index("run_id")
    code = summary["exit_code"].where(summary["exit_record"])
    pattern = console["first_error_pattern"].reindex(code.index)
    # the README's counts: exit 0 = 39, 1 = 25, 255 = 10, none = 8
    assert ((code == 0).sum(), (code == 1).sum(), (code == 255).sum(), code.isna().sum()) == (39, 25, 10, 8)

    status = jobs["status"].reindex(code.index)
    assert (status[code == 0] == "succeeded").all()
    assert (status[code == 255] == "cancelled").all()
    # exit 1 after a KeyboardInterrupt: a person stopped the run (pdb sessions), not a failure
    interrupted = (code == 1) & (pattern == "KeyboardInterrupt")
    assert interrupted.sum() == 9 and (status[interrupted] == "cancelled").all()
    assert (status[(code == 1) & ~interrupted] == "failed").all()
    # no exit record: 8kelgntz logged the Trainer's end-of-training summary (succeeded); the other
    # seven stopped without one long before `now` (failed), one of them with only config.yaml
    no_record = status[code.isna()]
    assert no_record.to_dict() == {rid: ("succeeded" if rid == "8kelgntz" else "failed") for rid in no_record.index}
    assert jobs["status"].value_counts().to_dict() == {"succeeded": 40, "failed": 23, "cancelled": 19}

    assert jobs.loc[["l6hb9r70", "pjbanncy", "e5l3zvr2"], "exit_reason"].tolist() == ["oom"] * 3
    # RuntimeError "The size of tensor a (393) must match ..." and KeyError: the script's own bugs
    assert jobs.loc["k9fhcf5u", "exit_reason"] == "code_error" and jobs.loc["w3huplss", "exit_reason"] == "code_error"
    assert jobs.loc[jobs["status"] != "failed", "exit_reason"].isna().all()
    assert jobs.loc[jobs["status"] != "running", "ended_at"].notna().sum() >= 80


def test_the_job_id_is_the_samples_job_id(realdata: Path) -> None:
    run = realdata / ALPACA / "runs" / "8kelgntz"
    samples = read_wandb_run(run).accepted
    job = read_wandb_job(run / "wandb-metadata.json").accepted
    assert set(samples["job_id"]) == set(job["job_id"]) == {"8kelgntz"}

    folder = realdata / "runs" / "wandb_stanford_alpaca_8xA100_yc1999"  # a run folder on its own
    job = read_wandb_job(folder, now=LATER).accepted.iloc[0]
    assert job["job_id"] == read_wandb_run(folder / "history.csv").accepted["job_id"].iloc[0]
    assert (job["gpu_type"], job["gpu_count"], job["base_model"], job["model_params_b"]) == ("A100-80GB", 8,
                                                                                             "llama-7b-hf", 7.0)
    assert job["total_steps"] == 40  # the summary's step: history.csv stops one row short


def test_chatglm_runs_are_qlora_on_one_v100(realdata: Path) -> None:
    jobs = _jobs(realdata / CHATGLM).set_index("job_id")

    assert len(jobs) == 9
    assert set(jobs["gpu_type"]) == {"V100"} and set(jobs["gpu_count"]) == {1}  # "Tesla V100-PCIE-16GB"
    assert jobs["cloud"].isna().all()  # a JD Cloud kernel: no cloud of the catalogue
    # all LoRA adapters (--lora_rank); the script is train_qlora.py and config.yaml's
    # quantization_config.load_in_4bit is true: QLoRA
    assert set(jobs["technique"]) == {"qlora"}
    with_config = [p.name for p in sorted((realdata / CHATGLM / "runs").iterdir()) if (p / "config.yaml").is_file()]
    assert set(jobs.loc[with_config, "base_model"]) == {"chatglm2-6b"}
    assert set(jobs.loc[with_config, "model_params_b"]) == {6.0}
    # config.yaml's seq_length (32768) is ChatGLM2's context window, not the training length
    assert jobs["seq_len"].isna().all()
    # three exit 255 at start-up: cancelled
    assert jobs.loc[["uj1v8rxj", "jk5gfdws", "xa4d7xrs"], "status"].tolist() == ["cancelled"] * 3
    assert jobs.loc["9xns9u8c", "status"] == "failed"  # no exit record, no history


# ---------------------------------------------------------------------------------------------
# synthetic folders

META = {
    "os": "Linux-5.15.0-1040-azure-x86_64-with-glibc2.35",
    "startedAt": "2026-11-20T22:00:00.000000",
    "heartbeatAt": "2026-11-20T22:00:01.000000",
    "host": "node-a",
    "gpu": "NVIDIA H100 80GB HBM3",
    "gpu_count": 4,
    "program": "/home/u/finetune.py",
    "args": ["--model_name_or_path", "meta-llama/Llama-2-13b-hf", "--use_lora", "--lora_r", "16",
             "--load_in_4bit", "True", "--per_device_train_batch_size=4", "--gradient_accumulation_steps", "8",
             "--num_train_epochs", "2", "--max_source_length", "1024", "--max_target_length", "512",
             "--run_name", "legal-qlora"],
}
HISTORY = ("_runtime,_step,_timestamp,train/global_step,train/loss\n"
           "60,0,1795212060,10,2.1\n"
           "120,1,1795212120,20,1.9\n")


def _run(folder: Path, meta: dict | str | None = META, history: str | None = HISTORY,
         summary: dict | str | None = None, config: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in (("wandb-metadata.json", meta), ("history.csv", history),
                          ("wandb-summary.json", summary), ("config.yaml", config)):
        if content is not None:
            (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    return folder / "wandb-metadata.json"


def test_arguments_give_the_job(tmp_path: Path) -> None:
    now = pd.Timestamp("2026-11-20T22:03:00Z")  # a minute after the last history row: alive
    result = read_wandb_job(_run(tmp_path / "ab12cd34"), now=now)

    assert result.rejected.empty and result.records_accounted == 1
    job = result.accepted.iloc[0]
    assert job["job_id"] == "ab12cd34" and job["name"] == "legal-qlora"
    assert (job["base_model"], job["model_params_b"], job["technique"]) == ("Llama-2-13b-hf", 13.0, "qlora")
    assert (job["batch_size"], job["grad_accum"], job["epochs"], job["seq_len"]) == (4, 8, 2.0, 1536)
    assert (job["gpu_type"], job["gpu_count"], job["cloud"]) == ("H100", 4, "azure")
    assert job["status"] == "running" and pd.isna(job["ended_at"]) and job["total_steps"] == 20
    validate(result.accepted, JOBS)


def test_a_run_without_exit_record_and_old_life_failed(tmp_path: Path) -> None:
    path = _run(tmp_path / "ab12cd34", summary={"_runtime": 120.0, "_wandb": {"runtime": 125}})
    job = read_wandb_job(path, now=pd.Timestamp("2026-11-21T12:00:00Z")).accepted.iloc[0]
    assert job["status"] == "failed" and pd.isna(job["exit_reason"])
    assert job["ended_at"] == pd.Timestamp("2026-11-20T22:02:05Z")  # start + the longer runtime
    # without a clock the reader cannot see a run alive
    assert read_wandb_job(path).accepted["status"].tolist() == ["failed"]
    # the Trainer's end-of-training summary says the loop finished
    (tmp_path / "ab12cd34" / "wandb-summary.json").write_text(json.dumps({"train/train_runtime": 118.0}))
    assert read_wandb_job(path, now=pd.Timestamp("2026-11-21T12:00:00Z")).accepted["status"].tolist() == ["succeeded"]


def test_exit_record_two_folders_up(tmp_path: Path) -> None:
    export = tmp_path / "export"
    runs = {rid: _run(export / "runs" / rid) for rid in ("r0", "r1", "r2", "r3", "r4")}
    (export / "runs_summary.csv").write_text(
        "run_dir,run_id,exit_record,exit_code\n"
        "run-20261120_220000-r0,r0,True,0\nrun-20261120_220000-r1,r1,True,1\n"
        "run-20261120_220000-r2,r2,True,255\nrun-20261120_220000-r3,r3,True,1\n"
        "run-20261120_220000-r4,r4,True,1\n")
    (export / "runs_console_tail.csv").write_text(
        "run_id,exit_code,first_error_pattern,console_tail\n"
        'r1,1,CUDA_OOM,"torch.cuda.OutOfMemoryError: CUDA out of memory."\n'
        'r3,1,RuntimeError,"RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1269, unhandled system error"\n'
        'r4,1,KeyboardInterrupt,"KeyboardInterrupt"\n')
    now = pd.Timestamp("2026-11-20T22:03:00Z")  # alive by its samples: the exit record decides
    jobs = pd.concat([read_wandb_job(p, now=now).accepted for p in runs.values()]).set_index("job_id")
    assert jobs["status"].to_dict() == {"r0": "succeeded", "r1": "failed", "r2": "cancelled", "r3": "failed",
                                        "r4": "cancelled"}
    assert jobs.loc["r1", "exit_reason"] == "oom"
    assert pd.isna(jobs.loc["r3", "exit_reason"])  # a RuntimeError of the interconnect is no code error
    assert jobs["ended_at"].notna().all()


def test_corrupt_metadata_is_one_rejected_record(tmp_path: Path) -> None:
    result = read_wandb_job(_run(tmp_path / "run1", meta='{"gpu": "NVIDIA A100'))
    assert result.accepted.empty and len(result.rejected) == 1 and result.whole_file_rejected
    assert "cannot read wandb-metadata.json" in result.rejected["reason"].iloc[0]

    result = read_wandb_job(_run(tmp_path / "run2", meta="[1, 2]"))
    assert result.accepted.empty and "not a JSON object" in result.rejected["reason"].iloc[0]

    for missing in (tmp_path / "nowhere" / "wandb-metadata.json", tmp_path / "nowhere"):
        result = read_wandb_job(missing)
        assert result.accepted.empty and result.rejected["reason"].tolist() == ["file or folder not found"]
    (tmp_path / "empty").mkdir()
    assert "not a W&B run folder" in read_wandb_job(tmp_path / "empty").rejected["reason"].iloc[0]


def test_corrupt_companions_are_named_and_the_row_is_kept(tmp_path: Path) -> None:
    path = _run(tmp_path / "run1", config="a: [unclosed", summary="{not json")
    result = read_wandb_job(path)
    assert len(result.accepted) == 1 and result.records_accounted == 1 and not result.whole_file_rejected
    reasons = " | ".join(result.rejected["reason"])
    assert "cannot read config.yaml" in reasons and "cannot read wandb-summary.json" in reasons


def test_missing_fields_stay_null(tmp_path: Path) -> None:
    result = read_wandb_job(_run(tmp_path / "bare", meta={"startedAt": "2026-11-20T22:00:00"}, history=None))
    job = result.accepted.iloc[0]
    assert result.rejected.empty
    for column in ("name", "base_model", "model_params_b", "seq_len", "batch_size", "grad_accum", "epochs",
                   "gpu_type", "gpu_count", "cloud", "total_steps", "exit_reason", "instance_type", "pricing"):
        assert pd.isna(job[column]), column
    # nothing about adapters: a plain fine-tune; no exit record and no history: died at start-up
    assert job["technique"] == "full" and job["status"] == "failed"


def test_impossible_times_are_rejected_like_a_registry_row(tmp_path: Path) -> None:
    result = read_wandb_job(_run(tmp_path / "epoch0", meta={**META, "startedAt": "1970-01-01T00:00:00"}, history=None))
    assert result.accepted.empty and len(result.rejected) == 1
    assert "started_at before 2010-01-01" in result.rejected["reason"].iloc[0]


def test_config_yaml_gives_the_trainer_settings(tmp_path: Path) -> None:
    config = ("wandb_version: 1\n_wandb:\n  desc: null\n  value: {cli_version: 0.15.3}\n"
              "_name_or_path:\n  desc: null\n  value: /models/THUDM/chatglm2-6b\n"
              "seq_length:\n  desc: null\n  value: 32768\nmax_length:\n  desc: null\n  value: 20\n"
              "quantization_config:\n  desc: null\n  value: {load_in_8bit: false, load_in_4bit: false}\n"
              "lora_rank:\n  desc: null\n  value: 8\nper_device_train_batch_size:\n  desc: null\n  value: 8\n"
              "per_gpu_train_batch_size:\n  desc: null\n  value: None\n")
    meta = {"startedAt": "2026-11-20T22:00:00", "gpu": "Tesla V100-SXM2-16GB", "gpu_count": 1,
            "os": "Linux-5.10.0-aws-x86_64"}
    job = read_wandb_job(_run(tmp_path / "r", meta=meta, config=config)).accepted.iloc[0]
    assert (job["base_model"], job["model_params_b"], job["technique"]) == ("chatglm2-6b", 6.0, "lora")
    assert job["batch_size"] == 8 and pd.isna(job["seq_len"])
    assert (job["gpu_type"], job["cloud"]) == ("V100", "aws")


@pytest.mark.parametrize(("name", "billions"), [
    ("llama-7b", 7.0), ("chatglm2-6b", 6.0), ("Llama-2-13b-hf", 13.0), ("Qwen1.5-0.5B-Chat", 0.5),
    ("opt-350m", 0.35), ("Meta-Llama-3-8B", 8.0), ("gpt2", None), ("Mixtral-8x7B-v0.1", None),
    ("Qwen1.5-14B-Chat-4bit", 14.0), (None, None),
])
def test_model_size_from_the_name(name: str | None, billions: float | None) -> None:
    assert model_params_b(name) == billions


def test_cloud_and_exit_reason_words() -> None:
    assert cloud_from_os("Linux-5.15.0-1046-gcp-x86_64-with-glibc2.31") == "gcp"
    assert cloud_from_os("Linux-4.19.126-1.jdcloud.x86_64-x86_64-with-glibc2.31") is None
    assert exit_reason("RuntimeError", "RuntimeError: CUDA error: an illegal memory access") is None
    assert exit_reason("RuntimeError", "x\nRuntimeError: The size of tensor a (3) must match") == "code_error"
    assert exit_reason("KeyboardInterrupt") is None and exit_reason(None) is None


# ---------------------------------------------------------------------------------------------
# the inbox


def test_wandb_metadata_under_metrics_is_a_job_registry_input(tmp_path: Path) -> None:
    assert classify("metrics/export/runs/ab12/wandb-metadata.json") == "jobs"
    assert classify("jobs/wandb-metadata.json") == "jobs"
    assert classify("metrics/export/runs/ab12/wandb-summary.json") is None
    assert classify("metrics/export/runs/ab12/history.csv") == "metrics"
    path = _run(tmp_path / "ab12")
    assert reader_for("jobs", str(path))().accepted["job_id"].tolist() == ["ab12"]


def test_job_registry_picks_up_wandb_runs_and_the_registry_row_wins(tmp_path: Path) -> None:
    from ftops.defs.ingest import job_registry
    from ftops.defs.io_manager import PartitionedParquetIOManager
    from ftops.defs.resources import InboxResource, PolicyResource
    from ftops_tests.test_defs.inbox_builder import touch_later, write_jobs

    inbox = tmp_path / "inbox"
    write_jobs(inbox)  # ft-001 (running), ft-002 (succeeded, p5.48xlarge)
    export = inbox / "metrics" / "wandb_export"
    _run(export / "runs" / "ab12cd34")
    # W&B also saw ft-002, in a file newer than the registry: the registry's row must still win
    touch_later(_run(export / "runs" / "ft-002", meta={**META, "gpu_count": 1}), 3600)
    (export / "runs_summary.csv").write_text("run_dir,run_id,exit_record,exit_code\nx,ab12cd34,True,0\n"
                                             "y,ft-002,True,1\n")

    warehouse = str(tmp_path / "warehouse")
    result = dg.materialize(
        [job_registry],
        resources={"io_manager": PartitionedParquetIOManager(base_path=warehouse),
                   "inbox": InboxResource(inbox_path=str(inbox), warehouse_path=warehouse,
                                          partitions_start="2026-11-01", staging_workers=1),
                   "policy": PolicyResource()},
        run_config={"ops": {"job_registry": {"config": {"as_of": "2026-11-21T02:00:00Z"}}}},
    )
    assert result.success
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks and all(checks.values()), checks

    jobs = pd.read_parquet(Path(warehouse) / "job_registry.parquet").set_index("job_id")
    assert sorted(jobs.index) == ["ab12cd34", "ft-001", "ft-002"]
    wandb_job = jobs.loc["ab12cd34"]
    assert (wandb_job["status"], wandb_job["technique"], wandb_job["gpu_type"]) == ("succeeded", "qlora", "H100")
    assert jobs.loc["ft-002", "instance_type"] == "p5.48xlarge" and jobs.loc["ft-002", "gpu_count"] == 8
