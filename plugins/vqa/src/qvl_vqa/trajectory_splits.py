"""Splits by trajectory: which trajectories each of train, val and test shows, and how many samples it gets."""

from __future__ import annotations

import random
from collections.abc import Sequence

from qvl.data import SPLITS, split_items
from qvl.errors import UserError

from qvl_vqa.config import QUALITY_LABELS
from qvl_vqa.trajectory import Trajectory


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
