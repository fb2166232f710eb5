"""Two processes (DDP over gloo on the CPU) against one process with the global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

COMMON = ["train.steps=3", "train.log_every=1", "train.warmup_steps=0", "train.lr=5e-3",
          "task.train_samples=24", "backbone.finetune=lora", "backbone.lora.r=4", "backbone.lora.dropout=0.0"]


def launch(run_dir: Path, processes: int, stage: str, *settings: str) -> None:
    sets = [arg for item in settings for arg in ("--set", item)]
    # accelerate's launcher spawns several processes on a machine without GPUs only in --multi_gpu
    # mode; qvl's Accelerator then joins them over gloo.
    mode = ["--multi_gpu"] if processes > 1 else []
    launcher = [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", str(processes),
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(29400 + os.getpid() % 500)]
    command = [*launcher, "-m", "qvl", "run", "colors", stage, "--run-dir", str(run_dir), *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]


def test_two_processes_with_batch_b_match_one_process_with_batch_2b(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    launch(single, 1, "train", *COMMON, "train.batch_size=4")
    launch(double, 2, "train", *COMMON, "train.batch_size=2")

    # each rank saw different samples, and together the ones the single process saw
    rank0 = [json.loads(line)["ids"] for line in (double / "samples" / "rank-0.jsonl").read_text().splitlines()]
    rank1 = [json.loads(line)["ids"] for line in (double / "samples" / "rank-1.jsonl").read_text().splitlines()]
    alone = [json.loads(line)["ids"] for line in (single / "samples" / "rank-0.jsonl").read_text().splitlines()]
    assert len(rank0) == len(rank1) == len(alone) == 3
    for step in range(3):
        assert not set(rank0[step]) & set(rank1[step])
        assert sorted(rank0[step] + rank1[step]) == sorted(alone[step])

    def losses(run):
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert losses(double) == pytest.approx(losses(single), rel=1e-4)

    def adapter(run):
        return load_file(str(run / "checkpoints" / "step-00000003" / "backbone" / "adapter_model.safetensors"))

    one, two = adapter(single), adapter(double)
    assert one.keys() == two.keys()
    for key in one:
        # Adam turns float-rounding noise on near-zero gradients into up to lr-sized moves; wrong data
        # or unsynchronised gradients would differ by about lr (5e-3) almost everywhere
        torch.testing.assert_close(two[key], one[key], rtol=1e-2, atol=1e-3)
    # and training did change the weights (lora_B starts at zero)
    assert any(v.abs().sum() > 0 for k, v in one.items() if "lora_B" in k)


def test_evaluation_over_two_processes_keeps_every_sample_once_in_order(tmp_path):
    run = tmp_path / "run"
    launch(run, 1, "train", *COMMON, "train.steps=1", "train.batch_size=2")
    # 5 samples in batches of 2 over 2 processes: the last batch is uneven and padded by accelerate
    launch(run, 2, "eval", "eval.max_samples=5", "eval.batch_size=2")
    rows = [json.loads(line) for line in (run / "eval" / "val" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"val-{i:05d}" for i in range(5)]
    assert json.loads((run / "eval" / "val" / "eval.json").read_text())["samples"] == 5
