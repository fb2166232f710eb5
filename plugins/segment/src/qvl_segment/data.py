"""Where the segment task's episodes come from, and the samples of each split.

``task.data_dir`` (a folder with the episodes file) when set, else the synthetic data set in
qvl's cache, written on first use: ``qvl run segment train`` on a fresh machine writes it before
its first step. ``predict --input`` also takes a folder of frames or one video file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

import qvl
from qvl.data import image_files
from qvl_segment.episodes import Episode, read_episodes, split_episodes

if TYPE_CHECKING:
    from qvl.config import RunConfig

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")


def data_root(config: RunConfig, *, create: bool = True) -> Path:
    from qvl.build import data_folder
    from qvl_segment.synthetic import synthetic_data

    return data_folder(config.task.data_dir, synthetic_data(config.task.synthetic, config.seed), create=create)


def all_episodes(config: RunConfig, path: Path | None = None) -> list[Episode]:
    """Every episode of the configured (or given) episodes file, each within ``task.k_max`` segments."""
    path = path or data_root(config) / config.task.episodes_file
    if not path.is_file():
        raise qvl.UserError(f"{path}: no episodes file (task.data_dir holds {config.task.episodes_file!r}? "
                            "set task.episodes_file, or leave task.data_dir empty for the synthetic data)")
    episodes = read_episodes(path)
    k_max = config.task.k_max
    for episode in episodes:
        if len(episode.segments) > k_max:
            file, _, line = episode.source.rpartition(":")
            raise qvl.UserError(f"{file}, line {line}, field 'action_config': {len(episode.segments)} segments, more "
                                f"than task.k_max = {k_max}; raise task.k_max")
    return episodes


@attrs.frozen
class SplitInfo:
    """What scoring needs about a split besides its samples (``qvl.Samples.info``): its episodes, in
    sample order; the training split's (the baselines' most frequent count and skill); and the skill
    vocabulary the answer schema allows (the training episodes' skills, else the split's own)."""

    episodes: list[Episode]
    train_episodes: list[Episode]
    skills: list[str]


class EpisodeSamples(Sequence):
    """The episodes of one split as samples ``{"id", "episode"}`` (a fresh dict at each access)."""

    def __init__(self, episodes: list[Episode]) -> None:
        self.episodes = episodes

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        episode = self.episodes[index]
        return {"id": episode.episode_id, "episode": episode}


def segment_samples(episodes: list[Episode], train_episodes: list[Episode]) -> qvl.Samples[SplitInfo]:
    """``episodes`` as samples, with their :class:`SplitInfo`."""
    names = {s.skill for e in train_episodes for s in e.segments}
    skills = sorted(names or {s.skill for e in episodes for s in e.segments} or {"action"})
    return qvl.Samples(EpisodeSamples(episodes), SplitInfo(episodes, train_episodes, skills))


def split_samples(config: RunConfig, split: str) -> qvl.Samples[SplitInfo]:
    task = config.task
    splits = split_episodes(all_episodes(config), task.val_fraction, task.test_fraction, config.seed)
    if split not in splits:
        raise qvl.UserError(f"split {split!r}: the segment task has {sorted(splits)}")
    if not splits[split]:
        raise qvl.UserError(f"split {split!r} holds no episode: more episodes, or a larger "
                            f"task.{split}_fraction" if split != "train" else "split 'train' holds no episode")
    return segment_samples(splits[split], splits["train"])


def predict_samples(config: RunConfig, source: Path) -> qvl.Samples[SplitInfo]:
    """``predict --input``: an episodes file, a folder of frames (one episode, in name order), or a video."""
    train = split_samples(config, "train").info.episodes if _has_training_data(config) else []
    if source.is_file() and source.suffix == ".jsonl":
        return segment_samples(all_episodes(config, source), train)
    if source.is_dir():
        frames = image_files(source, what=f"{source} (a folder of frames)")
        episode = Episode(episode_id=source.name, task_name="", init_scene_text="", segments=(),
                          num_frames=len(frames), frames_paths=tuple(frames), video=None, fps=None,
                          source=str(source))
        return segment_samples([episode], train)
    if source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        from qvl_segment.episodes import video_length

        count, fps = video_length(source)
        episode = Episode(episode_id=source.stem, task_name="", init_scene_text="", segments=(), num_frames=count,
                          frames_paths=None, video=source, fps=fps, source=str(source))
        return segment_samples([episode], train)
    raise qvl.UserError(f"predict --input {source}: expected an episodes .jsonl file, a folder of frames or a "
                        f"video ({', '.join(VIDEO_SUFFIXES)})")


def _has_training_data(config: RunConfig) -> bool:
    return not config.task.data_dir or (Path(config.task.data_dir).expanduser() / config.task.episodes_file).is_file()


def make_data(config: RunConfig) -> Path:
    """Stage ``make-data``: write the synthetic episodes (into ``task.data_dir`` when set)."""
    from qvl.build import write_synthetic
    from qvl_segment.synthetic import synthetic_data

    synthetic = synthetic_data(config.task.synthetic, config.seed)
    if config.task.data_dir:
        root = Path(config.task.data_dir).expanduser()
    else:
        root = qvl.cache_dir() / "datasets" / synthetic.key
    path = write_synthetic(root, synthetic)
    episodes = read_episodes(path / config.task.episodes_file)
    print(f"qvl-segment: {len(episodes)} episodes in {path}")
    return path


def prepare(config: RunConfig, input: str | None = None) -> Path:
    """Stage ``prepare --input LEROBOT_ROOT``: convert a LeRobot data set whose frames carry subtask
    labels into an episodes file with frames, in ``task.data_dir`` (which must be set, and new or
    qvl's)."""
    from qvl_segment.lerobot_import import convert_lerobot

    task = config.task
    if not input:
        raise qvl.UserError("qvl run segment prepare needs --input: the LeRobot data set to convert")
    if not task.data_dir:
        raise qvl.UserError("qvl run segment prepare writes into task.data_dir: set it (--set task.data_dir=...)")
    target = convert_lerobot(Path(input).expanduser(), Path(task.data_dir).expanduser(),
                             camera_key=task.lerobot_camera or None, subtask_column=task.lerobot_subtask_column,
                             skill_column=task.lerobot_skill_column or None, fps=task.lerobot_fps)
    print(f"qvl-segment: {len(read_episodes(target / task.episodes_file))} episodes in {target}")
    return target
