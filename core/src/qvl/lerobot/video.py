"""LeRobot videos: decoding a frame at a timestamp, and encoding frames as H.264, with PyAV.

Frames are decoded as LeRobot's ``pyav`` backend does: seek to the keyframe at or before the
timestamp, decode forward, keep the frame closest to it, and fail when none lies within the
tolerance (half a frame period here; a damaged or truncated file shows up as a missing frame).
Encoding uses a keyframe every 2 frames (LeRobot's ``g=2``) so random access decodes at most one
extra frame.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qvl.lerobot.layout import LeRobotFormatError


class VideoReader:
    """Frames at timestamps from video files; keeps a few containers open (random access reuses them)."""

    def __init__(self, fps: float, keep_open: int = 8) -> None:
        self.tolerance = 0.5 / fps + 1e-4
        self.keep_open = keep_open
        self._open: OrderedDict[Path, Any] = OrderedDict()

    def _container(self, path: Path) -> Any:
        import av

        if path not in self._open:
            if not path.is_file():
                raise LeRobotFormatError(f"{path}: missing video file")
            try:
                self._open[path] = av.open(str(path))
            except av.FFmpegError as exc:
                raise LeRobotFormatError(f"{path}: not a readable video ({exc})") from None
            while len(self._open) > self.keep_open:
                self._open.popitem(last=False)[1].close()
        return self._open[path]

    def frame(self, path: Path, timestamp: float) -> Any:
        """The RGB frame (PIL image) shown at ``timestamp`` seconds into the file."""
        import av

        path = Path(path)
        container = self._container(path)
        best, best_gap = None, float("inf")
        try:
            stream = container.streams.video[0]
            container.seek(max(0, int(timestamp / stream.time_base)), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                gap = abs(float(frame.pts * stream.time_base) - timestamp)
                if gap < best_gap:
                    best, best_gap = frame, gap
                if float(frame.pts * stream.time_base) > timestamp + self.tolerance:
                    break
            image = None if best is None or best_gap > self.tolerance else best.to_image()
        except (av.FFmpegError, IndexError) as exc:
            self._drop(path)
            raise LeRobotFormatError(f"{path}: cannot decode at t={timestamp:.3f} s ({exc})") from None
        if image is None:
            found = "no frame" if best is None else f"nearest frame {best_gap:.3f} s away"
            raise LeRobotFormatError(f"{path}: no frame at t={timestamp:.3f} s ({found}; tolerance "
                                     f"{self.tolerance:.3f} s); truncated or damaged video?")
        return image

    def _drop(self, path: Path) -> None:
        container = self._open.pop(path, None)
        if container is not None:
            container.close()

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


def encode_video(path: Path, frames: Sequence[Any], fps: float) -> None:
    """Write ``frames`` (H x W x 3 uint8 arrays) as an H.264 mp4 at ``fps``, keyframe every 2 frames.

    yuv420p needs even sizes; an odd width or height is refused here rather than by the encoder,
    whose error would not say which file.
    """
    import av

    path = Path(path)
    height, width = frames[0].shape[:2]
    if height % 2 or width % 2:
        raise LeRobotFormatError(f"{path}: frames are {width}x{height}; H.264 (yuv420p) needs an even width "
                                 "and height")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 2
        stream.options = {"crf": "18", "preset": "veryfast"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
