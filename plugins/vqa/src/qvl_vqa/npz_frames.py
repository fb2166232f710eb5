"""Reading chosen frames of a ``.npz`` trajectory (its ``frames`` array, [T, H, W, 3] uint8) without loading the rest.

Why not ``np.load``: on a ``.npz`` it decompresses and returns the whole array (``mmap_mode`` applies
to ``.npy`` files only), while a sample shows a few frames of a trajectory (at most
``task.max_frames``). So the zip directory and the ``.npy`` header are parsed once per file, the
file stays open, and a read takes only the asked rows: with real seeks into the file for a stored
member (``np.savez``), decompressing forward only as far as the last asked row for a deflated one
(``np.savez_compressed``). The header alone also gives a trajectory's shape when the table does not.
"""

from __future__ import annotations

import contextlib
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import attrs
from qvl.errors import UserError

FRAMES_MEMBER = "frames.npy"
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # a zip member's local file header (30 bytes)


@attrs.frozen
class _Layout:
    """Where the rows of one ``frames.npy`` are: in the raw file (stored member) or in the member."""

    shape: tuple[int, ...]
    offset: int  # stored: of the first row in the .npz file; compressed: in the uncompressed member
    stored: bool

    @property
    def frame_bytes(self) -> int:
        return self.shape[1] * self.shape[2] * self.shape[3]


def _read_layout(path: Path, archive: zipfile.ZipFile, fh: Any, where: str) -> _Layout:
    """Parse ``frames.npy``'s header (not its data) and check it holds [T, H, W, 3] uint8 frames."""
    import numpy as np
    from numpy.lib import format as npy

    names = archive.namelist()
    if FRAMES_MEMBER not in names:
        arrays = [n.removesuffix(".npy") for n in names]
        raise UserError(f"{path} ({where}): no 'frames' array; expected np.savez(..., frames=[T, H, W, 3] uint8), "
                        f"has {arrays}")
    info = archive.getinfo(FRAMES_MEMBER)
    stored = info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1
    try:
        start = 0
        if stored:  # the member's bytes lie as they are in the file: read them with real seeks
            fh.seek(info.header_offset)
            magic, *_, name_length, extra_length = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
            if magic != b"PK\x03\x04":
                raise ValueError("bad local file header")
            start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            fh.seek(start)
        with contextlib.nullcontext(fh) if stored else archive.open(FRAMES_MEMBER) as member:
            version = npy.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = npy.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = npy.read_array_header_2_0(member)
            else:
                raise ValueError(f"npy format version {version}; expected 1.0 or 2.0")
            header_end = member.tell() - start
    except (ValueError, OSError, EOFError, struct.error, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} ({where}): frames.npy is not a readable .npy array ({exc})") from None
    if len(shape) != 4 or shape[3] != 3 or dtype != np.uint8:
        raise UserError(f"{path} ({where}): 'frames' is {list(shape)} {dtype}; expected [T, H, W, 3] uint8")
    if fortran:
        raise UserError(f"{path} ({where}): 'frames' is stored in Fortran order; expected C order "
                        "(save np.ascontiguousarray(frames))")
    size = header_end + int(np.prod(shape))
    if info.file_size < size:
        raise UserError(f"{path} ({where}): frames.npy is truncated: {info.file_size} bytes, its header "
                        f"{list(shape)} needs {size}")
    return _Layout(shape=tuple(int(s) for s in shape), offset=start + header_end, stored=stored)


class OpenNpz:
    """One open .npz: the file, its zip directory and where its frames are."""

    def __init__(self, path: Path, where: str) -> None:
        if not path.is_file():
            raise UserError(f"{path} ({where}): no such .npz file")
        self.path = path
        self.fh = open(path, "rb")  # noqa: SIM115 - kept open in the store's LRU, closed on eviction
        try:
            self.archive = zipfile.ZipFile(self.fh)
            self.layout = _read_layout(path, self.archive, self.fh, where)
        except zipfile.BadZipFile as exc:
            self.fh.close()
            raise UserError(f"{path} ({where}): not a readable .npz (zip) file ({exc}); truncated or damaged?") \
                from None
        except BaseException:
            self.fh.close()
            raise

    def rows(self, wanted: list[int], where: str) -> dict[int, bytes]:
        """The bytes of each wanted frame, reading each once, in increasing order."""
        layout, size = self.layout, self.layout.frame_bytes
        rows = {}
        try:
            with contextlib.nullcontext(self.fh) if layout.stored else self.archive.open(FRAMES_MEMBER) as source:
                for i in sorted(set(wanted)):
                    # compressed: ZipExtFile.seek decompresses forward (and restarts to go back): sorted
                    source.seek(layout.offset + i * size)
                    data = source.read(size)
                    if len(data) != size:
                        raise UserError(f"{self.path} ({where}): short read of frame {i} ({len(data)} of {size} "
                                        "bytes); truncated or damaged .npz?")
                    rows[i] = data
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise UserError(f"{self.path} ({where}): cannot read frames ({type(exc).__name__}: {exc}); damaged "
                            ".npz?") from None
        return rows

    def close(self) -> None:
        self.archive.close()
        self.fh.close()

