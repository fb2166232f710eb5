"""Static VQA data set generation: prompts, answers and frame indices from trajectory records.

The seed's ``generate_vqa_dataset.py`` with its future items done: several strategies per sample
type, similarity samples, splits by trajectory. Only :class:`~qvl_vqa.trajectories.Trajectory`
records are read, never frames; a row names its videos (``.npz`` path, trajectory id) and the
frame indices to show.

* Sample ``i`` draws everything from its own RNG, seeded from ``(seed, i)``, and belongs to a split
  given by ``i`` alone: the same seed gives the same rows whatever the number of workers. Splits
  are by trajectory: a sample of a split shows only trajectories of that split.
* Shards of ``save_batch_size`` rows are written as Arrow files straight into the final
  ``save_to_disk`` layout (``{split}/data-0000k-of-0000n.arrow``), each atomically, with a small
  JSON record beside them saying it is complete; a restarted generation keeps the finished ones.
  The DatasetDict's metadata is written at the end, so no row is ever held in memory twice or
  copied: peak memory does not grow with ``num_samples``.
* Every row has every field of :data:`ROW_SCHEMA` (None where unused): the seed lost fields to
  schema inference from the first row.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import queue
import random
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pyarrow as pa

from qvl.data import SPLITS, digest, split_items, write_json
from qvl.errors import UserError
from qvl_vqa.config import QUALITY_LABELS, SAMPLE_TYPES, STRATEGIES
from qvl_vqa.trajectories import Trajectory

if TYPE_CHECKING:
    import datasets

    from qvl_vqa.config import VqaConfig

GENERATOR_VERSION = 1  # of the sampling code: bump when the same settings would give other rows
MAX_ATTEMPTS = 100  # draws of a strategy's anchor trajectory before drawing among the feasible ones

PROMPTS = {
    "preference": ("Given these two robot videos, which one makes the most progress towards solving the task, "
                   "Video 1 or 2? Format your answer as: ANS: 1/2\n\nTask: {task}"),
    "progress": ("Given the task, assign an integer-valued progress score from 0 to 100 for the robot in the "
                 "video. Format your answer as: ANS: 0-100\n\nTask: {task}"),
    "similarity": ("The first robot video is a reference; Video 1 and Video 2 follow it. Which of them does the "
                   "same task as the reference, as well as the reference does, Video 1 or 2? Format your answer "
                   "as: ANS: 1/2\n\nTask: {task}"),
}


def _video_fields(prefix: str) -> list[pa.Field]:
    return [pa.field(f"{prefix}npz_path", pa.string()), pa.field(f"{prefix}trajectory_id", pa.string()),
            pa.field(f"{prefix}frame_indices", pa.list_(pa.int32())),
            pa.field(f"{prefix}frames_shape", pa.list_(pa.int32())),
            pa.field(f"{prefix}target_progress", pa.list_(pa.float64()))]


# One schema, declared up front. Progress samples use the unprefixed video; preference samples
# first_/second_ (Video 1 and 2); similarity samples the unprefixed one for the reference and
# first_/second_ for the two candidates.
ROW_SCHEMA = pa.schema([
    pa.field("sample_type", pa.string()),
    pa.field("prompt", pa.string()),
    pa.field("answer", pa.string()),  # the assistant's whole reply: "1", "2" or "0".."100"
    pa.field("task", pa.string()),  # the task the prompt asks about
    pa.field("data_source", pa.string()),
    pa.field("data_gen_strategy", pa.string()),
    pa.field("resample_attempts", pa.int32()),
    pa.field("chosen_is_first", pa.bool_()),  # preference: the chosen video is Video 1; similarity: the match is
    *_video_fields(""),
    *_video_fields("first_"),
    *_video_fields("second_"),
    pa.field("sample_index", pa.int64()),
    pa.field("split", pa.string()),
])
EMPTY_ROW: dict[str, Any] = dict.fromkeys(ROW_SCHEMA.names)


def row_features() -> datasets.Features:
    """:data:`ROW_SCHEMA` as ``datasets`` features (what the saved DatasetDict declares)."""
    import datasets

    return datasets.Features.from_arrow_schema(ROW_SCHEMA)


# The [task] settings (VqaConfig, their one declaration, with the defaults users get) that the rows
# depend on; with the run's seed they are the generation's fingerprint. task.num_workers and
# task.save_batch_size change how the rows are produced, never what they are.
ROW_SETTINGS = ("num_samples", "sample_type_ratio", "strategy_ratio", "max_frames", "eval_mode", "val_fraction",
                "test_fraction")
PRODUCTION_SETTINGS = ("num_workers", "save_batch_size")


def generation_settings(task: VqaConfig, seed: int) -> dict[str, Any]:
    """The generation's settings as recorded in ``generation_config.json``: those of the ``[task]``
    section it reads, and the seed."""
    settings = {name: getattr(task, name) for name in ROW_SETTINGS + PRODUCTION_SETTINGS}
    return {**settings, "seed": seed, "sample_type_ratio": list(task.sample_type_ratio),
            "strategy_ratio": {kind: dict(weights) for kind, weights in task.strategy_ratio.items()}}


def strategy_weights(task: VqaConfig) -> dict[str, dict[str, float]]:
    """Every strategy's weight per sample type (``task.strategy_ratio``: one left out has weight 1,
    0 turns it off); ``eval_mode`` keeps only real quality differences for preference pairs
    (``suboptimal``)."""
    weights = {kind: {name: float(task.strategy_ratio.get(kind, {}).get(name, 1.0)) for name in names}
               for kind, names in STRATEGIES.items()}
    if task.eval_mode:
        weights["preference"] = {name: (weights["preference"]["suboptimal"] if name == "suboptimal" else 0.0)
                                 for name in weights["preference"]}
    return weights


def generation_fingerprint(task: VqaConfig, seed: int, store_root: str,
                           store_fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """What a generated data set depends on (the build folder's fingerprint): the row settings
    (strategy weights resolved: equal weights, equal fingerprint), the seed and the store."""
    content = {name: value for name, value in generation_settings(task, seed).items()
               if name not in PRODUCTION_SETTINGS}
    content["strategy_ratio"] = strategy_weights(task)
    return {"generator": GENERATOR_VERSION, "settings": content, "store_root": str(store_root),
            "store_fingerprint": dict(store_fingerprint)}


# ---------------------------------------------------------------------------------------- splits


def split_trajectories(trajectories: Sequence[Trajectory], val_fraction: float, test_fraction: float,
                       seed: int) -> dict[str, list[Trajectory]]:
    """Assign each trajectory to train, val or test, per task, stable given the seed.

    A task's trajectories are shuffled within each quality label and laid out label after label;
    test and then val take evenly spread positions of that list (:func:`qvl.data.split_items`,
    ``method="spread"``), so every split gets a similar mix of qualities. A task with at least 3
    trajectories gives val and test at least one each (when their fraction is not 0); train
    always keeps at least one.

    :returns: per split, its trajectories sorted by id.
    """
    by_task: dict[str, list[Trajectory]] = {}
    seen: set[str] = set()
    for trajectory in trajectories:
        if trajectory.id in seen:
            raise UserError(f"trajectory id {trajectory.id!r} appears twice in the store (row {trajectory.row})")
        seen.add(trajectory.id)
        by_task.setdefault(trajectory.task, []).append(trajectory)
    splits: dict[str, list[Trajectory]] = {name: [] for name in SPLITS}
    rank = {label: i for i, label in enumerate(QUALITY_LABELS)}
    for task in sorted(by_task):
        rng = random.Random(f"{seed}/split/{task}")  # str seeds hash with SHA-512: the same in every process
        ordered: list[Trajectory] = []
        members = sorted(by_task[task], key=lambda t: (rank.get(t.quality_label, len(rank)), t.quality_label, t.id))
        for label in dict.fromkeys(t.quality_label for t in members):
            group = [t for t in members if t.quality_label == label]
            rng.shuffle(group)
            ordered.extend(group)
        for name, part in split_items(ordered, val_fraction, test_fraction, method="spread").items():
            splits[name].extend(part)
    return {name: sorted(members, key=lambda t: t.id) for name, members in splits.items()}


def split_sizes(num_samples: int, val_fraction: float, test_fraction: float,
                present: Sequence[str] = SPLITS) -> dict[str, int]:
    """Samples per split: val and test in proportion, train the rest; a split without trajectories
    (not in ``present``) gets none and train takes its share."""
    sizes = {name: round(num_samples * fraction) if name in present else 0
             for name, fraction in (("val", val_fraction), ("test", test_fraction))}
    return {"train": num_samples - sizes["val"] - sizes["test"], **sizes}


# -------------------------------------------------------------------------------------- sampling


def _anchor_ok(kind: str, strategy: str, pools: _SplitPools) -> Callable[[Trajectory], bool]:
    """Whether a trajectory can be the anchor of a sample of this type and strategy in this split:
    preference: the chosen video (or, for ``suboptimal``, either one); progress: the shown video;
    similarity: the reference."""
    several_tasks = len(pools.tasks) > 1
    successful, lower, unsuccessful = pools.successful, pools.lower, pools.unsuccessful

    def ok(t: Trajectory) -> bool:
        if t.num_frames < 1:
            return False
        if kind == "preference":
            if strategy == "suboptimal":
                if t.quality_label == "successful":
                    return bool(lower[t.task])
                return t.final_progress < 1.0 and bool(successful[t.task])
            # the rejected video must end with less progress than the chosen one
            if t.final_progress <= 0:
                return False
            return several_tasks if strategy == "different_task" else t.num_frames >= 2
        if kind == "progress":
            if strategy == "different_task":
                return several_tasks
            return strategy == "forward_progress" or t.num_frames >= 2
        # similarity: a successful reference and another successful trajectory of its task
        if t.quality_label != "successful" or len(successful[t.task]) < 2:
            return False
        return several_tasks if strategy == "different_task" else bool(unsuccessful[t.task])

    return ok


@attrs.define
class _SplitPools:
    """A split's trajectories, grouped for cheap draws, and the strategies possible in it."""

    name: str
    trajectories: list[Trajectory]
    tasks: list[str]
    task_index: dict[str, int]
    by_task: dict[str, list[Trajectory]]
    successful: dict[str, list[Trajectory]]
    lower: dict[str, list[Trajectory]]  # not successful and ending below 1: rejected of a suboptimal pair
    unsuccessful: dict[str, list[Trajectory]]  # suboptimal or failure: the odd candidate of a similarity triple
    # (type, strategy) -> (per trajectory: can anchor it, the ones that can)
    anchors: dict[tuple[str, str], tuple[bytes, list[Trajectory]]] = attrs.Factory(dict)
    type_choices: tuple[list[str], list[float]] = attrs.Factory(lambda: ([], []))  # names, cumulative weights
    strategy_choices: dict[str, tuple[list[str], list[float]]] = attrs.Factory(dict)

    @classmethod
    def of(cls, name: str, trajectories: list[Trajectory]) -> _SplitPools:
        tasks = sorted({t.task for t in trajectories})
        groups: dict[str, dict[str, list[Trajectory]]] = {key: {task: [] for task in tasks} for key in
                                                          ("by_task", "successful", "lower", "unsuccessful")}
        for t in trajectories:
            groups["by_task"][t.task].append(t)
            if t.quality_label == "successful":
                groups["successful"][t.task].append(t)
            else:
                groups["unsuccessful"][t.task].append(t)
                if t.final_progress < 1.0:
                    groups["lower"][t.task].append(t)
        return cls(name=name, trajectories=trajectories, tasks=tasks,
                   task_index={task: i for i, task in enumerate(tasks)}, **groups)

    def enable(self, type_weights: Mapping[str, float], weights: Mapping[str, Mapping[str, float]],
               notes: list[str]) -> None:
        """Keep the types and strategies that have weight and can be made here; say what was dropped."""
        kinds, kind_weights = [], []
        for kind in SAMPLE_TYPES:
            if type_weights[kind] <= 0:
                continue
            names, strategy_weights, impossible = [], [], []
            for strategy, weight in weights[kind].items():
                if weight <= 0:
                    continue
                ok = _anchor_ok(kind, strategy, self)
                flags = bytes(ok(t) for t in self.trajectories)
                pool = [t for t, flag in zip(self.trajectories, flags) if flag]
                if not pool:
                    impossible.append(f"'{strategy}' ({_why_impossible(kind, strategy)})")
                    continue
                self.anchors[kind, strategy] = (flags, pool)
                names.append(strategy)
                strategy_weights.append(weight)
            if impossible:
                notes.append(f"{self.name}: no {kind} samples " + ("" if names else "at all ") + "by "
                             + ", ".join(impossible))
            if not names:
                continue
            self.strategy_choices[kind] = (names, _cumulative(strategy_weights))
            kinds.append(kind)
            kind_weights.append(type_weights[kind])
        self.type_choices = (kinds, _cumulative(kind_weights))


def _why_impossible(kind: str, strategy: str) -> str:
    if strategy == "different_task":
        return "its trajectories are all of one task" + (
            "" if kind != "similarity" else ", or no task has two successful trajectories")
    if kind == "similarity":
        return "no task has two successful trajectories and a suboptimal or failed one"
    if kind == "preference" and strategy == "suboptimal":
        return "no task has both a successful trajectory and a suboptimal or failed one"
    if kind == "preference":
        return "no trajectory of at least 2 frames ends with progress above 0"
    return "no trajectory has at least 2 frames"


def _cumulative(weights: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def _pick(choices: tuple[list[str], list[float]], u: float) -> str:
    names, cumulative = choices
    target = u * cumulative[-1]
    for name, bound in zip(names, cumulative):
        if target < bound:
            return name
    return names[-1]


@attrs.define
class GenerationPlan:
    """What every worker needs: the settings, the splits' pools, which samples belong where."""

    task: VqaConfig
    seed: int
    pools: dict[str, _SplitPools]
    ranges: dict[str, tuple[int, int]]  # split -> [start, stop) of sample indices
    notes: list[str]  # strategies or types left out of a split, and why

    @classmethod
    def of(cls, trajectories: Sequence[Trajectory], task: VqaConfig, seed: int) -> GenerationPlan:
        if not trajectories:
            raise UserError("the trajectory store holds no trajectories; there is nothing to make samples of")
        splits = split_trajectories(trajectories, task.val_fraction, task.test_fraction, seed)
        notes: list[str] = []
        for name in ("val", "test"):
            fraction = task.val_fraction if name == "val" else task.test_fraction
            if fraction > 0 and not splits[name]:
                notes.append(f"{name}: no trajectories (no task has 3 or more), so no samples; train takes its share")
        sizes = split_sizes(task.num_samples, task.val_fraction, task.test_fraction,
                            [name for name in SPLITS if splits[name]])
        type_weights = dict(zip(SAMPLE_TYPES, task.sample_type_ratio))
        weights = strategy_weights(task)
        pools, ranges, start = {}, {}, 0
        for name in SPLITS:
            pools[name] = _SplitPools.of(name, splits[name])
            ranges[name] = (start, start + sizes[name])
            start += sizes[name]
            if sizes[name]:
                pools[name].enable(type_weights, weights, notes)
                if not pools[name].type_choices[0]:
                    raise UserError(f"no {name} sample can be made: " + "; ".join(
                        note.split(": ", 1)[1] for note in notes if note.startswith(f"{name}: ")) +
                        " (check sample_type_ratio, strategy_ratio, eval_mode and the trajectories' quality labels)")
        return cls(task=task, seed=seed, pools=pools, ranges=ranges, notes=notes)

    def split_of(self, index: int) -> str:
        for name, (start, stop) in self.ranges.items():
            if start <= index < stop:
                return name
        raise IndexError(f"sample {index} is outside [0, {self.task.num_samples})")


def sample_rng(seed: int, index: int) -> random.Random:
    """Sample ``index``'s RNG: a function of (seed, index) only (distinct for indices below 2**40)."""
    return random.Random((seed << 40) + index)


def make_sample(index: int, plan: GenerationPlan) -> dict[str, Any]:
    """Row ``index`` of the data set: every field of :data:`ROW_SCHEMA`."""
    split = plan.split_of(index)
    pools = plan.pools[split]
    rng = sample_rng(plan.seed, index)
    uniform = rng.random
    kind = _pick(pools.type_choices, uniform())
    strategy = _pick(pools.strategy_choices[kind], uniform())
    anchor, attempts = _draw_anchor(pools, kind, strategy, uniform)
    row = dict(EMPTY_ROW)
    row.update(sample_type=kind, data_gen_strategy=strategy, resample_attempts=attempts, sample_index=index,
               split=split)
    _BUILDERS[kind](row, anchor, strategy, pools, uniform, plan.task.max_frames)
    return row


def _draw_anchor(pools: _SplitPools, kind: str, strategy: str, uniform: Callable[[], float]
                 ) -> tuple[Trajectory, int]:
    """Draw trajectories of the split until one suits the strategy (the seed's resampling); after
    MAX_ATTEMPTS, draw among the suitable ones directly: the same distribution, uniform over them."""
    flags, pool = pools.anchors[kind, strategy]
    everything = pools.trajectories
    n = len(everything)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        k = int(uniform() * n)
        if flags[k]:
            return everything[k], attempt
    return pool[int(uniform() * len(pool))], MAX_ATTEMPTS + 1


def _choice(items: Sequence[Any], uniform: Callable[[], float]) -> Any:
    return items[int(uniform() * len(items))]


def _other_task(pools: _SplitPools, task: str, uniform: Callable[[], float]) -> str:
    """Another task of the split, uniformly."""
    k = int(uniform() * (len(pools.tasks) - 1))
    return pools.tasks[k + 1 if k >= pools.task_index[task] else k]


def _even(n: int, m: int) -> list[int]:
    """At most ``m`` evenly spaced positions of ``range(n)``, the first and the last included."""
    if n <= m:
        return list(range(n))
    step = (n - 1) / (m - 1)
    return [int(k * step + 0.5) for k in range(m)]


def _forward(t: Trajectory, m: int) -> list[int]:
    return _even(t.num_frames, m)


def _rewind(t: Trajectory, uniform: Callable[[], float], m: int) -> list[int]:
    """Forward from frame 0 to k, then back to j < k."""
    k = 1 + int(uniform() * (t.num_frames - 1))
    j = int(uniform() * k)
    return [p if p <= k else 2 * k - p for p in _even(2 * k - j + 1, m)]


def _fill(row: dict[str, Any], prefix: str, t: Trajectory, indices: list[int], matches: bool = True) -> None:
    """A video's fields; ``matches``: it shows the asked task (else its progress is 0 throughout)."""
    row[f"{prefix}npz_path"] = t.npz_path
    row[f"{prefix}trajectory_id"] = t.id
    row[f"{prefix}frame_indices"] = indices
    row[f"{prefix}frames_shape"] = list(t.frames_shape)
    row[f"{prefix}target_progress"] = [t.progress(f) for f in indices] if matches else [0.0] * len(indices)


def _preference(row: dict[str, Any], anchor: Trajectory, strategy: str, pools: _SplitPools,
                uniform: Callable[[], float], m: int) -> None:
    chosen, rejected, rejected_frames, matches = anchor, anchor, None, True
    if strategy == "suboptimal":
        if anchor.quality_label == "successful":
            rejected = _choice(pools.lower[anchor.task], uniform)
        else:
            chosen = _choice(pools.successful[anchor.task], uniform)
    elif strategy == "rewind":
        rejected_frames = _rewind(anchor, uniform, m)
    elif strategy == "reverse":
        rejected_frames = [anchor.num_frames - 1 - p for p in _even(anchor.num_frames, m)]
    else:  # different_task: its progress towards the asked task is 0
        rejected = _choice(pools.by_task[_other_task(pools, anchor.task, uniform)], uniform)
        matches = False
    chosen_is_first = uniform() < 0.5
    first, second = ("first_", "second_") if chosen_is_first else ("second_", "first_")
    _fill(row, first, chosen, _forward(chosen, m))
    _fill(row, second, rejected, rejected_frames if rejected_frames is not None else _forward(rejected, m), matches)
    row.update(prompt=PROMPTS["preference"].format(task=chosen.task), answer="1" if chosen_is_first else "2",
               task=chosen.task, data_source=chosen.data_source, chosen_is_first=chosen_is_first)


def _progress(row: dict[str, Any], t: Trajectory, strategy: str, pools: _SplitPools,
              uniform: Callable[[], float], m: int) -> None:
    task, matches, last = t.task, True, t.num_frames - 1
    if strategy == "forward_progress":
        frames = _forward(t, m)
    elif strategy == "prefix":  # frames 0..end
        end = 1 + int(uniform() * last)
        frames = _even(end + 1, m)
    elif strategy == "rewind":
        frames = _rewind(t, uniform, m)
    elif strategy == "reverse":  # backwards from frame s to frame e < s
        start = 1 + int(uniform() * last)
        end = int(uniform() * start)
        frames = [start - p for p in _even(start - end + 1, m)]
    else:  # different_task: the prompt asks for another task than the one shown
        task, matches, frames = _other_task(pools, t.task, uniform), False, _forward(t, m)
    _fill(row, "", t, frames, matches)
    row.update(prompt=PROMPTS["progress"].format(task=task), answer=str(round(100 * row["target_progress"][-1])),
               task=task, data_source=t.data_source)


def _similarity(row: dict[str, Any], reference: Trajectory, strategy: str, pools: _SplitPools,
                uniform: Callable[[], float], m: int) -> None:
    same = pools.successful[reference.task]
    match = reference
    while match is reference:  # the reference's task has at least two successful trajectories
        match = _choice(same, uniform)
    if strategy == "suboptimal":
        odd, odd_matches = _choice(pools.unsuccessful[reference.task], uniform), True
    else:
        odd, odd_matches = _choice(pools.by_task[_other_task(pools, reference.task, uniform)], uniform), False
    match_is_first = uniform() < 0.5
    first, second = ("first_", "second_") if match_is_first else ("second_", "first_")
    _fill(row, "", reference, _forward(reference, m))
    _fill(row, first, match, _forward(match, m))
    _fill(row, second, odd, _forward(odd, m), odd_matches)
    row.update(prompt=PROMPTS["similarity"].format(task=reference.task), answer="1" if match_is_first else "2",
               task=reference.task, data_source=reference.data_source, chosen_is_first=match_is_first)


_BUILDERS = {"preference": _preference, "progress": _progress, "similarity": _similarity}


# ------------------------------------------------------------------------------ shards and output


@attrs.frozen
class _Shard:
    split: str
    index: int
    count: int  # shards of the split
    start: int
    stop: int

    @property
    def filename(self) -> str:  # the name save_to_disk gives its data files
        return f"data-{self.index:05d}-of-{self.count:05d}.arrow"

    @property
    def record(self) -> str:
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}.json"


SHARD_RECORDS = ".shards"  # completion records of the finished shards, removed once the data set is complete


def _shards(plan: GenerationPlan) -> list[_Shard]:
    size = plan.task.save_batch_size
    shards = []
    for split, (start, stop) in plan.ranges.items():
        step = (stop - start) if size == -1 else size
        bounds = list(range(start, stop, step)) if stop > start else [start]  # an empty split: one empty file
        for index, first in enumerate(bounds):
            shards.append(_Shard(split, index, len(bounds), first, min(first + max(step, 1), stop)))
    return shards


@attrs.frozen
class _Job:
    """What a worker is given once: the plan and where and how to write."""

    plan: GenerationPlan
    out: Path
    key: str  # the generation's digest: a shard record of another generation is not reused


def _write_shard(job: _Job, shard: _Shard) -> dict[str, Any]:
    """Generate a shard's rows and write them as an Arrow stream (what save_to_disk writes), then its
    completion record; both atomically."""
    rows = [make_sample(i, job.plan) for i in range(shard.start, shard.stop)]
    table = pa.Table.from_pydict({name: [row[name] for row in rows] for name in ROW_SCHEMA.names},
                                 schema=ROW_SCHEMA)
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        by_strategy = counts.setdefault(row["sample_type"], {})
        by_strategy[row["data_gen_strategy"]] = by_strategy.get(row["data_gen_strategy"], 0) + 1
    del rows
    path = job.out / shard.split / shard.filename
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, ROW_SCHEMA) as writer:
        writer.write_table(table)  # one record batch: few headers to touch when memory-mapped
    os.replace(tmp, path)
    record = {"key": job.key, "split": shard.split, "start": shard.start, "stop": shard.stop,
              "file": shard.filename, "bytes": path.stat().st_size, "counts": counts}
    _write_json(job.out / SHARD_RECORDS / shard.record, record)
    return record


def _finished(job: _Job, shard: _Shard) -> dict[str, Any] | None:
    """The record of a shard an earlier, interrupted run of the same generation completed."""
    try:
        record = json.loads((job.out / SHARD_RECORDS / shard.record).read_text(encoding="utf-8"))
        size = (job.out / shard.split / shard.filename).stat().st_size
    except (OSError, ValueError):
        return None
    same = (record.get("key"), record.get("start"), record.get("stop"), record.get("bytes"))
    return record if same == (job.key, shard.start, shard.stop, size) else None


def _write_json(path: Path, data: Any) -> None:
    write_json(path, data, indent=1, sort_keys=True, default=str)


_WORKER_JOB: list[_Job] = []


def _init_worker(job_file: str) -> None:
    with open(job_file, "rb") as f:
        _WORKER_JOB[:] = [pickle.load(f)]


def _run_shard(shard: _Shard) -> tuple[_Shard, dict[str, Any]]:
    return shard, _write_shard(_WORKER_JOB[0], shard)


def _remove_strays(out: Path, shards: Sequence[_Shard]) -> None:
    """Files of this layout that the plan does not name: shards of an interrupted run with another
    shard size, unfinished temporary files. Nothing else in ``out`` is touched."""
    wanted = {(s.split, s.filename) for s in shards} | {(SHARD_RECORDS, s.record) for s in shards}
    for folder in (*SPLITS, SHARD_RECORDS):
        for path in (out / folder).glob("*"):
            stray = (folder, path.name) not in wanted and (
                ".tmp-" in path.name or path.name.startswith("data-") or folder == SHARD_RECORDS)
            if stray and path.is_file():
                path.unlink()


def generate(trajectories: Sequence[Trajectory], task: VqaConfig, seed: int, out: Path, *, store_root: str,
             store_fingerprint: Mapping[str, Any], progress: bool = True) -> dict[str, Any]:
    """Write the VQA DatasetDict (train/val/test) and ``generation_config.json`` into ``out``, as
    the ``[task]`` section ``task`` and the run's ``seed`` say.

    Shards already finished in ``out`` by an interrupted run of the same generation are kept.

    :returns: the counts (per split, sample type and strategy) and notes on what could not be made.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    plan = GenerationPlan.of(trajectories, task, seed)
    for note in plan.notes:
        print(f"qvl-vqa: warning: {note}", file=sys.stderr)
    fingerprint = generation_fingerprint(task, seed, store_root, store_fingerprint)
    key = digest(fingerprint)
    job = _Job(plan=plan, out=out, key=key)
    shards = _shards(plan)
    for folder in (*SPLITS, SHARD_RECORDS):
        (out / folder).mkdir(parents=True, exist_ok=True)
    _remove_strays(out, shards)

    records: dict[_Shard, dict[str, Any]] = {}
    for shard in shards:
        record = _finished(job, shard)
        if record is not None:
            records[shard] = record
    reused = len(records)
    pending = [shard for shard in shards if shard not in records]
    workers = (os.cpu_count() or 1) if task.num_workers == -1 else task.num_workers
    workers = min(workers, len(pending))
    with tqdm(total=task.num_samples, initial=sum(s.stop - s.start for s in records), unit="sample",
              desc="vqa samples", disable=not progress, dynamic_ncols=True) as bar:
        for shard, record in _produce(job, pending, workers):
            records[shard] = record
            bar.update(shard.stop - shard.start)
    summary = _summary(plan, shards, records, reused, key)
    _finish(out, plan, shards, summary, store_root, store_fingerprint)
    print(f"qvl-vqa: generated {task.num_samples} samples (" + ", ".join(
        f"{split} {summary['counts'][split]['samples']}" for split in SPLITS) + f"; {reused} of {len(shards)} "
        f"shards kept from an interrupted run)", file=sys.stderr)
    return summary


def _produce(job: _Job, pending: Sequence[_Shard], workers: int) -> Iterator[tuple[_Shard, dict[str, Any]]]:
    """Write the pending shards with ``workers`` processes, this one included; yield each as it is done.

    Helper processes take shards from the front of the list as they finish one; this process takes
    them from the back meanwhile, so it works while the helpers start (spawn: no fork of a parent
    that may hold torch threads). The plan reaches each helper once, through a file: handed over
    a pipe, a large one would hold this process until the helper has started and read it.
    """
    todo = deque(pending)
    if workers <= 1:
        while todo:
            shard = todo.popleft()
            yield shard, _write_shard(job, shard)
        return
    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    job_file = job.out / SHARD_RECORDS / "job.pickle"
    with open(job_file, "wb") as f:
        pickle.dump(job, f, protocol=pickle.HIGHEST_PROTOCOL)
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers - 1, initializer=_init_worker, initargs=(str(job_file),)) as pool:

        def submit(result: Any = None) -> None:  # runs in the pool's result thread after each shard
            if result is not None:
                finished.put(result)
            try:
                shard = todo.popleft()  # deque pops are atomic: no shard is taken twice
            except IndexError:
                return
            pool.apply_async(_run_shard, (shard,), callback=submit, error_callback=finished.put)

        for _ in range(workers - 1):
            submit()

        def take(item: Any) -> tuple[_Shard, dict[str, Any]]:
            if isinstance(item, BaseException):  # a helper's error, raised here
                raise item
            return item

        done = 0
        while True:
            while not finished.empty():
                done += 1
                yield take(finished.get())
            try:
                shard = todo.pop()
            except IndexError:
                break
            done += 1
            yield shard, _write_shard(job, shard)
        while done < len(pending):
            done += 1
            yield take(finished.get())


def _finish(out: Path, plan: GenerationPlan, shards: Sequence[_Shard], summary: dict[str, Any], store_root: str,
            store_fingerprint: Mapping[str, Any]) -> None:
    """The DatasetDict's metadata around the shard files (what save_to_disk writes), the generation's
    record, and a check that it all reads back; then the shard records go."""
    import datasets

    key = summary["fingerprint_digest"]
    features = row_features()
    for split in SPLITS:
        mine = [s for s in shards if s.split == split]
        _write_json(out / split / "state.json", {
            "_data_files": [{"filename": s.filename} for s in mine],
            "_fingerprint": digest(f"{key}/{split}".encode()),
            "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
            "_output_all_columns": False, "_split": split})
        datasets.DatasetInfo(features=features, description="qvl-vqa generated samples").write_to_directory(
            str(out / split))
    _write_json(out / "dataset_dict.json", {"splits": list(SPLITS)})
    _write_json(out / "trajectory_splits.json",
                {split: [t.id for t in plan.pools[split].trajectories] for split in SPLITS})
    _write_json(out / "generation_config.json", {
        "generator": GENERATOR_VERSION, "seed": plan.seed, "settings": generation_settings(plan.task, plan.seed),
        "strategy_weights": strategy_weights(plan.task), "prompts": PROMPTS, "store_root": str(store_root),
        "store_fingerprint": dict(store_fingerprint), **summary})
    # check the result reads back as the DatasetDict it claims to be (memory-mapped: cheap)
    loaded = datasets.load_from_disk(str(out))
    for split in SPLITS:
        if len(loaded[split]) != summary["counts"][split]["samples"]:
            raise RuntimeError(f"{out}/{split}: {len(loaded[split])} rows read back, "
                               f"{summary['counts'][split]['samples']} written")
    del loaded
    for path in (out / SHARD_RECORDS).glob("*"):
        path.unlink()
    (out / SHARD_RECORDS).rmdir()


def _summary(plan: GenerationPlan, shards: Sequence[_Shard], records: Mapping[_Shard, Mapping[str, Any]],
             reused: int, key: str) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for split in SPLITS:
        types: dict[str, dict[str, int]] = {}
        for shard in shards:
            if shard.split != split:
                continue
            for kind, by_strategy in records[shard]["counts"].items():
                mine = types.setdefault(kind, {})
                for strategy, n in by_strategy.items():
                    mine[strategy] = mine.get(strategy, 0) + n
        pools = plan.pools[split]
        counts[split] = {
            "samples": plan.ranges[split][1] - plan.ranges[split][0],
            "sample_range": list(plan.ranges[split]),
            "trajectories": len(pools.trajectories),
            "trajectories_per_task": {task: len(members) for task, members in pools.by_task.items()},
            "types": {kind: dict(sorted(by.items())) for kind, by in sorted(types.items())},
        }
    return {"num_samples": plan.task.num_samples, "counts": counts, "notes": list(plan.notes),
            "shards": len(shards), "shards_reused": reused, "fingerprint_digest": key}


def build_vqa_dataset(target: Path, trajectories: Sequence[Trajectory], task: VqaConfig, seed: int,
                      store_root: str, store_fingerprint: Mapping[str, Any], *, force: bool = False,
                      progress: bool = True) -> Path:
    """Generate the data set into ``target`` once (reused while the fingerprint holds; an
    interrupted generation resumes from its finished shards). A user's non-empty folder is refused."""
    from qvl.build import build_directory

    fingerprint = generation_fingerprint(task, seed, store_root, store_fingerprint)

    def build(out: Path) -> None:
        generate(trajectories, task, seed, out, store_root=store_root, store_fingerprint=store_fingerprint,
                 progress=progress)

    return build_directory(target, build, kind="vqa-dataset", fingerprint=fingerprint, force=force, resume=True,
                           hint="choose another task.output_path", info={"samples": task.num_samples},
                           announce=f"qvl-vqa: generating {task.num_samples} VQA samples into {target}")
