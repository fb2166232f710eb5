"""Frozen Qwen-VL features: hidden states of one layer at each image / video frame, and their disk cache.

Heads trained on a frozen backbone (a flow-matching action expert, a segmenter, a reward head in
``frozen`` mode) see the same features for the same sample at every epoch, so the backbone needs to
run once per sample, not once per step: :func:`extract` computes them, :class:`FeatureCache` keeps
them on disk (safetensors shards, memory-mapped on read) under a fingerprint of everything that
changes them.

By idea: :mod:`qvl.features.spec` (:class:`FeatureSpec`), :mod:`qvl.features.extraction`
(:func:`extract` and the pieces it is built of: which tokens belong to which image, the forward
that stops at the wanted layer, pooling), and here the cache (:func:`fingerprint`,
:class:`FeatureCache`, :class:`FeatureStore`, :func:`shared_cache`). The cache stays in this
module because it calls :func:`extract` through this module's namespace: wrapping
``qvl.features.extract`` (a test counting extractions does) reaches the cache's builds too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from qvl.data.digest import digest
from qvl.errors import UserError
from qvl.features.extraction import extract, hidden_states_at, pool_items, resolve_layer, tokenize, visual_items
from qvl.features.spec import DTYPES, TEXT_MODES, FeatureSpec
from qvl.shards import ShardStore, ShardWriter

if TYPE_CHECKING:
    from qvl.backbone import Backbone

__all__ = [
    "DTYPES",
    "FORMAT_VERSION",
    "SHARD_SAMPLES",
    "TEXT_MODES",
    "FeatureCache",
    "FeatureSpec",
    "FeatureStore",
    "extract",
    "fingerprint",
    "forget_shared_caches",
    "hidden_states_at",
    "pool_items",
    "resolve_layer",
    "shared_cache",
    "tokenize",
    "visual_items",
]

FORMAT_VERSION = 1
SHARD_SAMPLES = 1024  # samples per safetensors file: small enough to write from memory


def fingerprint(backbone: Backbone, spec: FeatureSpec) -> dict[str, Any]:
    """Everything the features depend on, JSON-serialisable.

    The weights are identified by what is in memory (per-tensor float64 sums and norms, a full
    pass over the parameters: well under a second for a 2 B model), not by file names or
    mtimes: that also covers LoRA adapters, weights trained in this process and copied
    checkpoints, and changes whenever any weight changes. The processor's settings and chat
    template change the tokens, so they are in it too.
    """
    import torch

    weights = hashlib.sha256()
    with torch.no_grad():
        for name, parameter in backbone.model.named_parameters():
            values = parameter.detach()
            total = torch.sum(values, dtype=torch.float64).item()
            norm = torch.linalg.vector_norm(values.to(torch.float64) if not values.is_floating_point() else values,
                                            dtype=torch.float64).item()
            # 9 significant digits: the same weights give the same text on CPU and GPU
            weights.update(f"{name}:{tuple(values.shape)}:{values.dtype}:{total:.9e}:{norm:.9e};".encode())
    model_config = backbone.base_model.config.to_dict()
    processor = backbone.processor
    processing = {
        "image": _public(processor.image_processor.to_dict()),
        "video": _public(processor.video_processor.to_dict()) if getattr(processor, "video_processor", None) else None,
        "chat_template": getattr(processor, "chat_template", None),
    }
    return {
        "format": FORMAT_VERSION,
        "backbone": backbone.name,
        "source": backbone.source,
        "revision": getattr(backbone.base_model.config, "_commit_hash", None),
        "quantized": backbone.quantized,
        "config": digest(_public(model_config), 32),
        "processor": digest(processing, 32),
        "weights": weights.hexdigest()[:32],
        "spec": attrs.asdict(spec, value_serializer=lambda _, __, v: list(v) if isinstance(v, tuple) else v),
    }


def _public(config: Mapping[str, Any]) -> dict[str, Any]:
    # private keys (_name_or_path, _commit_hash) and the writer's version say nothing about the content
    skip = ("transformers_version", "processor_class", "video_processor_type", "image_processor_type")
    return {k: v for k, v in config.items() if not k.startswith("_") and k not in skip}


class FeatureStore(ShardStore):
    """A built feature folder, read lazily: ``store[id]`` gives that sample's tensors, memory-mapped."""

    kind = "feature cache"


class FeatureCache:
    """Features of a backbone and a spec, computed once per set of samples and kept on disk.

    The folder is ``root / <hash>``, the hash of :func:`fingerprint`, of the sample ids and of
    ``data`` (whatever identifies the data set's content: a version, its own fingerprint): a
    different layer, pooling, prompt, image size, backbone or weights gives a new folder, never a
    stale one. ``build`` writes it with :func:`qvl.build.build_directory`: atomically, once, under
    a file lock, so a second process asking for the same features waits and reuses them.
    """

    def __init__(self, backbone: Backbone, spec: FeatureSpec, root: str | Path | None = None):
        from qvl.cache import cache_dir

        self.backbone = backbone
        self.spec = spec
        self.root = Path(root) if root is not None else cache_dir() / "features"
        self.fingerprint = fingerprint(backbone, spec)  # computed once: it reads every weight

    def folder_for(self, ids: Sequence[str], data: Any = None) -> Path:
        """Where ``build(ids, ..., data=data)`` keeps its features."""
        return self.root / digest(self._full_fingerprint(ids, data))

    def _full_fingerprint(self, ids: Sequence[str], data: Any) -> dict[str, Any]:
        return {**self.fingerprint, "ids": digest(sorted(ids), 32), "count": len(ids), "data": data}

    def build(self, ids: Sequence[str], make_inputs: Callable[[list[str]], Sequence[Any] | Mapping[str, Any]], *,
              batch_size: int = 8, data: Any = None, folder: str | Path | None = None,
              progress: bool = True, device: Any = None) -> FeatureStore:
        """Features of every id (computed unless a matching folder exists), as a :class:`FeatureStore`.

        :param make_inputs: given a list of ids, what :func:`extract` takes for them: preferably
            ``spec.conversation`` keyword mappings (``{"images": [frame], "text": instruction}``),
            so that what changes the tokens is in the fingerprint.
        :param folder: an exact folder instead of ``root / <hash>``; rebuilt when the fingerprint
            differs, refused (:class:`UserError`) when it is a non-empty folder qvl did not write.
        :param device: where the backbone runs while a missing folder is written (``"auto"``: this
            process's accelerator device); it goes back where it was afterwards, so a training
            loop that follows has the device memory. ``None`` leaves it where it is.
        """
        from qvl.build import build_directory

        ids = [str(sample_id) for sample_id in ids]
        if len(set(ids)) != len(ids):
            raise UserError("feature cache: sample ids must be unique")
        wanted = self._full_fingerprint(ids, data)
        target = Path(folder) if folder is not None else self.folder_for(ids, data)

        def write(out: Path) -> None:
            model = self.backbone.model
            home = next(model.parameters()).device
            move = device is not None and not self.backbone.quantized  # a 4-bit model stays where it loaded
            if move:
                model.to(_process_device() if device == "auto" else device)
            try:
                self._write(out, ids, make_inputs, batch_size, progress)
            finally:
                if move:
                    model.to(home)

        build_directory(target, write, kind="features", fingerprint=wanted,
                        hint="give FeatureCache another root or build(folder=...)",
                        info={"samples": len(ids), "backbone": self.backbone.name})
        return FeatureStore(target)

    def _write(self, out: Path, ids: list[str], make_inputs: Callable, batch_size: int, progress: bool) -> None:
        from tqdm.auto import tqdm

        writer = ShardWriter(out, shard_size=SHARD_SAMPLES)
        bar = tqdm(total=len(ids), desc="features", unit="sample", disable=not progress)
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            features = extract(self.backbone, make_inputs(chunk), self.spec)
            if len(features) != len(chunk):
                raise ValueError(f"make_inputs gave {len(features)} samples for {len(chunk)} ids")
            for sample_id, sample in zip(chunk, features):
                writer.add(sample_id, sample)
            bar.update(len(chunk))
        bar.close()
        writer.close(spec=attrs.asdict(self.spec))


def _process_device() -> Any:
    from accelerate import PartialState

    return PartialState().device


_shared: dict[str, FeatureCache] = {}


def shared_cache(backbone: Any, spec: FeatureSpec, root: str | Path | None = None) -> FeatureCache:
    """This process's :class:`FeatureCache` for a backbone setting and a spec, loaded once.

    A plugin that trains on cached features asks for them from several hooks (``build_head``
    for the width, ``build_dataset`` once per split): the backbone (``backbone``, a
    :class:`~qvl.config.BackboneConfig`, loaded with ``finetune = "frozen"`` by the host-free
    loader, ``prepare_backbone`` hooks not applied) is loaded on the first call and kept on the CPU
    (a 4-bit one where it loaded), because the folders of later splits are found by a fingerprint
    of its weights.
    """
    key = json.dumps([attrs.asdict(backbone), attrs.asdict(spec), str(root) if root else None], sort_keys=True,
                     default=str)
    if key not in _shared:
        from qvl.backbone.loading import load

        loaded = load(attrs.evolve(backbone, finetune="frozen"), stage="features")
        if not loaded.quantized:
            loaded.model.to("cpu")  # between builds; build(device="auto") brings it to the accelerator
        _shared[key] = FeatureCache(loaded, spec, root=root)
    return _shared[key]


def forget_shared_caches() -> None:
    """Drop the backbones :func:`shared_cache` keeps, as a new process would start without them."""
    _shared.clear()
