"""train.compile: the backbone's repeated blocks through torch.compile and the fused AdamW give the
losses of an eager run; where torch.compile cannot run, one clear error before the first step."""

import json

import pytest
import torch

from qvl.errors import UserError
from qvl.runner.compilation import adamw, check_compiler, repeated_blocks


def losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row and "step_s" in row]


def test_the_blocks_are_every_decoder_layer_and_vision_block(qvl_tiny_backbone):
    model = qvl_tiny_backbone.model
    blocks = repeated_blocks(model)
    layers = list(model.model.language_model.layers)
    vision = list(model.model.visual.blocks)
    assert all(any(block is b for b in blocks) for block in layers + vision)
    assert not any(isinstance(block, torch.nn.ModuleList) for block in blocks)
    assert len(blocks) == len({id(b) for b in blocks})  # an inner list is not listed twice


def test_compiled_training_has_the_eager_losses(qvl_run_stage, tmp_path):
    runs = {}
    for compiled in (False, True):
        run_dir = tmp_path / f"compile-{compiled}"
        qvl_run_stage("colors", "train", "train.steps=5", "train.batch_size=2", "train.log_every=1",
                      "train.warmup_steps=0", "task.train_samples=10", f"train.compile={str(compiled).lower()}",
                      run_dir=run_dir)
        runs[compiled] = losses(run_dir)
    assert len(runs[True]) == 5
    assert runs[True] == pytest.approx(runs[False], rel=2e-3)
    assert runs[True][0] != runs[True][-1]  # it trained


def test_no_compiler_stops_the_run_before_it_starts(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(UserError, match="train.compile: torch.compile does not run.*C\\+\\+ compiler"):
        check_compiler("cpu")


def test_fused_adamw_where_there_is_one():
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = adamw([{"params": [parameter]}], 1e-3, 0.0, fused=True)
    assert optimizer.defaults.get("fused") is True  # torch has a CPU kernel since 2.4
    assert adamw([{"params": [parameter]}], 1e-3, 0.0, fused=False).defaults.get("fused") in (None, False)


def test_training_forwards_build_no_kv_cache_and_leave_the_setting_as_it_was(qvl_tiny_backbone):
    from qvl.runner.modules import TaskModule

    model = qvl_tiny_backbone.model
    seen = []
    module = TaskModule(model, None, lambda **_: seen.append(model.config.text_config.use_cache) or {"loss": 0})
    module(batch={}, step=0, max_steps=1)
    assert seen == [False]  # Qwen3-VL reads it from its text config
    assert model.config.text_config.use_cache is True
