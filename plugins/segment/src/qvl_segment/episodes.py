"""The ``episodes.jsonl`` format: robot episodes with their action segments, and frame sampling.

One JSON object per line::

    {"episode_id": "ep1", "task_name": "pick_and_place_red", "init_scene_text": "a red block ...",
     "frames_paths": ["frames/ep1/000000.png", ...],
     "action_config": [{"start_frame": 0, "end_frame": 7, "action_text": "reach the red block",
                        "skill": "reach"}, ...]}

Instead of ``frames_paths`` a line may give ``"video": "videos/ep1.mp4"`` (and ``"fps"``); paths are
relative to the file's folder, or absolute. Frame numbers are 0-based and both ends inclusive;
``action_config`` may be empty. Every line is checked when the file is read, so a bad line is
reported once, naming the file, the line and the field, before any training starts.

A model sees ``count`` frames sampled uniformly over an episode (:func:`sample_frame_numbers`);
segments are mapped to indices into those frames (:func:`to_sampled`) and predictions back to the
episode's own frame numbers (:func:`to_original`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from qvl.data import JsonLine, read_lines, split_items
from qvl.errors import UserError, unreadable_file

EPISODES_FILE = "episodes.jsonl"


@attrs.frozen
class Segment:
    """One action of an episode: frames ``start_frame`` to ``end_frame``, both included."""

    start_frame: int
    end_frame: int
    action_text: str
    skill: str


@attrs.frozen
class Episode:
    """One checked line of ``episodes.jsonl``; exactly one of ``frames_paths`` and ``video`` is set.

    :ivar segments: sorted by ``start_frame``, disjoint, within ``[0, num_frames)``.
    :ivar source: ``"file:line"``, for messages about this episode later on.
    """

    episode_id: str
    task_name: str
    init_scene_text: str
    segments: tuple[Segment, ...]
    num_frames: int
    frames_paths: tuple[Path, ...] | None
    video: Path | None
    fps: float | None
    source: str


# -- reading ---------------------------------------------------------------------------------


def read_episodes(path: str | Path) -> list[Episode]:
    """The episodes of ``path`` (an ``episodes.jsonl`` file, or a folder holding one), all checked.

    Every frame file is checked to exist (``os.path.exists``: cheap for thousands of files), so a
    missing frame is reported here rather than in the middle of an epoch.

    :raises UserError: the first bad line: malformed JSON, a missing or wrongly typed field, neither
        or both of ``frames_paths`` and ``video``, a missing frame or video file, a segment outside
        the episode or ending before it starts, overlapping segments, a repeated ``episode_id``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / EPISODES_FILE
    if not path.is_file():
        raise UserError(f"{path}: no such episodes file; expected a JSON Lines file with one episode per line")
    episodes: list[Episode] = []
    first_line: dict[str, int] = {}
    for line in read_lines(path):
        episode = _episode(line)
        if episode.episode_id in first_line:
            raise line.error("episode_id", f"{episode.episode_id!r} is already the id of line "
                                           f"{first_line[episode.episode_id]}; expected unique ids")
        first_line[episode.episode_id] = line.number
        episodes.append(episode)
    return episodes


def _episode(line: JsonLine) -> Episode:
    episode_id = line.value("episode_id", str, "a non-empty string")
    if not episode_id:
        raise line.error("episode_id", "empty; expected a non-empty string")
    task_name = line.value("task_name", str, "a string")
    init_scene_text = line.value("init_scene_text", str, "a string")
    folder = line.path.parent
    has_frames, has_video = "frames_paths" in line.row, "video" in line.row
    if has_frames == has_video:
        raise line.error("frames_paths", "expected exactly one of 'frames_paths' (image files) and 'video' (a video "
                                         "file), got " + ("both" if has_frames else "neither"))
    fps = line.row.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        raise line.error("fps", f"expected a number of frames per second > 0, got {fps!r:.60}")
    frames_paths, video = None, None
    if has_frames:
        names = line.value("frames_paths", list, "a list of image file paths")
        if not names:
            raise line.error("frames_paths", "empty; expected at least one image file")
        frames_paths = []
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise line.error(f"frames_paths[{i}]", f"expected a file path string, got {name!r:.60}")
            frame = folder / name  # an absolute name stays absolute
            if not os.path.exists(frame):
                raise line.error(f"frames_paths[{i}]", f"{frame} does not exist; expected an image file (paths are "
                                                       f"relative to {folder})")
            frames_paths.append(frame)
        num_frames = len(frames_paths)
        frames_paths = tuple(frames_paths)
    else:
        name = line.value("video", str, "a video file path")
        video = folder / name
        if not os.path.exists(video):
            raise line.error("video", f"{video} does not exist; expected a video file (paths are relative to {folder})")
        try:
            num_frames, video_fps = video_length(video)
        except UserError as exc:
            raise line.error("video", str(exc)) from None
        fps = fps if fps is not None else video_fps
    segments = _segments(line, num_frames)
    return Episode(episode_id=episode_id, task_name=task_name, init_scene_text=init_scene_text,
                   segments=segments, num_frames=num_frames, frames_paths=frames_paths, video=video,
                   fps=None if fps is None else float(fps), source=f"{line.path}:{line.number}")


def _segments(line: JsonLine, num_frames: int) -> tuple[Segment, ...]:
    configs = line.value("action_config", list, "a list of segments (may be empty)")
    numbered = []
    for i, config in enumerate(configs):
        where = f"action_config[{i}]"
        if not isinstance(config, dict):
            raise line.error(where, f"expected an object with start_frame, end_frame, action_text and skill, "
                                    f"got {config!r:.60}")
        start = line.value("start_frame", int, "a frame number (integer)", config, f"{where}.start_frame")
        end = line.value("end_frame", int, "a frame number (integer)", config, f"{where}.end_frame")
        action_text = line.value("action_text", str, "a string", config, f"{where}.action_text")
        skill = line.value("skill", str, "a string", config, f"{where}.skill")
        if start < 0:
            raise line.error(f"{where}.start_frame", f"{start}; expected a frame number >= 0")
        if end < start:
            raise line.error(f"{where}.end_frame", f"{end} is before start_frame {start}; expected "
                                                   "end_frame >= start_frame (both frames are included)")
        if end >= num_frames:
            raise line.error(f"{where}.end_frame", f"{end} is past the episode's last frame {num_frames - 1} "
                                                   f"({num_frames} frames, numbered from 0)")
        numbered.append((i, Segment(start, end, action_text, skill)))
    numbered.sort(key=lambda pair: pair[1].start_frame)
    for (i, first), (j, second) in itertools.pairwise(numbered):
        if second.start_frame <= first.end_frame:
            raise line.error("action_config", f"segments {i} (frames {first.start_frame}-{first.end_frame}) and "
                                              f"{j} (frames {second.start_frame}-{second.end_frame}) overlap; "
                                              "expected disjoint frame ranges")
    return tuple(segment for _, segment in numbered)


def video_length(video: str | Path) -> tuple[int, float | None]:
    """The number of frames of ``video`` and its frame rate (``None`` when the file does not say),
    from the container: no decoding unless the container does not count its frames.

    :raises UserError: the file cannot be read as a video, or holds no frame.
    """
    import av

    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise unreadable_file(video, "video", exc) from None
    if count == 0:
        raise UserError(f"{video}: holds no frames; expected a video with at least one frame")
    return int(count), float(rate) if rate else None


# -- sampling and mapping --------------------------------------------------------------------


def sample_frame_numbers(num_frames: int, count: int) -> np.ndarray:
    """The frame numbers of ``count`` frames spread uniformly over an episode of ``num_frames``.

    Frame ``i`` is the one at the centre of the ``i``-th of ``count`` equal bins (exact integer
    arithmetic, so the result never depends on rounding): the whole episode is covered, the
    first and last frames are within half a bin of its ends, and a short episode repeats frames.
    """
    if num_frames < 1 or count < 1:
        raise ValueError(f"need num_frames >= 1 and count >= 1, got {num_frames} and {count}")
    bins = np.arange(count, dtype=np.int64)
    return (2 * bins + 1) * num_frames // (2 * count)


def to_sampled(segments: Sequence[Segment | tuple[int, int]], frame_numbers: Sequence[int] | np.ndarray
               ) -> list[tuple[int, int]]:
    """Each segment's (start, end) as indices into the sampled frames ``frame_numbers``.

    Each end goes to the nearest sampled frame; ties go outwards (the earlier index for a start,
    the later one for an end) so a segment never shrinks to miss a frame it covers. A segment
    shorter than the sampling step still gets one frame (end >= start).
    """
    frames = np.asarray(frame_numbers, dtype=np.int64)
    if not len(segments):
        return []
    bounds = np.array([(s.start_frame, s.end_frame) if isinstance(s, Segment) else tuple(s) for s in segments],
                      dtype=np.int64)
    starts = np.abs(frames[None, :] - bounds[:, :1]).argmin(axis=1)  # argmin: the first of equals
    ends = len(frames) - 1 - np.abs(frames[None, ::-1] - bounds[:, 1:]).argmin(axis=1)
    return [(int(s), int(max(s, e))) for s, e in zip(starts, ends)]


def to_original(index_pairs: Sequence[tuple[int, int]], frame_numbers: Sequence[int] | np.ndarray
                ) -> list[tuple[int, int]]:
    """(start, end) indices into the sampled frames, back to the episode's own frame numbers."""
    frames = np.asarray(frame_numbers, dtype=np.int64)
    return [(int(frames[start]), int(frames[end])) for start, end in index_pairs]


# -- frames ----------------------------------------------------------------------------------


def load_frames(episode: Episode, frame_numbers: Sequence[int] | np.ndarray,
                size: tuple[int, int] | None = None) -> list[Any]:
    """The RGB PIL images of the episode's frames ``frame_numbers`` (repeats allowed), resized to
    ``size`` = (width, height) when given.

    A video is decoded once, front to back, keeping only the wanted frames: sampled frames are
    spread over the whole episode, so seeking would decode most of it anyway.
    """
    numbers = [int(n) for n in frame_numbers]
    for n in numbers:
        if not 0 <= n < episode.num_frames:
            raise IndexError(f"{episode.source}: frame {n} is outside the episode's {episode.num_frames} frames")
    wanted = set(numbers)
    images = _video_frames(episode, wanted) if episode.video is not None else _image_files(episode, wanted)
    if size is not None:
        from PIL import Image

        images = {n: image if image.size == tuple(size) else image.resize(tuple(size), Image.Resampling.BILINEAR)
                  for n, image in images.items()}
    return [images[n] for n in numbers]


def _image_files(episode: Episode, wanted: set[int]) -> dict[int, Any]:
    from PIL import Image

    assert episode.frames_paths is not None
    images = {}
    for n in sorted(wanted):
        path = episode.frames_paths[n]
        try:
            with Image.open(path) as image:
                images[n] = image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise unreadable_file(path, f"image (frame {n} of {episode.source})", exc) from None
    return images


def _video_frames(episode: Episode, wanted: set[int]) -> dict[int, Any]:
    import av

    assert episode.video is not None
    images: dict[int, Any] = {}
    last = max(wanted, default=-1)
    try:
        with av.open(str(episode.video)) as container:
            for n, frame in enumerate(container.decode(video=0)):
                if n in wanted:
                    images[n] = frame.to_image().convert("RGB")
                if n >= last:
                    break
    except (av.FFmpegError, OSError) as exc:
        raise unreadable_file(episode.video, f"video ({episode.source})", exc) from None
    if len(images) < len(wanted):
        missing = min(wanted - set(images))
        raise UserError(f"{episode.video}: frame {missing} could not be decoded ({episode.source} says the video "
                        f"has {episode.num_frames} frames); truncated or damaged video?")
    return images


# -- splits ----------------------------------------------------------------------------------


def split_episodes(episodes: Sequence[Episode], val_fraction: float, test_fraction: float, seed: int
                   ) -> dict[str, list[Episode]]:
    """The episodes by split (``train``, ``val``, ``test``; file order kept), about the given fractions.

    Each episode by a hash of (seed, episode_id) alone (:func:`qvl.data.assign_split` salted with
    the seed): it keeps its split when episodes are added or removed, and on every machine.
    """
    return split_items(episodes, val_fraction, test_fraction, key=lambda e: e.episode_id, salt=str(seed))
