"""One sample's row, drawn from the plan: the prompt, the answer, the videos and the frames they show.

Sample ``i`` draws everything from its own RNG, seeded from ``(seed, i)``, and belongs to a split
given by ``i`` alone: the same seed gives the same rows whatever the number of workers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from qvl_vqa.generation_plan import GenerationPlan, SplitPools
from qvl_vqa.row_schema import EMPTY_ROW
from qvl_vqa.trajectory import Trajectory

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


def _pick(choices: tuple[list[str], list[float]], u: float) -> str:
    names, cumulative = choices
    target = u * cumulative[-1]
    for name, bound in zip(names, cumulative):
        if target < bound:
            return name
    return names[-1]


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


def _draw_anchor(pools: SplitPools, kind: str, strategy: str, uniform: Callable[[], float]
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


def _other_task(pools: SplitPools, task: str, uniform: Callable[[], float]) -> str:
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


def _preference(row: dict[str, Any], anchor: Trajectory, strategy: str, pools: SplitPools,
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


def _progress(row: dict[str, Any], t: Trajectory, strategy: str, pools: SplitPools,
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


def _similarity(row: dict[str, Any], reference: Trajectory, strategy: str, pools: SplitPools,
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

