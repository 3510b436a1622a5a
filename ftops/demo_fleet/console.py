"""`logs/<job_id>.log`: the console of each started job, as a Hugging Face Trainer under torchrun prints it
(its header, the logging-step dicts, evaluations), ending the way the job ended: the Trainer's summary,
a traceback (CUDA OOM, a NaN-loss stop, the script's own error), a shutdown signal, or nothing at all
(a reclaimed or lost node, a job still running). Only the last `CONSOLE_LOG_STEPS` logging steps are
printed: the console reader keeps a tail anyway."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ftops.demo_fleet.plan import PlannedJob, job_rng
from ftops.demo_fleet.signals import TrainingSignals
from ftops.demo_fleet.times import ms_to_iso

CONSOLE_LOG_STEPS = 60

_CODE_ERRORS = (
    ('  File "/workspace/train.py", line 88, in format_example\n    return {"text": PROMPT.format(**row)}',
     "KeyError: 'response'"),
    ('  File "/workspace/train.py", line 142, in compute_metrics\n    preds, labels = eval_pred',
     "ValueError: too many values to unpack (expected 2)"),
    ('  File "/usr/local/lib/python3.11/site-packages/transformers/trainer.py", line 3708, in compute_loss\n'
     '    outputs = model(**inputs)',
     "TypeError: LlamaForCausalLM.forward() got an unexpected keyword argument 'response_mask'"),
    ('  File "/workspace/data.py", line 51, in load_split\n    with open(path) as fh:',
     "FileNotFoundError: [Errno 2] No such file or directory: '/data/v2/train.jsonl'"),
)


def _ts(ms: int) -> str:
    return str(ms_to_iso(np.array([ms], dtype=np.int64), "s")[0]).replace("T", " ").rstrip("Z")


def _step_line(values: dict[str, np.ndarray], i: int) -> str:
    def number(x: float) -> str:
        return "nan" if x != x else f"{x:.4g}"
    return (f"{{'loss': {number(values['training_loss'][i])}, 'grad_norm': {number(values['grad_norm'][i])}, "
            f"'learning_rate': {values['learning_rate'][i]:.4g}, 'epoch': {values['epoch'][i]:.4g}}}")


def console_text(job: PlannedJob, tr: TrainingSignals, seed: int) -> str:
    r = job_rng(seed, job.index, 8)
    assert job.started_ms is not None
    eff = job.batch_size * job.grad_accum * job.instance.gpu_count
    lines = [
        f"[{_ts(job.started_ms)}] torchrun --nproc_per_node {job.instance.gpu_count} train.py "
        f"--model {job.base_model} --technique {job.technique} --max_seq_length {job.seq_len}",
        f"Loading checkpoint shards: 100%|##########| 4/4 [00:{int(r.integers(10, 59)):02d}<00:00]",
        "***** Running training *****",
        f"  Num examples = {job.dataset_samples:,}",
        f"  Num Epochs = {job.epochs}",
        f"  Instantaneous batch size per device = {job.batch_size}",
        f"  Total train batch size (w. parallel, distributed & accumulation) = {eff}",
        f"  Gradient Accumulation steps = {job.grad_accum}",
        f"  Total optimization steps = {job.total_steps:,}",
    ]
    n = len(tr.steps)
    evals = dict(zip(tr.eval_steps.tolist(), range(len(tr.eval_steps))))
    for i in range(max(0, n - CONSOLE_LOG_STEPS), n):
        lines.append(_step_line(tr.values, i))
        k = evals.get(int(tr.steps[i]))
        if k is not None:
            lines.append(f"{{'eval_loss': {tr.eval_values['val_loss'][k]:.4g}, "
                         f"'eval_domain_accuracy': {tr.eval_values['domain_accuracy'][k]:.4g}, "
                         f"'epoch': {tr.values['epoch'][i]:.4g}}}")
    if n:
        lines.append(f"{100 * int(tr.steps[-1]) // job.total_steps}%|####      | "
                     f"{int(tr.steps[-1])}/{job.total_steps}")
    last_ms = int(tr.log_ms[-1]) if n else job.t0_ms
    pid = int(r.integers(2000, 60000))
    crash = [f"[{_ts(last_ms + 5000)}] Traceback (most recent call last):",
             '  File "/workspace/train.py", line 211, in <module>', "    trainer.train()"]
    torchrun = (f"[{_ts(last_ms + 9000)}] ERROR:torch.distributed.elastic.multiprocessing.api:failed "
                f"(exitcode: 1) local_rank: 0 (pid: {pid}) of binary: /usr/bin/python3")
    if job.status == "succeeded":
        runtime = float(job.log_rel_s[-1])
        lines += [f"{{'train_runtime': {runtime:.1f}, 'train_samples_per_second': "
                  f"{job.samples_per_second:.3f}, 'train_loss': {np.nanmean(tr.values['training_loss']):.4f}, "
                  f"'epoch': {job.epochs}.0}}",
                  f"100%|##########| {job.total_steps}/{job.total_steps}",
                  f"[{_ts(job.ended_ms or last_ms)}] Saving model checkpoint to ./output"]
    elif job.fault == "oom":
        gib = job.instance.gpu_memory_gib - 0.95
        lines += crash + [
            '  File "/usr/local/lib/python3.11/site-packages/torch/utils/checkpoint.py", line 1131, in backward',
            f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {r.uniform(0.5, 3):.2f} GiB. GPU 0 has a "
            f"total capacity of {gib:.2f} GiB of which {r.uniform(0.05, 0.4):.2f} GiB is free. Including non-PyTorch "
            "memory, this process has the rest in use. If reserved but unallocated memory is large try setting "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.", torchrun]
    elif job.fault == "loss_divergence":
        lines += crash + ['  File "/workspace/train.py", line 97, in on_log',
                          f"RuntimeError: loss is nan at step {int(tr.steps[-1]) if n else 0}: stopping", torchrun]
    elif job.fault == "code_error":
        where, error = _CODE_ERRORS[int(r.integers(len(_CODE_ERRORS)))]
        lines += crash + [where, error, torchrun]
    elif job.status == "cancelled":
        lines.append(f"[{_ts(job.ended_ms or last_ms)}] torch.distributed.elastic.agent.server.api: "
                     "received SIGTERM death signal, shutting down workers")
    # preempted, lost and running jobs: the console just stops
    return "\n".join(lines) + "\n"


def write_console_log(folder: Path, job: PlannedJob, tr: TrainingSignals, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job.job_id}.log").write_text(console_text(job, tr, seed), encoding="utf-8")
