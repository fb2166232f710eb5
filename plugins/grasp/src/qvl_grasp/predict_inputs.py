"""Images given to ``predict`` (``predict.input``: one file or a folder), with what lies beside
them: ground-truth rectangles in a known data set's layout, and the object an instruction names.

Cornell ``pcdXXXXr.png`` -> ``pcdXXXXcpos.txt``; Jacquard ``<prefix>_RGB.png`` ->
``<prefix>_grasps.txt``; OCID-Grasp ``<seq>/rgb/<image>`` -> ``<seq>/Annotations/<stem>.txt`` and,
when present, ``<seq>/objects/<stem>.json`` (the target object, and only its rectangles count).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from qvl.data import image_files

from qvl_grasp.geometry import Grasp
from qvl_grasp.readers import (ANNOTATION_DIR, RGB_DIR, GraspDataError, GraspRecord, load_image, ocid_record,
                               read_corner_file, read_jacquard_file)

def predict_samples(path: Path, target: str = "") -> list[dict[str, Any]]:
    """``predict.input``'s images as samples, with any ground truth and instruction found beside them."""
    return with_ground_truth(image_inputs(path), path, target)


def image_inputs(path: Path) -> list[dict[str, Any]]:
    """Samples for ``predict.input``: one image, or every image of a folder."""
    files = image_files(path, what=f"predict.input = {str(path)!r}", error=GraspDataError)
    return [{"id": file.name, "image": load_image(file), "grasps": None, "mask": None} for file in files]


def annotation_beside(image_path: Path) -> list[Grasp] | None:
    """The ground truth of an image file laid out as in a known data set, or None when it has none.

    Cornell ``pcdXXXXr.png`` -> ``pcdXXXXcpos.txt``; Jacquard ``<prefix>_RGB.png`` ->
    ``<prefix>_grasps.txt``; OCID-Grasp ``<seq>/rgb/<image>`` -> ``<seq>/Annotations/<stem>.txt``
    (the named target's rectangles only, when an objects/ file names one).
    """
    name = image_path.name
    if name.startswith("pcd") and name.endswith("r.png"):
        annotation = image_path.with_name(name.removesuffix("r.png") + "cpos.txt")
        return read_corner_file(annotation, skip_nan=True) if annotation.is_file() else None
    if name.endswith("_RGB.png"):
        annotation = image_path.with_name(name.removesuffix("_RGB.png") + "_grasps.txt")
        return read_jacquard_file(annotation) if annotation.is_file() else None
    record = _ocid_record_beside(image_path)
    return list(record.target_grasps) if record is not None else None


def _ocid_record_beside(image_path: Path) -> GraspRecord | None:
    if image_path.parent.name != RGB_DIR:
        return None
    if not (image_path.parent.parent / ANNOTATION_DIR / (image_path.stem + ".txt")).is_file():
        return None
    return ocid_record(image_path, image_path.name, f"predict input {image_path}")


def with_ground_truth(samples: list[dict[str, Any]], input_path: Path, target: str = "") -> list[dict[str, Any]]:
    """Predict inputs (``id`` = file name) with ``grasps`` read from any annotation beside their file,
    and each one's instruction: the target its objects/ file names, else ``target`` (``"red mug"``)."""
    from qvl_grasp.prompting import object_instruction

    annotated = named = 0
    for sample in samples:
        file = input_path if input_path.is_file() else input_path / sample["id"]
        record = _ocid_record_beside(file)
        truths = list(record.target_grasps) if record is not None else annotation_beside(file)
        if truths:
            sample["grasps"] = truths
            annotated += 1
        if record is not None and record.instruction:
            sample["instruction"] = record.instruction
            named += 1
        elif target:
            sample["instruction"] = object_instruction(target)
    if annotated:
        print(f"qvl-grasp: ground-truth rectangles found beside {annotated} of {len(samples)} input images; "
              "--save-vis draws them with the prediction", file=sys.stderr)
    if named:
        print(f"qvl-grasp: {named} of {len(samples)} input images name their target object in an objects/ file"
              + (f"; the others get task.predict_target = {target!r}" if target and named < len(samples) else ""),
              file=sys.stderr)
    return samples
