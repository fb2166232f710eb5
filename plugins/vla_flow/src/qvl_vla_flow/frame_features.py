"""Frozen Qwen-VL features of every frame (or window) of a converted data set, computed once.

Per-frame encoding (the default): each frame goes through the backbone alone, as one
conversation ``[image, instruction]``; its visual tokens at ``task.feature_layer`` are pooled
(``task.feature_pooling``) and, with ``task.feature_text``, the instruction's summary token is
kept too. The features of a frame do not depend on the window it is seen in, so training reads
them from the core's :class:`~qvl.features.FeatureCache` and a deployed policy encodes each new
frame once and keeps the last few (the seed trained on jointly encoded windows but served
per-frame features: the two differ, since in a joint forward later frames attend to earlier ones).

Joint encoding (``task.encoding = "joint"``): the window's frames in one conversation, the
instruction after them; one cache entry per window (``num_frames`` times the backbone work).

The backbone is loaded frozen with the core's host-free loader (4-bit nf4 with double
quantisation and bf16 compute when ``backbone.quantization = "4bit"`` on a GPU), once per process,
and only when a folder is missing or to fingerprint the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

import qvl
from qvl.data import digest

if TYPE_CHECKING:
    from qvl.config import RunConfig
    from qvl.features import FeatureCache, FeatureSpec, FeatureStore



def feature_spec(config: RunConfig) -> FeatureSpec:
    from qvl.features import FeatureSpec

    t = config.task
    width, height = t.image_size
    return FeatureSpec(layer=t.feature_layer, pooling=t.feature_pooling, text=t.feature_text, prompt="{text}",
                       image_size=(height, width))


def extractor(config: RunConfig) -> FeatureCache:
    """The process's feature cache for this backbone and spec (the backbone loaded on first use).

    On a GPU the backbone loads in 4-bit (``backbone.quantize``, nf4 with double quantisation and
    bf16 compute, the core's ``backbone.quantization`` defaults) unless ``task.gpu_4bit = false``.
    """
    import torch

    from qvl.features import shared_cache

    if config.backbone.finetune != "frozen":
        raise qvl.UserError(f"vla_flow trains an action expert on a frozen backbone, but backbone.finetune = "
                            f"{config.backbone.finetune!r}: set backbone.finetune=frozen")
    backbone = config.backbone
    if config.task.gpu_4bit and torch.cuda.is_available() and not backbone.quantize:
        backbone = attrs.evolve(backbone, quantize=True)
    root = Path(config.task.features_root).expanduser() if config.task.features_root else None
    return shared_cache(backbone, feature_spec(config), root)


def feature_width(config: RunConfig) -> int:
    return extractor(config).backbone.hidden_size


def tokens_per_frame(config: RunConfig) -> int:
    """Feature tokens of one frame: pooled visual tokens, plus one for the instruction."""
    pooling = config.task.feature_pooling
    if pooling == "mean":
        visual = 1
    elif pooling.startswith("grid:"):
        visual = int(pooling.partition(":")[2])
    else:  # "none": the token count follows the image size; the policy's token positions need a fixed one
        raise qvl.UserError("task.feature_pooling = 'none' is not supported yet: use 'mean' or 'grid:N'")
    return visual + (config.task.feature_text != "none")


def data_key(folder: Path) -> dict[str, Any]:
    """What identifies a converted data set's content (its marker records its own fingerprint)."""
    marker = folder / ".qvl.json"
    content = marker.read_bytes() if marker.exists() else str(sorted(p.name for p in folder.iterdir())).encode()
    return {"data": str(folder.resolve()), "marker": digest(content, 32)}


def build_store(config: RunConfig, folder: Path, dataset: Any, *, progress: bool = True) -> FeatureStore:
    """Features of every frame (per-frame) or window (joint) of every split of ``dataset``.

    :param dataset: the converted ``DatasetDict`` read from ``folder``.
    """
    from qvl_vla_flow.samples import EpisodeTable, frame_id, window_id, window_steps

    cache = extractor(config)
    t = config.task
    rows: dict[str, tuple[Any, list[int], str]] = {}  # id -> (split table, row indices, instruction)
    for split in dataset:
        table = dataset[split]
        episodes = EpisodeTable(table)
        for name, entry in episodes.episodes.items():
            for step, row in enumerate(entry["rows"]):
                if t.encoding == "joint":
                    window = [entry["rows"][s] for s in window_steps(step, t.num_frames, t.frame_skip)]
                    rows[window_id(name, step)] = (table, window, entry["instruction"])
                else:
                    rows[frame_id(name, entry["frames"][step])] = (table, [row], entry["instruction"])

    def make_inputs(ids: list[str]) -> list[dict[str, Any]]:
        inputs = []
        for sample_id in ids:
            table, indices, instruction = rows[sample_id]
            images = [table[i]["image"].convert("RGB") for i in indices]
            inputs.append({"images": images, "text": instruction})
        return inputs

    data = data_key(folder)
    if t.encoding == "joint":  # a window's entry depends on which frames it holds
        data.update(encoding="joint", num_frames=t.num_frames, frame_skip=t.frame_skip)
    return cache.build(sorted(rows), make_inputs, batch_size=t.features_batch_size, data=data, progress=progress,
                       device="auto")
