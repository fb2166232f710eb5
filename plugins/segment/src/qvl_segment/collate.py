"""Episodes to model batches: T sampled frames as images, the question, the JSON answer, head targets.

Each frame is shown as its own image after the text ``Frame N:`` with N its number in the user's
episode, so the LM can write frame numbers it has seen (``mode = "lm"``) and every frame's visual
tokens pool to one feature (an image is one temporal group; a video would merge frame pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qvl_segment.answers import answer_text
from qvl_segment.episodes import Episode, load_frames, sample_frame_numbers, to_sampled
from qvl_segment.model import COUNT_KEY, HEATMAP_KEY, SAMPLES_KEY
from qvl_segment.targets import gaussian_targets

QUESTION = ("Task: {task}. Scene: {scene}. Split the video into the actions the robot performs, in order, "
            "as JSON: each segment's start and end frame, its action and its skill.")


def conversation(episode: Episode, images: Sequence[Any], frame_numbers: Sequence[int], *,
                 answer: str | None = None) -> list[dict[str, Any]]:
    """The chat of one episode; with ``answer``, the assistant turn the model learns."""
    content: list[dict[str, Any]] = []
    for number, image in zip(frame_numbers, images):
        content.append({"type": "text", "text": f"Frame {int(number)}:"})
        content.append({"type": "image", "image": image, "resized_height": image.height,
                        "resized_width": image.width})
    scene = episode.init_scene_text or "not described"
    content.append({"type": "text", "text": QUESTION.format(task=episode.task_name or "unknown", scene=scene)})
    messages = [{"role": "user", "content": content}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def sample_summary(episode: Episode, frame_numbers: np.ndarray) -> dict[str, Any]:
    """What decoding and the metrics need of a sample, JSON-serialisable."""
    return {"episode_id": episode.episode_id, "num_frames": episode.num_frames,
            "frame_numbers": [int(n) for n in frame_numbers],
            "segments": [[s.start_frame, s.end_frame, s.skill, s.action_text] for s in episode.segments]}


class SegmentCollator:
    """``stage = "train"``: whole conversations with masked answers plus heatmap and K targets;
    otherwise prompts for one-pass decoding (left-padded) plus each sample's summary.

    ``rows``: the training episodes prepared once (:func:`qvl_segment.encoded_rows.training_rows`),
    used for the training batches whose episodes all have one (the same batches, without decoding
    or tokenizing).
    """

    def __init__(self, config: Any, processor: Any, stage: str, rows: Any = None) -> None:
        self.task = config.task
        self.processor = processor
        self.train = stage == "train"
        self.rows = rows if self.train else None

    def frames(self, episode: Episode) -> tuple[np.ndarray, list[Any]]:
        numbers = sample_frame_numbers(episode.num_frames, self.task.num_frames)
        if self.rows is not None and episode.episode_id in self.rows:
            from PIL import Image

            return numbers, [Image.fromarray(frame) for frame in self.rows[episode.episode_id]["frames"]]
        return numbers, load_frames(episode, numbers, tuple(self.task.image_size))

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        from qvl import chat

        episodes = [sample["episode"] for sample in samples]
        shown = [self.frames(episode) for episode in episodes]
        task = self.task
        if not self.train:
            batch = chat.prompt_batch(self.processor, [conversation(e, images, numbers)
                                                       for e, (numbers, images) in zip(episodes, shown)])
            batch[SAMPLES_KEY] = [sample_summary(e, numbers) for e, (numbers, _) in zip(episodes, shown)]
            return batch
        with_answer = task.mode != "heatmap"
        conversations = [conversation(e, images, numbers,
                                      answer=answer_text(e.segments, frames_as_digits=task.mode == "lm")
                                      if with_answer else None)
                         for e, (numbers, images) in zip(episodes, shown)]
        ids = [episode.episode_id for episode in episodes]
        if self.rows is not None and all(i in self.rows for i in ids):
            from qvl.encoded_rows import batch_from_rows

            batch = batch_from_rows([self.rows[i] for i in ids], conversations, self.processor)
        elif with_answer:
            batch = chat.sft_batch(self.processor, conversations)
        else:
            batch = chat.conversation_batch(self.processor, conversations)
        heat, counts = [], []
        for episode, (numbers, _) in zip(episodes, shown):
            placed = to_sampled(episode.segments, numbers)
            heat.append(gaussian_targets(placed, task.num_frames, task.sigma))
            counts.append(len(placed))
        batch[HEATMAP_KEY] = torch.from_numpy(np.stack(heat))
        batch[COUNT_KEY] = torch.tensor(counts, dtype=torch.long)
        return batch
