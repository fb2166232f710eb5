"""Training episodes prepared once: their sampled frames decoded and resized, their chat rows tokenized.

A training batch shows each episode as ``task.num_frames`` frames sampled at fixed places, with the
same question and answer every epoch; decoding those frames (PNG files or a video read front to
back), resizing them, rendering the chat template and tokenizing it were most of a step's data work
on 2 cores. :func:`training_rows` does it once per episode into the core's prepared-sample cache
(the frames as uint8 arrays, the row as :func:`qvl.encoded_rows.encode_row` arrays), keyed by the
episodes, their media files, the task settings and the processor; the collator then pads the rows
and runs the image processor on the cached frames (:func:`qvl.encoded_rows.batch_from_rows`): the
same batches as decoding and tokenizing each step, tensor for tensor (tested).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

VERSION = 1  # of the preparation below: bump when it changes


def training_rows(config: Any, processor: Any, backbone_name: str) -> Any:
    """The prepared training episodes of the run, by episode id; None without ``train.prepared_cache``
    or when two episodes share an id."""
    if not config.train.prepared_cache:
        return None
    from qvl_segment.data import split_samples

    episodes = split_samples(config, "train").info.episodes
    if len({e.episode_id for e in episodes}) != len(episodes):
        return None
    return prepared_episodes(episodes, config.task, processor, backbone_name)


def prepared_episodes(episodes: list[Any], task: Any, processor: Any, backbone_name: str) -> Any:
    """The :class:`~qvl.prepared.PreparedSamples` of ``episodes``: ``frames`` ``[T, H, W, 3]`` and the row's
    token arrays, one sample an episode."""
    import numpy as np

    from qvl.data import files_fingerprint
    from qvl.encoded_rows import encode_row, processor_fingerprint
    from qvl.prepared import prepare_samples
    from qvl_segment.answers import answer_text
    from qvl_segment.collate import conversation
    from qvl_segment.episodes import load_frames, sample_frame_numbers

    with_answer = task.mode != "heatmap"

    def prepare(index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        episode = episodes[index]
        numbers = sample_frame_numbers(episode.num_frames, task.num_frames)
        images = load_frames(episode, numbers, tuple(task.image_size))
        answer = answer_text(episode.segments, frames_as_digits=task.mode == "lm") if with_answer else None
        arrays = encode_row(processor, conversation(episode, images, numbers, answer=answer), labels=with_answer)
        arrays["frames"] = np.stack([np.asarray(image) for image in images])
        return arrays, {"id": episode.episode_id}

    media = [e.video for e in episodes if e.video is not None]
    media += [path for e in episodes if e.frames_paths is not None
              for path in (e.frames_paths[int(n)] for n in sorted(set(sample_frame_numbers(e.num_frames,
                                                                                             task.num_frames))))]
    fingerprint = {"version": VERSION, "media": files_fingerprint(media),
                   "episodes": json.dumps([attrs.asdict(e) for e in episodes], default=str),
                   "task": json.dumps(attrs.asdict(task), sort_keys=True, default=str),
                   "processor": processor_fingerprint(processor, backbone_name)}
    return prepare_samples(len(episodes), prepare, fingerprint=fingerprint, name="segment-train-rows")
