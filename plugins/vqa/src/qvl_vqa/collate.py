"""VQA items to Qwen-VL chat batches: answer-only SFT for training, constrained prompts for evaluation.

Runs in the DataLoader's workers (with the frame reads of :mod:`qvl_vqa.samples`), so the main
process only sees finished tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qvl_vqa.samples import Item, Video

if TYPE_CHECKING:
    from qvl_vqa.config import AugmentConfig, VqaConfig
    from qvl_vqa.shown_frames import ShownFrames

SAMPLES_KEY = "vqa_items"  # batch key of what decode needs besides the tensors
VIDEO_LABELS = {
    "preference": ("Video 1:", "Video 2:"),
    "progress": ("",),
    "similarity": ("Reference video:", "Video 1:", "Video 2:"),
}


def shown_frame_numbers(frame_indices: Sequence[int]) -> list[int]:
    """Frame numbers of a clip as it plays: cumulative steps from 0, whatever the direction.

    A rewound or reversed clip is a new video whose time runs forward; giving Qwen3-VL the source
    numbers would stamp it with decreasing timestamps and hand the model the answer.
    """
    steps = np.abs(np.diff(np.asarray(frame_indices, dtype=np.int64)))
    return [0, *np.cumsum(np.maximum(steps, 1)).tolist()]


def augment_frames(frames: np.ndarray, indices: list[int], settings: AugmentConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """Random frame dropping (inner frames only: the first and last, which set the answer, stay) and
    a brightness/contrast jitter of the whole clip, as array operations."""
    if settings.frame_drop > 0 and len(indices) > 2:
        keep = np.ones(len(indices), dtype=bool)
        keep[1:-1] = rng.random(len(indices) - 2) >= settings.frame_drop
        frames, indices = frames[keep], [i for i, k in zip(indices, keep) if k]
    if settings.color_jitter > 0:
        gain = 1.0 + rng.uniform(-settings.color_jitter, settings.color_jitter)
        bias = 255.0 * rng.uniform(-settings.color_jitter, settings.color_jitter) / 2
        mean = frames.mean()
        frames = np.clip((frames.astype(np.float32) - mean) * gain + mean + bias, 0, 255).astype(np.uint8)
    return frames, indices


def video_content(video: Video, config: VqaConfig, frames: np.ndarray | None = None,
                  indices: list[int] | None = None, *, shown: bool = False) -> list[dict[str, Any]]:
    """The content parts of one clip: a Qwen video with its frame times, or one image per frame.
    ``shown``: ``frames`` are already as the model sees them (:mod:`qvl_vqa.shown_frames`), passed as
    one array that is not resized again."""
    from PIL import Image

    frames = video.frames if frames is None else frames
    indices = video.frame_indices if indices is None else indices
    width, height = config.image_size
    size = {"resized_width": width, "resized_height": height}
    if config.multi_image:
        return [{"type": "image", "image": Image.fromarray(frame), **size} for frame in frames]
    clip = np.asarray(frames) if shown else [Image.fromarray(frame) for frame in frames]
    return [{"type": "video", "video": clip, "raw_fps": video.fps, "frames_indices": shown_frame_numbers(indices),
             **size}]


def conversation(item: Item, config: VqaConfig, *, with_answer: bool, rng: np.random.Generator | None = None,
                 shown: ShownFrames | None = None) -> list[dict[str, Any]]:
    """The user turn (each clip after its label, then the row's prompt) and, for training, the answer.
    ``shown``: the frames as the model sees them, where it holds the clip's trajectory."""
    question = {"type": "text", "text": item.row["prompt"]}
    content: list[dict[str, Any]] = [question] if config.question_first else []
    for label, video in zip(VIDEO_LABELS[item.sample_type], item.videos):
        indices = video.frame_indices
        kept = shown.frames(video.trajectory_id, indices) if shown is not None else None
        frames = video.frames if kept is None else kept  # the trajectory's file is read only without them
        if rng is not None:  # the same draws for either frames (the jitter, which differs, turns shown off)
            frames, indices = augment_frames(frames, indices, config.augment, rng)
        if label:
            content.append({"type": "text", "text": label})
        content += video_content(video, config, frames, indices, shown=kept is not None)
    if not config.question_first:
        content.append(question)
    messages = [{"role": "user", "content": content}]
    if with_answer:
        messages.append({"role": "assistant", "content": item.answer})
    return messages


def _items(samples: list[dict[str, Any]] | list[Item]) -> list[Item]:
    return [s["item"] if isinstance(s, dict) else s for s in samples]


class TrainCollator:
    """Answer-only SFT batches: every prompt, video and padding token is labelled -100.

    ``rows``: the training rows tokenized once (:func:`qvl_vqa.encoded_rows.encoded_rows`), used for
    batches whose samples all have one (the same batch, without the per-step tokenizing);
    augmentation changes the clips, so it always tokenizes. ``shown``: the frames as the model sees
    them (:mod:`qvl_vqa.shown_frames`).
    """

    def __init__(self, config: VqaConfig, processor: Any, rows: Any = None, shown: ShownFrames | None = None) -> None:
        self.config = config
        self.processor = processor
        self.rows = rows
        self.shown = shown

    def __call__(self, samples: list[dict[str, Any]], rng: np.random.Generator | None = None) -> dict[str, Any]:
        """``rng``: the runner's generator for this batch (seeded by run seed, rank and sample
        indices), which the augmentation draws from."""
        from qvl import chat

        augment = self.config.augment.frame_drop > 0 or self.config.augment.color_jitter > 0
        if augment and rng is None:
            rng = np.random.default_rng(0)
        conversations = [conversation(item, self.config, with_answer=True, rng=rng if augment else None,
                                      shown=self.shown) for item in _items(samples)]
        ids = [s.get("id") if isinstance(s, dict) else None for s in samples]
        if self.rows is not None and not augment and all(i is not None and i in self.rows for i in ids):
            from qvl.encoded_rows import batch_from_rows

            return batch_from_rows([self.rows[i] for i in ids], conversations, self.processor, self.config.padding_side)
        return chat.sft_batch(self.processor, conversations, padding_side=self.config.padding_side)


class PromptCollator:
    """Generation prompts plus what decoding and the metrics need of each item."""

    def __init__(self, config: VqaConfig, processor: Any, shown: ShownFrames | None = None) -> None:
        self.config = config
        self.processor = processor
        self.shown = shown

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        from qvl import chat

        items = _items(samples)
        batch = chat.prompt_batch(self.processor, [conversation(item, self.config, with_answer=False, shown=self.shown)
                                                   for item in items])
        batch[SAMPLES_KEY] = [item_summary(item) for item in items]
        return batch


def item_summary(item: Item) -> dict[str, Any]:
    """What a prediction carries besides the model's answer (no frames)."""
    row = item.row
    if item.sample_type == "preference":
        anchor = row["first_trajectory_id"] if row["chosen_is_first"] else row["second_trajectory_id"]
    else:
        anchor = row["trajectory_id"]
    return {"sample_index": int(row["sample_index"]), "sample_type": item.sample_type, "swapped": item.swapped,
            "truth": item.answer, "task": row["task"], "strategy": row["data_gen_strategy"],
            "data_source": row["data_source"], "trajectory_id": item.videos[0].trajectory_id,
            # the recording a row is cut from (the chosen or reference one): the bootstrap's unit
            "cluster": anchor,
            # the frame-position baseline reads these: how far into its trajectory each shown clip ends
            "positions": [round(video.position, 6) for video in item.videos]}
