"""Train / val / test assignment: one id at a time by a hash, or a whole collection at once.

Every plugin's split is one of these, chosen by parameters, so that each keeps the assignment
its data sets always had:

* :func:`assign_split`: by a hash of the item's id alone, so an item keeps its split when others
  are added or removed, on every machine (unlike Python's ``hash``). ``method="sha256"``
  (optionally with a ``salt``, e.g. the run's seed) places the id at a point of ``[0, 1)``;
  ``method="crc32-percent"`` puts it into one of 100 buckets, so shares resolve to whole percents
  (grasp's Cornell and Jacquard splits). ``order`` says which split takes ``[0, ...)`` first.
* :func:`split_items` with ``method="hash"``: every item by :func:`assign_split`;
  ``fill_empty=True`` deals the items by rank of their hashed position instead whenever that
  leaves train empty, or val or test empty although asked for (vla_flow's episodes).
* :func:`split_items` with ``method="spread"``: the items' own order is kept and test, then val,
  take evenly spread positions of it: the caller orders the items so that every split gets a
  similar mix (vqa: a seeded shuffle within each quality label, label after label).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, TypeVar

from qvl.errors import UserError

SPLITS = ("train", "val", "test")
T = TypeVar("T")


def check_fractions(val_fraction: float, test_fraction: float, setting: str = "task.") -> None:
    """Refuse fractions that are negative or leave nothing to train on.

    :param setting: the prefix of the setting names in the message (``task.val_fraction``).
    :raises UserError: naming both settings.
    """
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise UserError(f"{setting}val_fraction {val_fraction} and {setting}test_fraction {test_fraction}: expected "
                        "fractions >= 0 with a sum below 1 (something must be left to train on)")


def hash_position(item_id: str, *, salt: str | None = None) -> float:
    """A number in ``[0, 1)``, uniform over ids: the first 8 bytes of the SHA-256 of the id (of
    ``f"{salt}\\0{item_id}"`` with a salt) over ``2**64``. The same on every machine and process."""
    key = item_id if salt is None else f"{salt}\0{item_id}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64


def assign_split(
    item_id: str,
    shares: Mapping[str, float],
    *,
    order: Sequence[str] = ("test", "val", "train"),
    salt: str | None = None,
    method: Literal["sha256", "crc32-percent"] = "sha256",
) -> str:
    """The split of ``item_id``, from a hash of the id (and ``salt``) alone.

    The splits of ``order`` take consecutive intervals of ``[0, 1)`` from 0, each as wide as its
    share; the last one takes what is left (its share is not read). The id's place on that line
    is :func:`hash_position` (``method="sha256"``), or its bucket ``crc32(id) % 100`` compared with
    the boundaries in whole percents, rounded to 6 decimals so that 0.7 + 0.2 still ends at 90
    (``method="crc32-percent"``: what grasp always used, with ``order=("train", "val", "test")``).

    :param shares: split name -> fraction, for every split of ``order`` but the last.
    """
    boundaries, total = [], 0.0
    for split in order[:-1]:
        total += shares[split]
        boundaries.append((split, total))
    if method == "crc32-percent":
        key = item_id if salt is None else f"{salt}\0{item_id}"
        bucket = zlib.crc32(key.encode()) % 100
        for split, end in boundaries:
            if bucket < round(100 * end, 6):
                return split
        return order[-1]
    if method != "sha256":
        raise ValueError(f"method {method!r}: expected 'sha256' or 'crc32-percent'")
    position = hash_position(item_id, salt=salt)
    for split, end in boundaries:
        if position < end:
            return split
    return order[-1]


def held_out_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """``(n_val, n_test)`` of ``n`` items: each fraction of ``n``, rounded; with 3 items or more a
    split whose fraction is above 0 gets at least one; train keeps at least one (the larger of
    val and test gives way first, val on a tie)."""
    least_val = int(val_fraction > 0 and n >= 3)
    least_test = int(test_fraction > 0 and n >= 3)
    n_val, n_test = max(round(n * val_fraction), least_val), max(round(n * test_fraction), least_test)
    while n_test + n_val > n - 1 and n_test + n_val > 0:
        if n_val > least_val and (n_val >= n_test or n_test <= least_test):
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def split_items(
    items: Sequence[T],
    val_fraction: float,
    test_fraction: float,
    *,
    key: Callable[[T], str] = str,
    method: Literal["hash", "spread"] = "hash",
    salt: str | None = None,
    fill_empty: bool = False,
    setting: str = "task.",
) -> dict[str, list[T]]:
    """The items by split (``train``, ``val``, ``test``), each in the items' order.

    ``method="hash"``: each item by :func:`assign_split` of ``key(item)`` (test below
    ``test_fraction``, val below ``test_fraction + val_fraction``, else train), so an item keeps
    its split when others come and go. With ``fill_empty``, when that leaves train empty, or
    (3 items or more) val or test empty although its fraction is above 0, the items are dealt by
    rank of their :func:`hash_position` instead: the lowest to test, the next to val, the rest to
    train, in the sizes of :func:`held_out_counts`.

    ``method="spread"``: ``items`` in the order given; test takes :func:`held_out_counts`'s number
    of evenly spread positions, then val as many evenly spread positions of the rest.

    :param key: the item's id (unique among ``items``).
    :param setting: the prefix of the fraction settings in the error message.
    :raises UserError: the fractions leave nothing to train on (:func:`check_fractions`).
    """
    check_fractions(val_fraction, test_fraction, setting)
    if method == "spread":
        n = len(items)
        n_val, n_test = held_out_counts(n, val_fraction, test_fraction)
        test = _spread(n, n_test)
        rest = [i for i in range(n) if i not in test]
        val = {rest[i] for i in _spread(len(rest), n_val)}
        chosen_at = ["test" if i in test else "val" if i in val else "train" for i in range(n)]
        return {split: [item for item, c in zip(items, chosen_at) if c == split] for split in SPLITS}
    if method != "hash":
        raise ValueError(f"method {method!r}: expected 'hash' or 'spread'")
    ids = [key(item) for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("the ids of the items to split must be unique")
    shares = {"val": val_fraction, "test": test_fraction}
    chosen = [assign_split(item_id, shares, salt=salt) for item_id in ids]
    n = len(ids)
    if fill_empty and n:
        present = set(chosen)
        wants = {"val": val_fraction > 0 and n >= 3, "test": test_fraction > 0 and n >= 3}
        if "train" not in present or any(wants[s] and s not in present for s in ("val", "test")):
            n_val, n_test = held_out_counts(n, val_fraction, test_fraction)
            ranked = sorted(range(n), key=lambda i: (hash_position(ids[i], salt=salt), ids[i]))
            for rank, i in enumerate(ranked):
                chosen[i] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return {split: [item for item, c in zip(items, chosen) if c == split] for split in SPLITS}


def _spread(n: int, count: int) -> set[int]:
    return {int((k + 0.5) * n / count) for k in range(count)} if count else set()


__all__ = ["SPLITS", "assign_split", "check_fractions", "hash_position", "held_out_counts", "split_items"]
