"""Extracting features: the hidden states of one layer at each image / video item, pooled.

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

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from qvl.errors import UserError
from qvl.features.spec import FeatureSpec

if TYPE_CHECKING:
    import torch

    from qvl.backbone import Backbone


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
