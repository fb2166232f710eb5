"""Readers of the public grasp data sets' on-disk formats, and the lazily loading dataset.

* **OCID-Grasp** (Ainetter & Fraundorfer, ICRA 2021): ``<seq>/rgb/<image>.png``,
  ``<seq>/Annotations/<stem>.txt`` (one ``x y`` corner per line, four lines per rectangle),
  ``<seq>/seg_mask_labeled_combi/<image>.png`` (object labels, 0 = background) and split files
  ``data_split/<name>.txt`` of ``seq_path,image_name`` lines. Each rectangle is tied to the object
  under its centre in the labelled mask. An optional ``<seq>/objects/<stem>.json`` (the synthetic
  scenes write it; real OCID-Grasp has none) names the objects and the target: the sample's ground
  truth is then the target's rectangles, and its instruction "Grasp the red mug.".
* **Cornell**: ``pcdXXXXr.png`` beside ``pcdXXXXcpos.txt`` (the same corner format). Its files
  have rectangles with NaN corners; those are skipped, as every Cornell loader does.
* **Jacquard**: ``<prefix>_RGB.png``, ``<prefix>_grasps.txt`` (``x;y;theta;w;h``, theta clockwise
  as seen, so it is negated here) and ``<prefix>_mask.png``.

Cornell and Jacquard have no official split; images are assigned by a hash of their id in the shares
of ``task.split_ratios`` (80/10/10 by default), which keeps the split stable when files are added.

``read_split`` prints one line per split read: how many images and rectangles, and what it skipped.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from qvl import UserError
from qvl.data import assign_split, load_rgb

from qvl_grasp.geometry import Grasp

RGB_DIR, ANNOTATION_DIR, MASK_DIR = "rgb", "Annotations", "seg_mask_labeled_combi"
OBJECTS_DIR = "objects"  # not OCID-Grasp's: the synthetic scenes' object names and target


class GraspDataError(UserError, ValueError):
    """Bad grasp data; the message names the file (and line) and what was expected."""


@attrs.frozen
class GraspRecord:
    id: str
    image_path: Path
    grasps: tuple[Grasp, ...]  # every rectangle of the image
    mask_path: Path | None = None
    # OCID: the label under each rectangle's centre in the labelled mask (None: on the table); empty
    # without a mask
    grasp_objects: tuple[int | None, ...] = ()
    # from an objects/ file (the synthetic scenes): label -> "red mug", and the label asked for
    object_names: tuple[tuple[int, str], ...] = ()
    target: int | None = None

    @property
    def target_grasps(self) -> tuple[Grasp, ...]:
        """The rectangles that count: the target object's, or all of them when no object is named."""
        if self.target is None:
            return self.grasps
        return tuple(g for g, label in zip(self.grasps, self.grasp_objects) if label == self.target)

    @property
    def instruction(self) -> str | None:
        """``"Grasp the red mug."`` when the data names a target; None: the task's generic instruction."""
        if self.target is None:
            return None
        from qvl_grasp.prompting import object_instruction

        return object_instruction(dict(self.object_names)[self.target])


def counted(count: int, noun: str) -> str:
    """``"1 image"``, ``"5,110 rectangles"``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


@attrs.define
class SkipLog:
    """What a reader left out, by reason, and the files it came from: the read note names them."""

    counts: dict[tuple[str, str], int] = attrs.Factory(dict)
    files: dict[tuple[str, str], list[str]] = attrs.Factory(dict)

    def add(self, noun: str, why: str, file: Path) -> None:
        """One ``noun`` (``"rectangle"``, ``"image"``) skipped ``why`` (``"with NaN corners"``)."""
        reason = (noun, why)
        self.counts[reason] = self.counts.get(reason, 0) + 1
        names = self.files.setdefault(reason, [])
        if file.name not in names:
            names.append(file.name)

    def describe(self, files_shown: int = 3) -> str:
        """``"skipped 12 rectangles with NaN corners (a.txt, b.txt, c.txt and 4 more)"``, or ``""``."""
        parts = []
        for (noun, why), count in self.counts.items():
            names = self.files[(noun, why)]
            listed = ", ".join(names[:files_shown])
            if len(names) > files_shown:
                listed += f" and {len(names) - files_shown} more"
            parts.append(f"{counted(count, noun)} {why} ({listed})")
        return "skipped " + "; ".join(parts) if parts else ""


def read_corner_file(path: Path, *, skip_nan: bool = False, skipped: SkipLog | None = None) -> list[Grasp]:
    """Rectangles of a Cornell / OCID-Grasp annotation file: ``x y`` per line, 4 lines each.

    :param skip_nan: drop rectangles with a NaN corner (Cornell's files have some) instead of
        failing on them.
    :param skipped: where each dropped rectangle is logged, for the read note.
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
                if skipped is not None:
                    skipped.add("rectangle", "with NaN corners", path)
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
        records.append(ocid_record(image, f"{seq}/{name}", where))
    return records


def ocid_record(image: Path, record_id: str, where: str) -> GraspRecord:
    """One image of an OCID-Grasp sequence (``<seq>/rgb/<name>``): its rectangles, and its labelled
    mask and objects/ file when they exist. ``where`` names what listed the image, for errors."""
    seq_dir, name = image.parent.parent, image.name
    annotation = _require_file(seq_dir / ANNOTATION_DIR / (image.stem + ".txt"), "annotation", where)
    mask = seq_dir / MASK_DIR / name
    mask_path = mask if mask.is_file() else None
    grasps = tuple(read_corner_file(annotation))
    # each rectangle belongs to the object under its centre, so an instruction can name it
    tied = objects_under(grasps, load_labels(mask_path)) if mask_path is not None else ()
    names: dict[int, str] = {}
    target = None
    sidecar = seq_dir / OBJECTS_DIR / (image.stem + ".json")
    if sidecar.is_file():
        if mask_path is None:
            raise GraspDataError(f"{sidecar}: names objects by their label in the labelled mask, but "
                                 f"{mask} does not exist")
        names, target = read_object_file(sidecar)
        if target is not None and target not in tied:
            raise GraspDataError(f"{annotation}: no rectangle's centre lies on the target object (label "
                                 f"{target} in {mask}, named in {sidecar}); expected at least one")
    return GraspRecord(id=record_id, image_path=image, grasps=grasps, mask_path=mask_path, grasp_objects=tied,
                       object_names=tuple(sorted(names.items())), target=target)


OBJECT_FILE_LAYOUT = '{"objects": {"<label>": {"colour": "red", "shape": "mug"}, ...}, "target": <label>}'


def read_object_file(path: Path) -> tuple[dict[int, str], int | None]:
    """An ``objects/<stem>.json`` file: each label's name (``"red mug"``) and the target's label (or None)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GraspDataError(f"{path}: cannot read the object file ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise GraspDataError(f"{path}, line {exc.lineno}: not JSON ({exc.msg}); expected {OBJECT_FILE_LAYOUT}") \
            from None
    objects = data.get("objects") if isinstance(data, dict) else None
    if not isinstance(objects, dict) or not objects:
        raise GraspDataError(f"{path}: no 'objects'; expected {OBJECT_FILE_LAYOUT}")
    names = {}
    for label, entry in objects.items():
        if not (label.isdigit() and int(label) > 0 and isinstance(entry, dict)
                and all(isinstance(entry.get(k), str) and entry[k] for k in ("colour", "shape"))):
            raise GraspDataError(f"{path}: object {label!r}: {entry!r}; expected a label above 0 and "
                                 '{"colour": ..., "shape": ...}')
        names[int(label)] = f"{entry['colour']} {entry['shape']}"
    target = data.get("target")
    if target is not None and (type(target) is not int or target not in names):
        raise GraspDataError(f"{path}: target {target!r} is none of the objects' labels ({sorted(names)})")
    return names, target


def objects_under(grasps: Sequence[Grasp], labels: Any) -> tuple[int | None, ...]:
    """The label under each rectangle's centre; None on the table (label 0) or outside the image."""
    height, width = labels.shape[:2]
    tied = []
    for grasp in grasps:
        x, y = math.floor(grasp.cx), math.floor(grasp.cy)
        label = int(labels[y, x]) if 0 <= x < width and 0 <= y < height else 0
        tied.append(label or None)
    return tuple(tied)


HASH_SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_RATIOS = (0.8, 0.1, 0.1)


def hash_split(record_id: str, ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS) -> str:
    """``train``, ``val`` or ``test`` by a hash of the id, in the shares ``ratios``.

    :func:`qvl.data.assign_split`'s 100 buckets (shares resolve to whole percents) from train
    upwards, as grasp always split: the default 80/10/10 puts every image where earlier versions did.
    """
    return assign_split(record_id, dict(zip(HASH_SPLITS, ratios)), order=HASH_SPLITS, method="crc32-percent")


def _annotations_of_split(root: Path, pattern: str, record_id: Callable[[Path], str], data_format: str,
                          split: str, ratios: Sequence[float]) -> list[tuple[str, Path]]:
    """``(id, annotation file)`` of the images that ``split`` gets; a set too small for it is an error."""
    if split not in HASH_SPLITS:
        raise GraspDataError(f"split {split!r}: a {data_format} set is split into 'train', 'val' and 'test' "
                             "(by task.split_ratios)")
    annotations = sorted(root.rglob(pattern))
    if not annotations:
        raise GraspDataError(f"task.data_dir = {str(root)!r}: no {data_format} annotation files ({pattern}) "
                             f"in it; is task.data_format = {data_format!r} right?")
    chosen = [(record_id(a), a) for a in annotations if hash_split(record_id(a), ratios) == split]
    if not chosen:
        share = ratios[HASH_SPLITS.index(split)]
        why = (f"task.split_ratios = {list(ratios)} gives split {split!r} no share" if share == 0 else
               f"{counted(len(annotations), 'image')}, too few for task.split_ratios = {list(ratios)} "
               f"(train/val/test shares, assigned by a hash of each image's name) to give split {split!r} any")
        raise GraspDataError(f"task.data_dir = {str(root)!r}: {why}; add images, or set task.split_ratios "
                             "to give it a larger share (e.g. --set 'task.split_ratios=[0.6, 0.2, 0.2]')")
    return chosen


def read_cornell(root: Path, split: str, ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
                 skipped: SkipLog | None = None) -> list[GraspRecord]:
    """Cornell's images of ``split``; rectangles with NaN corners, and images left with none, are skipped."""
    skipped = skipped if skipped is not None else SkipLog()
    records = []
    chosen = _annotations_of_split(root, "pcd*cpos.txt",
                                   lambda a: str(a.relative_to(root)).removesuffix("cpos.txt"), "cornell", split,
                                   ratios)
    for record_id, annotation in chosen:
        image = _require_file(annotation.with_name(annotation.name.replace("cpos.txt", "r.png")), "image",
                              str(annotation))
        grasps = read_corner_file(annotation, skip_nan=True, skipped=skipped)
        if not grasps:  # training and scoring both need a rectangle
            skipped.add("image", "with no usable rectangle", annotation)
            continue
        records.append(GraspRecord(id=record_id, image_path=image, grasps=tuple(grasps)))
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


def read_jacquard(root: Path, split: str, ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
                  skipped: SkipLog | None = None) -> list[GraspRecord]:
    """Jacquard's images of ``split``; images whose grasp file is empty are skipped."""
    skipped = skipped if skipped is not None else SkipLog()
    records = []
    chosen = _annotations_of_split(
        root, "*_grasps.txt", lambda a: str(a.relative_to(root).parent / a.name.removesuffix("_grasps.txt")),
        "jacquard", split, ratios)
    for record_id, annotation in chosen:
        prefix = annotation.name.removesuffix("_grasps.txt")
        image = _require_file(annotation.with_name(prefix + "_RGB.png"), "image", str(annotation))
        grasps = read_jacquard_file(annotation)
        if not grasps:  # training and scoring both need a rectangle
            skipped.add("image", "with no usable rectangle", annotation)
            continue
        mask = annotation.with_name(prefix + "_mask.png")
        records.append(GraspRecord(id=record_id, image_path=image, grasps=tuple(grasps),
                                   mask_path=mask if mask.is_file() else None))
    return records


def load_image(path: Path) -> Any:
    return load_rgb(path, GraspDataError)


def load_labels(path: Path) -> Any:
    """The labelled mask as an integer array: 0 the background, each object its own label."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image) if image.mode in ("L", "I", "I;16", "1", "P") else \
                np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise GraspDataError(f"{path}: not a readable mask image ({exc})") from None


def load_mask(path: Path, label: int | None = None) -> Any:
    """One object's mask as a boolean array: label ``label``, or any object when it is None."""
    labels = load_labels(path)
    return labels != 0 if label is None else labels == label


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
        # "grasps" are the rectangles that count (the target's); "mask" is the target's (the baselines'
        # oracle), "labels" every object's
        return LazySample({"id": record.id, "grasps": list(record.target_grasps), "instruction": record.instruction,
                           "target": record.target, "mask_path": mask_path},
                          image=lambda: load_image(record.image_path),
                          mask=lambda: load_mask(mask_path, record.target) if mask_path is not None else None,
                          labels=lambda: load_labels(mask_path) if mask_path is not None else None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


def read_split(data_format: str, root: Path, split: str, split_files: dict[str, str],
               with_masks: bool = True, split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
               announce: bool = True) -> GraspDataset:
    """One split of a data set in ``data_format`` (``ocid``, ``cornell`` or ``jacquard``).

    With ``announce``, prints one line to stderr: the images and rectangles read, and what was
    skipped and why.
    ``split_ratios`` (train/val/test shares) assigns Cornell and Jacquard images, which have no
    official split.
    """
    skipped = SkipLog()
    if not root.is_dir():
        raise GraspDataError(f"task.data_dir = {str(root)!r}: no such folder")
    if data_format == "ocid":
        if split not in split_files:
            raise GraspDataError(f"task.split_files has no entry for split {split!r} (has {sorted(split_files)})")
        records = read_ocid(root, split_files[split])
    elif data_format == "cornell":
        records = read_cornell(root, split, split_ratios, skipped)
    elif data_format == "jacquard":
        records = read_jacquard(root, split, split_ratios, skipped)
    else:
        raise GraspDataError(f"task.data_format = {data_format!r}; expected 'ocid', 'cornell' or 'jacquard'")
    if not records:
        raise GraspDataError(f"{root}: no {data_format} images in split {split!r}"
                             + (f" ({skipped.describe()})" if skipped.counts else ""))
    rectangles = sum(len(r.grasps) for r in records)
    note = f"qvl-grasp: grasp data ({data_format}, {split}): {counted(len(records), 'image')}, " \
           f"{counted(rectangles, 'rectangle')}"
    if announce:
        print(note + (f"; {skipped.describe()}" if skipped.counts else ""), file=sys.stderr)
    return GraspDataset(records, with_masks=with_masks)
