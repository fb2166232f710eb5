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


def launch(run_dir: Path | None, processes: int, stage: str, *settings: str, task: str = "colors",
           site: Path | None = None, expect: int = 0) -> subprocess.CompletedProcess:
    sets = [arg for item in settings for arg in ("--set", item)]
    # accelerate's launcher spawns several processes on a machine without GPUs only in --multi_gpu
    # mode; qvl's Accelerator then joins them over gloo.
    mode = ["--multi_gpu"] if processes > 1 else []
    launcher = [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", str(processes),
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(29400 + os.getpid() % 500)]
    where = ["--run-dir", str(run_dir)] if run_dir is not None else []
    command = [*launcher, "-m", "qvl", "run", task, stage, *where, *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert (result.returncode == 0) == (expect == 0), result.stderr[-4000:]
    return result


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


def test_processes_share_one_run_directory_named_by_the_main_process(tmp_path, plugin_site):
    launch(None, 2, "train", f"output_dir={str(tmp_path / 'runs')!r}", task="vectors", site=plugin_site)
    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["rank-0.jsonl", "rank-1.jsonl"]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000004"]


def test_a_nan_on_one_process_stops_every_process_and_keeps_the_last_checkpoint(tmp_path, plugin_site):
    run = tmp_path / "run"
    result = launch(run, 2, "train", "task.nan_on_rank=1", "task.nan_at_step=2", "train.save_every=1",
                    task="vectors", site=plugin_site, expect=2)
    assert result.stderr.count("the loss is not finite on 1 of 2 processes at step 2") == 2  # both ranks
    assert [p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith(".")] == [
        "step-00000001", "step-00000002"]


def test_loss_terms_that_differ_between_processes_are_an_error_not_a_hang(tmp_path, plugin_site):
    result = launch(tmp_path / "run", 2, "train", "task.extra_key_on_rank=0", task="vectors", site=plugin_site,
                    expect=1)
    assert result.stderr.count("returned different keys on different processes") == 2


def test_validation_over_two_processes_scores_every_sample_once(tmp_path, plugin_site):
    run = tmp_path / "run"
    launch(run, 2, "train", "train.eval_every=2", "train.eval_samples=7", "eval.batch_size=2",
           task="vectors", site=plugin_site)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["val/samples"] for r in rows if "val/samples" in r] == [7.0, 7.0]
