"""Evaluation under `accelerate launch` with two processes gives the one-process predictions."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

TINY = ("task.synthetic.tasks=2", "task.synthetic.trajectories_per_task=12", "task.synthetic.min_frames=8",
        "task.synthetic.max_frames=12", "task.num_samples=120", "task.test_fraction=0.3", "task.bootstrap=50",
        "task.synthetic.lerobot_copy=false")


def launch(processes: int, run_dir, env, *settings: str) -> None:
    # on a machine without GPUs accelerate spawns several processes only in --multi_gpu mode (gloo)
    mode = ["--multi_gpu"] if processes > 1 else []
    command = [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(29900 + os.getpid() % 90), "-m", "qvl", "run", "vqa", "eval",
               "--run-dir", str(run_dir), *(a for s in settings for a in ("--set", s))]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def test_two_processes_decode_each_question_once_and_agree_with_one(qvl_run_stage, qvl_quick_run, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    qvl_run_stage("vqa", "train", *qvl_quick_run, *TINY, "train.eval_every=0")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    settings = (*TINY, "eval.max_samples=1000", "eval.batch_size=4")

    launch(1, run, env, *settings)
    alone = (run / "eval" / "test" / "predictions.jsonl").read_text().splitlines()
    launch(2, run, env, *settings)
    together = (run / "eval" / "test" / "predictions.jsonl").read_text().splitlines()

    # the questions split over two ranks: every one decoded exactly once, gathered in order
    assert len(alone) == len(together) > 10
    assert [json.loads(line)["id"] for line in together] == [json.loads(line)["id"] for line in alone]
    assert [json.loads(line)["value"] for line in together] == [json.loads(line)["value"] for line in alone]
