"""Shared fixtures: hand-made episodes in the capture format (``capture`` fixture)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest


class CaptureFactory:
    """Writes tiny episodes with :func:`qvl_vla_flow.capture_format.write_episode`.

    Times are given in ms on the frame clock, relative to frame 0; they become QPC ticks from a
    base of ten hours of uptime. Events are given with ``at`` (frame-clock ms): their ``ts`` is
    written ``offset_ms`` earlier, as the input hook's clock runs behind, so an event lands in the
    frame ``at`` says only when the reader applies the offset.
    """

    FREQ = 10_000_000
    BASE = 36_000 * FREQ
    OFFSET_MS = 12.5
    SIZE = 32

    def __init__(self, root: Path) -> None:
        self.root = root

    def ticks(self, ms: float) -> int:
        return self.BASE + int(round(ms * self.FREQ / 1000.0))

    def absolute_ms(self, ms: float) -> float:
        """What the reader reports for frame-clock time ``ms`` (relative to frame 0)."""
        return self.ticks(ms) / self.FREQ * 1000.0

    @staticmethod
    def colour(i: int) -> tuple[int, int, int]:
        """A solid colour per frame index (red steps by 20: frames can be told apart after H.264)."""
        return (10 + 20 * (i % 12), 200 - 15 * (i % 12), (60 * i) % 256)

    def event(self, kind: str, at: float, offset_ms: float | None = None, **fields: Any) -> dict[str, Any]:
        offset = self.OFFSET_MS if offset_ms is None else offset_ms
        return {"ts": self.ticks(at - offset), "kind": kind, **fields}

    def key(self, kind: str, at: float, vk: int, offset_ms: float | None = None) -> dict[str, Any]:
        return self.event(kind, at, offset_ms, vk=vk)

    def write(self, name: str = "ep", frame_ms: Sequence[float] = (0, 100, 200, 300),
              events: Sequence[dict[str, Any]] = (), *, offset_ms: float | None = None,
              instruction: str | None = "go to the red box", size: int | None = None, root: Path | None = None,
              colours: Sequence[int] | None = None, **meta: Any) -> Path:
        """One episode folder ``root/name``; ``events`` are dicts with ``ts`` already set (see
        :meth:`event`); frame ``i`` is coloured :meth:`colour` ``(colours[i])`` (default ``i``)."""
        from qvl_vla_flow.capture_format import write_episode

        size = size or self.SIZE
        colours = list(range(len(frame_ms))) if colours is None else list(colours)
        frames = [np.full((size, size, 3), self.colour(c), np.uint8) for c in colours]
        record = {"fps": 10.0, "canvas_w": size, "canvas_h": size, "qpc_freq": self.FREQ,
                  "offset_ms": self.OFFSET_MS if offset_ms is None else offset_ms, **meta}
        if instruction is not None:
            record["instruction"] = instruction
        folder = (root or self.root) / name
        write_episode(folder, frames, [self.ticks(ms) for ms in frame_ms], list(events), record)
        return folder


@pytest.fixture
def capture(tmp_path: Path) -> CaptureFactory:
    """Writes episodes into ``tmp_path / "recordings"`` (see :class:`CaptureFactory`)."""
    return CaptureFactory(tmp_path / "recordings")
