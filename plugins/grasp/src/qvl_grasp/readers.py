"""Readers of the public grasp data sets' on-disk formats, and the lazily loading dataset.

* **OCID-Grasp** (Ainetter & Fraundorfer, ICRA 2021): ``<seq>/rgb/<image>.png``,
  ``<seq>/Annotations/<stem>.txt`` (one ``x y`` corner per line, four lines per rectangle),
  ``<seq>/seg_mask_labeled_combi/<image>.png`` (object labels, 0 = background) and split files
  ``data_split/<name>.txt`` of ``seq_path,image_name`` lines.
* **Cornell**: ``pcdXXXXr.png`` beside ``pcdXXXXcpos.txt`` (the same corner format). Its files
  have rectangles with NaN corners; those are skipped, as every Cornell loader does.
* **Jacquard**: ``<prefix>_RGB.png``, ``<prefix>_grasps.txt`` (``x;y;theta;w;h``, theta clockwise
  as seen, so it is negated here) and ``<prefix>_mask.png``.

Cornell and Jacquard have no official split; images are assigned by a hash of their id (80/10/10),
which keeps the split stable when files are added.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from qvl import UserError

from qvl_grasp.geometry import Grasp

RGB_DIR, ANNOTATION_DIR, MASK_DIR = "rgb", "Annotations", "seg_mask_labeled_combi"


class GraspDataError(UserError, ValueError):
    """Bad grasp data; the message names the file (and line) and what was expected."""


@attrs.frozen
class GraspRecord:
    id: str
    image_path: Path
    grasps: tuple[Grasp, ...]
    mask_path: Path | None = None


def read_corner_file(path: Path, *, skip_nan: bool = False) -> list[Grasp]:
    """Rectangles of a Cornell / OCID-Grasp annotation file: ``x y`` per line, 4 lines each.

    :param skip_nan: drop rectangles with a NaN corner (Cornell's files have some) instead of
        failing on them.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraspDataError(f"{path}: cannot read the annotation file ({exc.strerror or exc})") from None
    corners: list[tuple[int, float, float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise GraspDataError(f"{path}, line {number}: expected one corner 'x y' (two numbers), "
                                 f"got {line.strip()!r}") from None
        corners.append((number, x, y))
    if len(corners) % 4:
        first_incomplete = corners[len(corners) - len(corners) % 4][0]
        raise GraspDataError(f"{path}, line {first_incomplete}: incomplete rectangle; {len(corners)} corner lines "
                             "is not a multiple of 4 (each rectangle is 4 'x y' lines)")
    grasps = []
    for start in range(0, len(corners), 4):
        rect = corners[start : start + 4]
        bad = next((n for n, x, y in rect if math.isnan(x) or math.isnan(y)), None)
        if bad is not None:
            if skip_nan:
                continue
            raise GraspDataError(f"{path}, line {bad}: NaN corner in the rectangle of lines "
                                 f"{rect[0][0]}-{rect[-1][0]}; expected finite pixel coordinates")
        grasps.append(Grasp.from_corners([(x, y) for _, x, y in rect]))
    return grasps


def _require_file(path: Path, what: str, where: str) -> Path:
    if not path.is_file():
        raise GraspDataError(f"{where}: {what} {path} does not exist")
    return path


def read_ocid(root: Path, split_file: str) -> list[GraspRecord]:
    """The images listed in ``root/data_split/<split_file>`` with their rectangles and masks."""
    split_path = root / "data_split" / split_file
    if not split_path.is_file():
        available = sorted(p.name for p in (root / "data_split").glob("*.txt"))
        raise GraspDataError(f"{split_path}: no such OCID-Grasp split file"
                             + (f"; available: {', '.join(available)}" if available else
                                f" (is {root} an OCID-Grasp root with a data_split/ folder?)"))
    records = []
    for number, line in enumerate(split_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or not all(parts):
            raise GraspDataError(f"{split_path}, line {number}: expected 'seq_path,image_name', got {line!r}")
        seq, name = parts
        where = f"{split_path}, line {number}"
        image = _require_file(root / seq / RGB_DIR / name, "image", where)
        annotation = _require_file(root / seq / ANNOTATION_DIR / (Path(name).stem + ".txt"), "annotation", where)
        mask = root / seq / MASK_DIR / name
        records.append(GraspRecord(id=f"{seq}/{name}", image_path=image, grasps=tuple(read_corner_file(annotation)),
                                   mask_path=mask if mask.is_file() else None))
    return records


def hash_split(record_id: str) -> str:
    bucket = zlib.crc32(record_id.encode()) % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


def read_cornell(root: Path, split: str) -> list[GraspRecord]:
    records = []
    for annotation in sorted(root.rglob("pcd*cpos.txt")):
        record_id = str(annotation.relative_to(root)).removesuffix("cpos.txt")
        if hash_split(record_id) != split:
            continue
        image = _require_file(annotation.with_name(annotation.name.replace("cpos.txt", "r.png")), "image",
                              str(annotation))
        records.append(GraspRecord(id=record_id, image_path=image,
                                   grasps=tuple(read_corner_file(annotation, skip_nan=True))))
    return records


def read_jacquard_file(path: Path) -> list[Grasp]:
    grasps = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            x, y, theta, w, h = (float(v) for v in line.split(";"))
        except ValueError:
            raise GraspDataError(f"{path}, line {number}: expected 'x;y;theta;w;h' (five numbers), "
                                 f"got {line.strip()!r}") from None
        if any(math.isnan(v) for v in (x, y, theta, w, h)):
            raise GraspDataError(f"{path}, line {number}: NaN in {line.strip()!r}")
        grasps.append(Grasp(cx=x, cy=y, theta=-theta, w=w, h=h).folded())
    return grasps


def read_jacquard(root: Path, split: str) -> list[GraspRecord]:
    records = []
    for annotation in sorted(root.rglob("*_grasps.txt")):
        prefix = annotation.name.removesuffix("_grasps.txt")
        record_id = str(annotation.relative_to(root).parent / prefix)
        if hash_split(record_id) != split:
            continue
        image = _require_file(annotation.with_name(prefix + "_RGB.png"), "image", str(annotation))
        mask = annotation.with_name(prefix + "_mask.png")
        records.append(GraspRecord(id=record_id, image_path=image, grasps=tuple(read_jacquard_file(annotation)),
                                   mask_path=mask if mask.is_file() else None))
    return records


def load_image(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise GraspDataError(f"{path}: not a readable image ({exc})") from None


def load_mask(path: Path) -> Any:
    """Object mask as a boolean array (any non-zero label is an object)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image) != 0 if image.mode in ("L", "I", "I;16", "1", "P") else \
                np.asarray(image.convert("L")) != 0
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise GraspDataError(f"{path}: not a readable mask image ({exc})") from None


class LazySample(Mapping):
    """A sample whose image and mask are decoded when first read, not when it is indexed.

    Evaluation reads the labels of every sample but the pixels of only a few (the pictures), and
    the baselines read masks only when their cached scores are missing.
    """

    def __init__(self, values: dict[str, Any], **loaders: Callable[[], Any]) -> None:
        self._values = dict(values)
        self._loaders = loaders

    def __getitem__(self, key: str) -> Any:
        if key not in self._values and key in self._loaders:
            self._values[key] = self._loaders[key]()
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self._values), **dict.fromkeys(self._loaders)})

    def __len__(self) -> int:
        return len(set(self._values) | set(self._loaders))


class GraspDataset(Sequence):
    """Records whose images (and masks) are read when a sample is accessed.

    ``with_masks=False`` skips the object masks, which only evaluation's baselines read: decoding
    a second PNG per sample is wasted in training.
    """

    def __init__(self, records: Sequence[GraspRecord], with_masks: bool = True) -> None:
        self.records = list(records)
        self.with_masks = with_masks

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> LazySample:  # type: ignore[override]
        record = self.records[index]
        mask_path = record.mask_path if self.with_masks else None
        return LazySample({"id": record.id, "grasps": list(record.grasps), "mask_path": mask_path},
                          image=lambda: load_image(record.image_path),
                          mask=lambda: load_mask(mask_path) if mask_path is not None else None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


def read_split(data_format: str, root: Path, split: str, split_files: dict[str, str],
               with_masks: bool = True) -> GraspDataset:
    """One split of a data set in ``data_format`` (``ocid``, ``cornell`` or ``jacquard``)."""
    if not root.is_dir():
        raise GraspDataError(f"task.data_dir = {str(root)!r}: no such folder")
    if data_format == "ocid":
        if split not in split_files:
            raise GraspDataError(f"task.split_files has no entry for split {split!r} (has {sorted(split_files)})")
        records = read_ocid(root, split_files[split])
    elif data_format == "cornell":
        records = read_cornell(root, split)
    elif data_format == "jacquard":
        records = read_jacquard(root, split)
    else:
        raise GraspDataError(f"task.data_format = {data_format!r}; expected 'ocid', 'cornell' or 'jacquard'")
    if not records:
        raise GraspDataError(f"{root}: no {data_format} images in split {split!r}")
    return GraspDataset(records, with_masks=with_masks)
