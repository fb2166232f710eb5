"""``task.features = "cached"``: a head trained on frozen-backbone features computed once.

In the end-to-end mode the backbone runs (forward and backward) at every step. Here it is frozen,
so a frame's features never change: every frame of a split is put through the backbone once, as
the *same conversation* the end-to-end mode builds (all cameras, then the task text), and
``qvl.features`` keeps the result on disk. From then on a training step reads a few KB per sample
and trains a small MLP; the runner loads no backbone at all (``uses_backbone`` is False).

What is cached, per frame (``qvl.features.extract`` on the whole conversation):
* ``visual``: each camera's image tokens at ``task.cached.layer``, pooled per image
  (``task.cached.pooling``, a 2x2 grid by default) -- where the block and the pad are;
* ``text``: the hidden state of the last real token (``task.cached.text = "last"``), the very
  vector the end-to-end mode pools, which has attended to every image and the task text.
The head reads both, concatenated. Per-camera features through separate forwards would lose the
task text and the cross-camera attention, and cost three forwards per frame.

Keyed by: the backbone (its name, config, processor and a digest of every weight), the feature
spec (layer, pooling, text, image size), the sample ids of the split and the data set (its folder,
a digest of its files' names, sizes and mtimes, the camera keys and the task template). A
different setting gives another folder, never a stale one; the same settings reuse the folder
across runs and processes (built once, under a file lock, by ``qvl.build.build_directory``).

The extractor. The plugin loads the backbone itself, frozen, with the core's host-free
``qvl.backbone.loading.load`` (``backbone.*`` settings as configured, ``finetune = "frozen"``),
only to fingerprint it and to build missing folders; ``prepare_backbone`` hooks of other plugins
are not applied to it (the hook relay is not handed to ``build_dataset``). It is loaded once per
process and kept on the CPU between builds, because the cache folders of later splits (validation,
eval, predict) are found by a fingerprint of its weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any


import qvl
from qvl_reward.collate import FEATURES_KEY, FRAMES_KEY, LABELS_KEY

if TYPE_CHECKING:
    import torch

    from qvl.config import RunConfig
    from qvl.features import FeatureCache, FeatureSpec, FeatureStore

    from qvl_reward.frames import RewardFrames

CACHED = "cached"


def enabled(config: RunConfig) -> bool:
    """Whether the run is in cached mode; refuses settings that contradict it."""
    if config.task.features != CACHED:
        return False
    backbone = config.backbone
    if backbone.finetune != "frozen":
        raise qvl.UserError(
            f"task.features = 'cached' trains the head on features of a frozen backbone, but backbone.finetune = "
            f"{backbone.finetune!r}: set backbone.finetune=frozen (or task.features=end-to-end to fine-tune)")
    if backbone.adapter:
        raise qvl.UserError(f"task.features = 'cached' with backbone.adapter = {backbone.adapter!r}: a frozen "
                            "backbone loads no adapter; merge it into backbone.name, or use task.features=end-to-end")
    if config.task.cached.pooling == "none":
        raise qvl.UserError("task.cached.pooling = 'none' gives a width that varies with the image size; "
                            "use 'mean' or 'grid:N'")
    return True


def feature_spec(config: RunConfig) -> FeatureSpec:
    """The spec whose conversation equals the end-to-end mode's (images at ``image_size``, then the text)."""
    from qvl.features import FeatureSpec

    width, height = config.task.image_size
    c = config.task.cached
    return FeatureSpec(layer=c.layer, pooling=c.pooling, text=c.text, prompt="{text}", image_size=(height, width))


def extractor(config: RunConfig) -> FeatureCache:
    """The process's :class:`~qvl.features.FeatureCache` for this backbone and spec (loaded on first use)."""
    from qvl.features import shared_cache

    root = Path(config.task.cached.root).expanduser() if config.task.cached.root else None
    return shared_cache(config.backbone, feature_spec(config), root)


def feature_width(config: RunConfig) -> int:
    """Length of one frame's feature vector: hidden size x (cameras x pooled cells + the token)."""
    spec = feature_spec(config)
    cells = 1 if spec.pooling == "mean" else int(spec.pooling.partition(":")[2])
    tokens = len(config.task.camera_keys) * cells + (spec.text != "none")
    return extractor(config).backbone.hidden_size * tokens


def data_key(config: RunConfig, root: Path) -> dict[str, Any]:
    """What identifies the data set's content: rewriting or editing any file changes it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return {"root": str(root.resolve()), "files": digest.hexdigest()[:32],
            "cameras": list(config.task.camera_keys), "template": config.task.task_template}


def with_features(config: RunConfig, frames: RewardFrames) -> CachedFrames:
    """``frames`` with each sample's cached features (computed now for frames not cached yet)."""
    return CachedFrames(frames, build_store(config, frames))


def build_store(config: RunConfig, frames: RewardFrames) -> FeatureStore:
    cache = extractor(config)
    index = {sample_id(ref): ref for ref in frames.refs}

    def make_inputs(ids: list[str]) -> list[dict[str, Any]]:
        return [{"images": frames.images(index[i]), "text": index[i].task} for i in ids]

    return cache.build(list(index), make_inputs, batch_size=config.task.cached.batch_size,
                       data=data_key(config, frames.source.root), device="auto")


def sample_id(ref: Any) -> str:
    return f"episode-{ref.episode:06d}/frame-{ref.frame:06d}"


def flat(features: dict[str, torch.Tensor]) -> torch.Tensor:
    """One frame's vector: every camera's pooled cells, then the last-token state."""
    import torch

    parts = [features["visual"].reshape(-1)]
    if "text" in features:
        parts.append(features["text"].reshape(-1))
    return torch.cat(parts).float()


class CachedFrames(Sequence):
    """The frames of a split with their cached features instead of decoded images."""

    def __init__(self, frames: RewardFrames, store: FeatureStore) -> None:
        self.frames = frames
        self.store = store
        self.refs = frames.refs

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        ref = self.refs[index]
        key = sample_id(ref)
        return {"id": key, "features": flat(self.store[key]), "text": ref.task, "label": ref.label,
                "episode": ref.episode, "frame": ref.frame, "timestamp": ref.timestamp}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


class CachedCollator:
    """Stacks cached feature vectors; nothing is tokenised or decoded."""

    def __init__(self, with_labels: bool) -> None:
        self.with_labels = with_labels

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch: dict[str, Any] = {FEATURES_KEY: torch.stack([s["features"] for s in samples])}
        if self.with_labels:
            batch[LABELS_KEY] = torch.tensor([s["label"] for s in samples], dtype=torch.long)
        batch[FRAMES_KEY] = [(s["episode"], s["frame"], s["timestamp"]) for s in samples]
        return batch


def build_head(config: RunConfig, classes: int) -> Any:
    """The head over cached features; its width comes from the cache's backbone and spec."""
    from qvl_reward.head import FeatureHead

    c = config.task.cached
    return FeatureHead(feature_width(config), classes, hidden=c.head_hidden, dropout=c.dropout)
