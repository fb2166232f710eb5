"""``train.compile = true``: the model's repeated blocks through ``torch.compile``, and the fused AdamW.

Compiled block by block (each decoder layer of the language model, each block of the vision tower:
every ``ModuleList`` of modules of one class), as torchtitan compiles transformer blocks, rather
than the whole model: a task's ``loss`` hook may enter the model anywhere (the model's forward, its
trunk, one layer's hidden states), and what lies between the blocks is Python a graph cannot hold
(Qwen3-VL's deepstack injection breaks a whole-model graph at ``aten.nonzero``). Shapes vary from
batch to batch (sequence lengths), so the blocks compile with dynamic shapes.
"""

from __future__ import annotations

import inspect
from typing import Any

from qvl.errors import UserError


def repeated_blocks(model: Any) -> list[Any]:
    """The modules of every ``ModuleList`` of two or more modules of one class, outermost lists only."""
    import torch

    blocks, inside = [], set()
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside):
            continue
        if isinstance(module, torch.nn.ModuleList) and len(module) >= 2 and len({type(m) for m in module}) == 1:
            blocks.extend(module)
            inside.add(name)
    return blocks


def check_compiler(device: Any) -> None:
    """Compile and run a one-line function on ``device`` now: where torch.compile cannot work (no C++
    compiler for inductor on CPU, no Triton on a GPU) the run stops here with what to do, not at the
    first step with a compiler's traceback."""
    import torch

    try:
        compiled = torch.compile(lambda x: x * 2 + 1, dynamic=False)
        compiled(torch.ones(4, device=device))
    except Exception as exc:  # inductor raises its own types for each missing piece
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"train.compile: torch.compile does not run on this machine ({type(exc).__name__}: "
                        f"{reason[:300]}); set train.compile = false, or install what it names (a C++ compiler "
                        "for CPU, Triton for CUDA)") from None


def compile_blocks(model: Any, device: Any) -> int:
    """Compile ``model``'s repeated blocks in place (``Module.compile``); returns how many."""
    check_compiler(device)
    blocks = repeated_blocks(model)
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)


def adamw(groups: list[dict[str, Any]], lr: float, weight_decay: float, *, fused: bool) -> Any:
    """``torch.optim.AdamW``; ``fused``: its fused kernel where this torch has one for the parameters'
    device (one kernel for all parameters instead of a few per tensor), else the default."""
    import torch

    kwargs: dict[str, Any] = {}
    if fused and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        kwargs["fused"] = True
    try:
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, **kwargs)
    except RuntimeError:  # no fused kernel for this device or dtype
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
