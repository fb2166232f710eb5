"""``qvl run vla_flow memory-check``: peak GPU memory of a training step at the seed's budget.

The seed budgeted ~8 GB of a 24 GB card for Qwen3-VL 2B in 4-bit, 3 frames at 384x384, batch 8
and a ~100 M-parameter action expert. This measures it rather than estimating it: the backbone
(``--set backbone.name=...``, default ``preset:qwen3-vl-2b``: the real shapes, random weights,
no download) loaded frozen in 4-bit nf4 with double quantisation and bf16 compute, every frame of
a batch encoded on its own (what the feature stage does), then forward + backward + AdamW step of
the policy in bf16 autocast, with the seed's expert size (8 layers, width 512). Prints the peak
allocated and reserved memory after each phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

import qvl

if TYPE_CHECKING:
    from qvl.config import RunConfig

PRESET = "preset:qwen3-vl-2b"


def memory_check(config: RunConfig, host: Any, task: qvl.Task, batch: int = 8, canvas: int = 384) -> dict[str, Any]:
    """The peak memory of each phase; the backbone comes from the ``load_backbone`` hook (``host``, ``task``),
    so a plugin that wraps or replaces it for this task is measured too."""
    import torch

    if not torch.cuda.is_available():
        raise qvl.UserError("vla_flow memory-check measures GPU memory and needs a CUDA device; none is "
                            "visible here (torch.cuda.is_available() is False)")
    from PIL import Image

    from qvl.features import FeatureSpec, extract

    from qvl_vla_flow.model import build_policy

    name = config.backbone.name if config.backbone.name != "embedded:qwen3-vl-tiny" else PRESET
    backbone_config = attrs.evolve(config.backbone, name=name, finetune="frozen", quantize=True)
    torch.cuda.reset_peak_memory_stats()
    report: dict[str, Any] = {"backbone": name, "batch": batch, "frames": config.task.num_frames,
                              "canvas": canvas}

    def mark(phase: str) -> None:
        torch.cuda.synchronize()
        report[phase] = {"allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3),
                         "reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 3)}

    backbone = host.call("load_backbone", task=task, config=attrs.evolve(config, backbone=backbone_config),
                         stage="memory-check")
    mark("backbone_loaded")
    spec = FeatureSpec(layer=config.task.feature_layer, pooling=config.task.feature_pooling,
                       text=config.task.feature_text, image_size=(canvas, canvas))
    frames = [Image.new("RGB", (canvas, canvas), (i * 7 % 255, 90, 160)) for i in range(batch * config.task.num_frames)]
    with torch.no_grad():
        features = extract(backbone, [{"images": [f], "text": "go to the red box"} for f in frames], spec)
    mark("features")
    tokens = torch.stack([torch.cat([f["visual"].reshape(-1, f["visual"].shape[-1]), f["text"][None]])
                          for f in features])
    window = tokens.reshape(batch, config.task.num_frames, *tokens.shape[1:]).cuda()
    policy = build_policy(config, feature_dim=backbone.hidden_size).cuda()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    space = config.task.action_space
    actions = torch.rand(batch, config.task.chunk_size, space.dim, device="cuda") * 2 - 1
    state = torch.zeros(batch, space.dim, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = policy.loss(window, state, actions)
    loss.backward()
    optimizer.step()
    mark("train_step")
    report["policy_parameters"] = sum(p.numel() for p in policy.parameters())
    report["backbone_parameters"] = sum(p.numel() for p in backbone.model.parameters())
    return report


def memory_check_stage(config: RunConfig, host: Any, task: qvl.Task) -> None:
    import json

    gpu = attrs.evolve(config, task=attrs.evolve(config.task, hidden_dim=512, num_layers=8, num_heads=8))
    report = memory_check(gpu, host, task)
    print(json.dumps(report, indent=2))
    peak = report["train_step"]["allocated_gb"]
    print(f"vla_flow memory-check: peak {peak:.2f} GB allocated for a training step at batch {report['batch']}, "
          f"{report['frames']} frames of {report['canvas']}x{report['canvas']} ({report['backbone']}, 4-bit)")
