"""The ``sft`` task's batches (media sized as configured) and its decoding (constrained when configured)."""

from __future__ import annotations

from typing import Any

from qvl.builtin.sft.settings import SftConfig, answer_constraint


def sized(messages: list[dict[str, Any]], settings: SftConfig) -> list[dict[str, Any]]:
    """``messages`` with the size settings on every image and video part (what ``qwen_vl_utils`` reads)."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [_sized_part(part, settings) for part in content]
        out.append({**message, "content": content})
    return out


def _sized_part(part: dict[str, Any], settings: SftConfig) -> dict[str, Any]:
    if part.get("type") == "image":
        return {**part, "min_pixels": settings.image_min_pixels, "max_pixels": settings.image_max_pixels}
    if part.get("type") == "video":
        return {**part, "fps": settings.video_fps, "max_frames": settings.video_max_frames,
                "max_pixels": settings.video_max_pixels,
                "min_pixels": min(settings.image_min_pixels, settings.video_max_pixels)}
    return part


def collator(settings: SftConfig, processor: Any, *, training: bool) -> Any:
    from qvl import chat

    def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
        if training:  # the whole conversation; labels on every assistant turn
            return chat.sft_batch(processor, [sized(s["messages"], settings) for s in samples])
        return chat.prompt_batch(processor, [sized(s["prompt"], settings) for s in samples])

    return collate


def answers(settings: SftConfig, backbone: Any, batch: dict[str, Any]) -> list[str]:
    """Greedy answers of a prompt batch, inside the configured constraint when there is one."""
    from qvl import chat
    from qvl.decoding import generate_constrained

    constraint = answer_constraint(settings)
    if constraint is not None:
        texts = generate_constrained(backbone.model, backbone.processor, batch, constraint,
                                     max_new_tokens=settings.max_new_tokens)
    else:
        texts = chat.generate_text(backbone.model, backbone.processor, batch, settings.max_new_tokens)
    return [text.strip() for text in texts]
