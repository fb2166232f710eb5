"""The samples protocol: what ``build_dataset`` returns and what ``evaluate`` gets back (hook API 4).

A split is a map-style sequence of sample dicts (``len`` and integer indexing, read on access so a
split of videos need not sit in memory) plus, optionally, what scoring needs to know about the split
as a whole (its episodes, the label list, the training split's statistics): ``info``. The core hands
``info`` to ``evaluate`` and ``report_predictions`` as an argument of its own, also when it scores
only the first samples of a split (validation during training), so nothing reaches a task through
attributes forwarded from a wrapper.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

Info = TypeVar("Info")


class Samples(Sequence, Generic[Info]):
    """The samples of one split and the split's ``info``.

    :param items: the samples: anything with ``len`` and integer indexing (a list, or a lazy
        sequence that reads each sample from disk when it is indexed).
    :param info: what ``evaluate`` / ``report_predictions`` need about the whole split, typed as the
        task likes (an attrs class is a good choice); ``None`` when they need nothing.
    :param limit: expose only the first ``limit`` items (see :meth:`first`).
    """

    def __init__(self, items: Sequence[Any], info: Info | None = None, limit: int | None = None) -> None:
        self.items = items
        self.info = info
        self._length = len(items) if limit is None else min(limit, len(items))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        if not -self._length <= index < self._length:
            raise IndexError(index)
        return self.items[index % self._length]

    def __iter__(self) -> Iterator[Any]:
        return (self.items[i] for i in range(self._length))

    def first(self, limit: int) -> Samples[Info]:
        """The first ``limit`` samples, with the same ``info`` (the whole split's)."""
        return Samples(self.items, self.info, min(limit, self._length))

    def __repr__(self) -> str:
        return f"Samples({self._length} items, info={type(self.info).__name__})"


def info_of(data: Sequence[Any]) -> Any:
    """``data.info`` for :class:`Samples`, else ``None`` (a plain list of sample dicts)."""
    return data.info if isinstance(data, Samples) else None
