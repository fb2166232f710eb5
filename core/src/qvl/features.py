"""Frozen Qwen-VL features: hidden states of one layer at each image / video frame, and their disk cache.

Heads trained on a frozen backbone (a flow-matching action expert, a segmenter, a reward head in
``frozen`` mode) see the same features for the same sample at every epoch, so the backbone needs to
run once per sample, not once per step: :func:`extract` computes them, :class:`FeatureCache` keeps
them on disk (safetensors shards, memory-mapped on read) under a fingerprint of everything that
changes them.

Which tokens belong to which image. The processor expands each image into
``t * h * w / merge_size**2`` ``<|image_pad|>`` tokens (``image_grid_thw`` row ``(t, h, w)`` in
patches, ``t = 1`` for an image) and each video into ``<|video_pad|>`` tokens the same way; rows
of ``*_grid_thw`` follow the order of the images / videos in the batch (row by row, left to
right), and within one image the merged tokens are in raster order of the ``(h / merge,
w / merge)`` grid. A video is split along time into **temporal groups** of
``temporal_patch_size`` (2) frames: the vision tower merges two consecutive frames into one
patch, so its tokens cannot be split further. Each group is one *item* here, as each image is
(Qwen3-VL writes each group as its own ``<vision_start>...<vision_end>`` block after a timestamp;
Qwen2.5-VL as one block: counting tokens covers both). To get one feature per frame, pass the
frames as separate images (an image is one group: the processor repeats it over the 2 temporal
slots).

Layer ``k`` means ``hidden_states[k]`` of a forward with ``output_hidden_states=True``: 0 is the
embedding output, ``k`` in ``1..L-1`` the output of decoder layer ``k - 1`` (for Qwen3-VL before
the deepstack visual features are added to it, as transformers records it), ``L`` the output of
the final norm; negative indices count from ``L + 1``. The forward stops as soon as that layer
has run (a forward hook raises), so the later layers and the 151,936-row LM head never run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from qvl.data.digest import digest
from qvl.errors import UserError
from qvl.shards import ShardStore, ShardWriter

if TYPE_CHECKING:
    import torch

    from qvl.backbone import Backbone

FORMAT_VERSION = 1
TEXT_MODES = ("none", "mean", "last")
DTYPES = ("float32", "bfloat16", "float16")
SHARD_SAMPLES = 1024  # samples per safetensors file: small enough to write from memory


def _check_pooling(_: Any, attribute: Any, value: str) -> None:
    if value in ("none", "mean"):
        return
    kind, _, count = value.partition(":")
    if kind == "grid" and count.isdigit() and int(count) > 0 and math.isqrt(int(count)) ** 2 == int(count):
        return
    raise UserError(f"features.pooling = {value!r}: expected 'none', 'mean' or 'grid:N' with N a square "
                    "(grid:1, grid:4, grid:16, ...)")


@attrs.frozen
class FeatureSpec:
    """What the features are; every field is part of the cache fingerprint.

    :ivar layer: index into the ``hidden_states`` tuple (0 = embeddings, ``L`` = final norm,
        negative counts from the end); ``None`` = the middle layer, ``num_hidden_layers // 2``.
    :ivar pooling: per item (image or temporal group): ``none`` keeps every merged token
        (``visual`` is ``[tokens of all items, D]``), ``mean`` gives ``[items, D]``, ``grid:N``
        adaptive-average-pools the merged-token grid to ``sqrt(N) x sqrt(N)``: ``[items, N, D]``.
    :ivar text: also return ``text`` ``[D]``: ``mean`` over every attended token that is not an
        image/video pad (template markers included), or ``last``: the last attended token, which
        has seen the whole sequence.
    :ivar prompt: template of the user's text in :meth:`conversation`, ``{text}`` filled per sample.
    :ivar image_size: ``(height, width)`` (or one int) every image / video frame is resized to
        before the processor (rounded by qwen_vl_utils to the patch grid); ``None`` keeps sizes.
    :ivar add_generation_prompt: end the sequence with the assistant header (the position a
        policy decodes from; matters for ``text="last"``).
    :ivar dtype: of the returned and stored tensors.
    """

    layer: int | None = None
    pooling: str = attrs.field(default="mean", validator=_check_pooling)
    text: str = attrs.field(default="none", validator=attrs.validators.in_(TEXT_MODES))
    prompt: str = "{text}"
    image_size: int | tuple[int, int] | None = attrs.field(
        default=None, converter=lambda v: (v, v) if isinstance(v, int) else (tuple(v) if v is not None else None)
    )
    add_generation_prompt: bool = False
    dtype: str = attrs.field(default="float32", validator=attrs.validators.in_(DTYPES))

    def conversation(self, images: Sequence[Any] = (), video: Any = None, text: str = "") -> list[dict[str, Any]]:
        """One user turn: the images (PIL or paths), then the video (frame list or path), then the prompt.

        Building conversations here, rather than by hand, keeps what changes the tokens (size,
        prompt) inside the fingerprint.
        """
        resize = {}
        if self.image_size is not None:
            resize = {"resized_height": self.image_size[0], "resized_width": self.image_size[1]}
        content: list[dict[str, Any]] = [{"type": "image", "image": image, **resize} for image in images]
        if video is not None:
            content.append({"type": "video", "video": video, **resize})
        prompt = self.prompt.format(text=text)
        if prompt:
            content.append({"type": "text", "text": prompt})
        return [{"role": "user", "content": content}]


def resolve_layer(backbone: Backbone, layer: int | None) -> int:
    """The non-negative ``hidden_states`` index that ``layer`` means for this backbone."""
    count = int(backbone.text_config.num_hidden_layers)
    if layer is None:
        return count // 2
    if not -(count + 1) <= layer <= count:
        raise UserError(f"features.layer = {layer}: this backbone has hidden states 0..{count} "
                        f"(or -{count + 1}..-1)")
    return layer % (count + 1)


def tokenize(backbone: Backbone, inputs: Sequence[Any], spec: FeatureSpec) -> dict[str, Any]:
    """A right-padded batch of conversations, or of ``spec.conversation`` keyword mappings."""
    from qvl.chat import conversation_batch

    conversations = [spec.conversation(**item) if isinstance(item, Mapping) else item for item in inputs]
    return conversation_batch(backbone.processor, conversations, padding_side="right",
                              add_generation_prompt=spec.add_generation_prompt)


def extract(backbone: Backbone, inputs: Sequence[Any] | Mapping[str, Any],
            spec: FeatureSpec) -> list[dict[str, torch.Tensor]]:
    """Features of each sample of a batch, as CPU tensors of ``spec.dtype``.

    :param inputs: conversations, ``spec.conversation`` keyword mappings
        (``{"images": [...], "text": "..."}``), or an already tokenised batch (a mapping with
        ``input_ids``; prefer right padding).
    :returns: per sample ``{"visual": ..., "grid": [items, 2] (rows, columns of merged tokens),
        "text": [D] if spec.text != "none"}``; items in the order their tokens appear.
    """
    import torch

    batch = dict(inputs) if isinstance(inputs, Mapping) else tokenize(backbone, inputs, spec)
    hidden = hidden_states_at(backbone, batch, resolve_layer(backbone, spec.layer))
    input_ids = batch["input_ids"]
    attention = batch.get("attention_mask")
    if attention is None:
        attention = torch.ones_like(input_ids)
    items = visual_items(backbone.base_model.config, batch)
    config = backbone.base_model.config
    visual_mask = (input_ids == config.image_token_id) | (input_ids == config.video_token_id)

    dtype = getattr(torch, spec.dtype)
    results = []
    for row in range(input_ids.shape[0]):
        states = hidden[row].float()  # pool in float32 even when the model runs in bfloat16
        stacked = pool_items(states, items[row], spec.pooling)
        sample = {"visual": stacked.to("cpu", dtype),
                  "grid": torch.tensor([[rows, cols] for _, rows, cols in items[row]],
                                       dtype=torch.int64).reshape(-1, 2)}
        attended = attention[row].bool().to(states.device)
        if spec.text == "mean":
            text = attended & ~visual_mask[row].to(states.device)
            sample["text"] = states[text].mean(dim=0).to("cpu", dtype)
        elif spec.text == "last":
            sample["text"] = states[attended.nonzero().max()].to("cpu", dtype)
        results.append(sample)
    return results


def visual_items(model_config: Any, batch: Mapping[str, Any]) -> list[list[tuple[int, int, int]]]:
    """Where each image / temporal group of every row is: ``(first token, merged rows, merged columns)``.

    Per row of ``batch["input_ids"]``, items in the order their tokens appear (see the module
    docstring for how the processor lays them out). Raises ``ValueError`` when ``*_grid_thw`` and
    the pad tokens disagree.
    """
    merge = int(getattr(model_config.vision_config, "spatial_merge_size", 2))
    input_ids = batch["input_ids"]
    groups: list[list[tuple[int, int, int]]] = [[] for _ in range(input_ids.shape[0])]
    for token_id, key in ((model_config.image_token_id, "image_grid_thw"),
                          (model_config.video_token_id, "video_grid_thw")):
        is_token = input_ids == token_id
        grid = batch.get(key)
        shapes = [(h // merge, w // merge) for t, h, w in (grid.tolist() if grid is not None else [])
                  for _ in range(t)]
        positions = is_token.nonzero().tolist()  # row-major: rows in order, positions in order
        described = sum(rows * cols for rows, cols in shapes)
        if described != len(positions):
            raise ValueError(f"{key} describes {described} tokens but input_ids hold {len(positions)}")
        start = 0
        for rows, cols in shapes:
            row, first = positions[start]
            if positions[start + rows * cols - 1] != [row, first + rows * cols - 1]:
                raise ValueError(f"the tokens of one {key[:5]} are not contiguous in row {row}")
            groups[row].append((first, rows, cols))
            start += rows * cols
    return [sorted(row) for row in groups]


def pool_items(states: torch.Tensor, items: Sequence[tuple[int, int, int]], pooling: str = "mean") -> torch.Tensor:
    """Pool one row's hidden states ``[S, D]`` over each item of :func:`visual_items`.

    Differentiable, so a head trained through the backbone (a segmenter's per-frame features) uses
    the same pooling as the frozen-feature cache. Returns ``[items, D]`` (``mean``),
    ``[items, N, D]`` (``grid:N``) or ``[tokens, D]`` (``none``).
    """
    import torch

    visual = [_pool(states[first:first + rows * cols], rows, cols, pooling) for first, rows, cols in items]
    if pooling == "none":
        return torch.cat(visual) if visual else states.new_zeros(0, states.shape[-1])
    if visual:
        return torch.stack(visual)
    tail = (int(pooling.partition(":")[2]),) if pooling != "mean" else ()
    return states.new_zeros(0, *tail, states.shape[-1])


def _pool(tokens: torch.Tensor, rows: int, cols: int, pooling: str) -> torch.Tensor:
    import torch.nn.functional as F

    if pooling == "none":
        return tokens
    if pooling == "mean":
        return tokens.mean(dim=0)
    side = math.isqrt(int(pooling.partition(":")[2]))
    grid = tokens.T.reshape(1, -1, rows, cols)  # merged tokens are in raster order
    return F.adaptive_avg_pool2d(grid, side).reshape(tokens.shape[-1], -1).T


class _Stop(Exception):
    """Raised by the capture hook: the layers after the wanted one need not run."""


def hidden_states_at(backbone: Backbone, batch: Mapping[str, Any], index: int) -> torch.Tensor:
    """``hidden_states[index]`` of the whole batch ``[B, S, D]``, stopping the forward right after it.

    Equal to ``model(**batch, output_hidden_states=True).hidden_states[index]`` (tested), without
    running the later layers or the LM head.
    """
    import torch

    language_model = _language_model(backbone.base_model)
    layers = language_model.layers
    captured: list[torch.Tensor] = []

    def keep_input(module: Any, args: tuple, kwargs: dict) -> None:
        captured.append(args[0] if args else kwargs["hidden_states"])
        raise _Stop

    def keep_output(module: Any, args: tuple, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _Stop

    if index == 0:
        handle = layers[0].register_forward_pre_hook(keep_input, with_kwargs=True)
    elif index == len(layers):
        handle = language_model.norm.register_forward_hook(keep_output)
    else:
        handle = layers[index - 1].register_forward_hook(keep_output)
    device = backbone.device
    inputs = {key: value.to(device) if hasattr(value, "to") else value for key, value in batch.items()
              if key != "labels"}
    model = backbone.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(**inputs, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise RuntimeError(f"layer {index} of {type(language_model).__name__} did not run")
    return captured[0]


def _language_model(model: Any) -> Any:
    for path in ("model.language_model", "language_model", "model"):
        module = model
        for part in path.split("."):
            module = getattr(module, part, None)
        if module is not None and hasattr(module, "layers") and hasattr(module, "norm"):
            return module
    raise TypeError(f"cannot find the decoder layers of {type(model).__name__}")


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
