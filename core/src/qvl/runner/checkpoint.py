"""Atomic checkpoints: backbone (HF / peft directory), head, optimizer, scheduler, RNG, position.

accelerate's ``save_state`` is not used: it writes the whole model's weights into every
checkpoint (gigabytes under LoRA, where only the adapter changes) and reloads RNG state by
unpickling. Here weights go through ``save_pretrained`` / safetensors and everything else is
read back with ``weights_only=True`` or as JSON.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from qvl.config import RunConfig
from qvl.errors import (
    OutOfSpaceError,
    UserError,
    folder_bytes,
    format_bytes,
    free_bytes,
    is_out_of_space,
    out_of_space,
)
from qvl.runner.rundir import CHECKPOINT_PATTERN

TRAINER_STATE = "trainer_state.json"
BEST_NAME = "best"


@attrs.define
class TrainerState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_value: float | None = None  # of train.best_metric, so a resumed run knows what to beat
    best_step: int | None = None
    evals_since_best: int = 0


def restore_config(config: RunConfig, checkpoint: Path) -> RunConfig:
    """The config whose ``load_backbone`` reproduces the checkpoint's backbone."""
    backbone = config.backbone
    saved = checkpoint / "backbone"
    if backbone.finetune == "full":
        backbone = attrs.evolve(backbone, name=str(saved))
    elif backbone.finetune in ("lora", "qlora"):
        backbone = attrs.evolve(backbone, adapter=str(saved))
    return attrs.evolve(config, backbone=backbone)


def _rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np
    import torch

    tensors = {"torch_cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = state
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    plain = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, np_keys.tolist(), np_pos, np_has_gauss, np_gauss],
    }
    return tensors, plain


def _set_rng_state(tensors: dict[str, Any], plain: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.random.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    version, state, gauss = plain["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save(
    checkpoints_dir: Path,
    state: TrainerState,
    *,
    accelerator: Any,
    backbone: Any,
    head: Any,
    optimizer: Any,
    scheduler: Any,
    finetune: str,
    keep: int,
    name: str | None = None,
) -> Path:
    """Write ``step-XXXXXXXX`` (or ``name``) through a temporary directory and a rename.

    A step checkpoint holds everything ``--resume`` needs and old ones are pruned to ``keep``; a
    named one (``best``) holds the weights and the trainer state only, is replaced atomically
    (the previous one is moved aside, then removed) and is never pruned.

    :raises OutOfSpaceError: the disk filled up; the unfinished checkpoint is removed, the earlier
        ones are kept.
    """
    import torch

    label = name or f"step-{state.step:08d}"
    final = checkpoints_dir / label
    tmp = checkpoints_dir / f".tmp-{label}"
    with _removed_if_it_fails(tmp, final, name, accelerator):
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a killed save, under qvl's dotted name
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        if name is None:
            _save_rng_state(tmp, accelerator.process_index)
        if accelerator.is_main_process:
            _save_weights(tmp, accelerator, backbone, head, finetune)
            if name is None:
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
                torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            (tmp / TRAINER_STATE).write_text(json.dumps(attrs.asdict(state), indent=1))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _replace(final, tmp, old=checkpoints_dir / f".old-{label}")
            if name is None:
                _prune(checkpoints_dir, keep)
        accelerator.wait_for_everyone()
    return final


@contextmanager
def _removed_if_it_fails(tmp: Path, final: Path, name: str | None, accelerator: Any) -> Iterator[None]:
    """Removes the unfinished checkpoint ``tmp`` when what runs inside fails, and turns a full disk
    into the one-line :class:`OutOfSpaceError`."""
    checkpoints_dir = final.parent
    free_at_start = free_bytes(checkpoints_dir)
    try:
        yield
    except Exception as exc:
        full = is_out_of_space(exc, checkpoints_dir)  # asked before the clean-up frees the space again
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint only takes the space a retry needs
        if full:
            raise _out_of_space(checkpoints_dir, final, name, free_at_start) from exc
        raise


def _out_of_space(checkpoints_dir: Path, final: Path, name: str | None,
                  free_at_start: int | None) -> OutOfSpaceError:
    """The one line for a checkpoint the disk had no room for: what it needs (the size of the last
    checkpoint of its kind, else more than was free), what is kept and how to go on."""
    steps = sorted(p for p in checkpoints_dir.iterdir() if CHECKPOINT_PATTERN.match(p.name))
    last_step = steps[-1] if steps else None
    same_kind = last_step if name is None else (final if final.is_dir() else None)
    if same_kind is not None:
        needed = f"about {format_bytes(folder_bytes(same_kind))}, the size of {same_kind.name}"
    elif free_at_start is not None:
        needed = f"more than the {format_bytes(free_at_start)} free when it started"
    else:
        needed = "more space"
    kept = [p.name for p in (last_step, final if name is not None and final.is_dir() else None) if p is not None]
    if last_step is not None:
        outcome = (f"{' and '.join(kept)} kept; free some space, then continue with "
                   f"--run-dir {checkpoints_dir.parent} --resume")
    else:
        outcome = f"{' and '.join(kept) + ' kept, ' if kept else ''}no checkpoint to resume from yet; free some " \
                  "space and train again"
    return out_of_space(final, f"the {name or 'step'} checkpoint", needed=needed, kept=outcome)


def _save_rng_state(tmp: Path, rank: int) -> None:
    from safetensors.torch import save_file

    tensors, plain = _rng_state()
    save_file(tensors, str(tmp / f"rng-{rank}.safetensors"))
    (tmp / f"rng-{rank}.json").write_text(json.dumps(plain))


def _save_weights(tmp: Path, accelerator: Any, backbone: Any, head: Any, finetune: str) -> None:
    """The backbone's trained weights (HF / peft directory; with its processor when fully fine-tuned) and the head's."""
    from safetensors.torch import save_file

    if backbone is not None and finetune != "frozen":
        model = accelerator.unwrap_model(backbone.model)
        model.save_pretrained(tmp / "backbone", safe_serialization=True)
        if finetune == "full":
            backbone.processor.save_pretrained(tmp / "backbone")
    if head is not None:
        weights = {k: v.detach().contiguous().cpu() for k, v in accelerator.unwrap_model(head).state_dict().items()}
        save_file(weights, str(tmp / "head.safetensors"))


def _replace(final: Path, tmp: Path, old: Path) -> None:
    """``tmp`` becomes ``final``; an existing ``final`` (the same step again after a resume, or a new
    best) is replaced whole: moved aside to ``old`` first, then removed."""
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _prune(checkpoints_dir: Path, keep: int) -> None:
    complete = sorted(p for p in checkpoints_dir.iterdir() if CHECKPOINT_PATTERN.match(p.name))
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_head(checkpoint: Path, head: Any) -> None:
    from safetensors.torch import load_file

    path = checkpoint / "head.safetensors"
    if head is None:
        return
    if not path.is_file():
        raise UserError(f"{path}: the task builds a head but the checkpoint has none")
    missing, unexpected = head.load_state_dict(load_file(str(path)), strict=False)
    if missing or unexpected:
        raise UserError(f"{path}: head weights do not match the head the task builds "
                         f"(missing {missing}, unexpected {unexpected}); was the [task] config changed?")


def load_training_state(checkpoint: Path, *, accelerator: Any, optimizer: Any, scheduler: Any) -> TrainerState:
    import torch
    from safetensors.torch import load_file

    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True, map_location="cpu"))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    rank = accelerator.process_index
    rng_tensors = checkpoint / f"rng-{rank}.safetensors"
    if rng_tensors.is_file():
        _set_rng_state(load_file(str(rng_tensors)), json.loads((checkpoint / f"rng-{rank}.json").read_text()))
    return TrainerState(**json.loads((checkpoint / TRAINER_STATE).read_text()))
