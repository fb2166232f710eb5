"""The sampling plan: each split's trajectories grouped for cheap draws, the sample types and strategies
possible in it, and which sample indices belong to which split."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs
from qvl.data import SPLITS
from qvl.errors import UserError

from qvl_vqa.config import SAMPLE_TYPES
from qvl_vqa.generation_settings import strategy_weights
from qvl_vqa.trajectory import Trajectory
from qvl_vqa.trajectory_splits import split_sizes, split_trajectories

if TYPE_CHECKING:
    from qvl_vqa.config import VqaConfig


def _anchor_ok(kind: str, strategy: str, pools: SplitPools) -> Callable[[Trajectory], bool]:
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
class SplitPools:
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
    def of(cls, name: str, trajectories: list[Trajectory]) -> SplitPools:
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


@attrs.define
class GenerationPlan:
    """What every worker needs: the settings, the splits' pools, which samples belong where."""

    task: VqaConfig
    seed: int
    pools: dict[str, SplitPools]
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
            pools[name] = SplitPools.of(name, splits[name])
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
