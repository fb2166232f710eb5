"""Batches: every camera image of a sample in one user message, then the task text."""

from __future__ import annotations

from typing import Any

LABELS_KEY, FRAMES_KEY = "reward_labels", "reward_frames"
FEATURES_KEY = "reward_features"  # cached mode: [B, width] feature vectors instead of model inputs


def conversation(images: list[Any], text: str, size: tuple[int, int]) -> list[dict[str, Any]]:
    width, height = size
    content: list[dict[str, Any]] = [
        {"type": "image", "image": image, "resized_width": width, "resized_height": height} for image in images
    ]
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


class RewardCollator:
    """``cached_prompts``: tokenize each task's prompt once (:class:`qvl.encoded_rows.PromptRows`, the same
    batches; only the images go through the processor each step), off with ``train.prepared_cache = false``."""

    def __init__(self, config: Any, processor: Any, with_labels: bool, cached_prompts: bool = True) -> None:
        from qvl.encoded_rows import PromptRows

        self.config = config
        self.processor = processor
        self.with_labels = with_labels
        self.size = tuple(config.image_size)
        self.prompt_rows = PromptRows(processor, labels=False) if cached_prompts else None

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        from qvl import chat

        conversations = [conversation(s["images"], s["text"], self.size) for s in samples]
        if self.prompt_rows is not None:
            batch = self.prompt_rows.batch(conversations, padding_side=self.config.padding_side)
        else:
            batch = chat.conversation_batch(self.processor, conversations, padding_side=self.config.padding_side)
        if self.with_labels:
            batch[LABELS_KEY] = torch.tensor([s["label"] for s in samples], dtype=torch.long)
        batch[FRAMES_KEY] = [(s["episode"], s["frame"], s["timestamp"]) for s in samples]
        return batch
