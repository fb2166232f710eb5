"""What the frozen features are: :class:`FeatureSpec` (layer, pooling, text, prompt, image size, dtype)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from qvl.errors import UserError

TEXT_MODES = ("none", "mean", "last")
DTYPES = ("float32", "bfloat16", "float16")


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
