"""What eval and predict write: metrics against the baselines, grasps as JSON, pictures."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qvl.data import digest, files_fingerprint, write_json
from qvl.report import EvalResult

from qvl_grasp.baselines import BASELINE_TITLES, BASELINES, baseline_grasp
from qvl_grasp.geometry import Grasp
from qvl_grasp.pictures import contact_sheet, draw_on_image
from qvl_grasp.readers import MASK_DIR, GraspDataError, read_split
from qvl_grasp.scoring import summarize

COLUMNS = (("success_rate", "success"), ("mean_iou", "mean IoU"), ("mean_angle_error_deg", "angle err (deg)"),
           ("mean_center_error_px", "centre err (px)"), ("invalid_rate", "invalid"))


def predicted_grasp(prediction: dict[str, Any]) -> Grasp | None:
    return Grasp(**prediction["grasp"]) if prediction.get("grasp") else None


def typical_sizes(config: Any, fallback: list[list[Grasp]]) -> tuple[float, float, str]:
    """Median opening and jaw size of the training rectangles (the baselines' sizes)."""
    from qvl_grasp.data import data_root

    try:
        records = read_split(config.task.data_format, data_root(config, create=False), "train",
                             config.task.split_files, split_ratios=config.task.split_ratios,
                             announce=False).records  # at every validation: not news
        grasps = [g for r in records for g in r.grasps]
        source = "train split"
    except GraspDataError:
        grasps, source = [g for gs in fallback for g in gs], "evaluated split (no train split found)"
    return statistics.median(g.w for g in grasps), statistics.median(g.h for g in grasps), source


MASK_FILES = {"ocid": f"<seq>/{MASK_DIR}/<image>", "jacquard": "<prefix>_mask.png"}
_ANNOUNCED: set[str] = set()


def baselines_skipped_reason(data_format: str, samples: list[Any]) -> str:
    """Why the mask baselines cannot run on these samples, naming the data format and its mask files."""
    if data_format not in MASK_FILES:
        return f"the {data_format} format has no object masks, and the baselines need them"
    missing = [sample["id"] for sample in samples if sample.get("mask_path") is None]
    return (f"{len(missing)} of {len(samples)} {data_format} images have no object mask file "
            f"({MASK_FILES[data_format]}), e.g. {missing[0]}; the baselines need one for every image")


def evaluate_predictions(config: Any, predictions: list[dict], samples: Sequence[Any], out_dir: Path) -> EvalResult:
    """The model's and the mask baselines' scores (the runner writes ``eval.json``, ``comparison.md``
    and ``comparison.png`` from them), and ``examples.png``: the first predictions drawn."""
    samples = [samples[i] for i in range(len(samples))]  # lazy: labels only, pixels on demand
    truths = []
    for sample in samples:
        if not sample["grasps"]:
            raise GraspDataError(f"{sample['id']}: no ground-truth grasp rectangles to evaluate against")
        truths.append(sample["grasps"])
    model = summarize([predicted_grasp(p) for p in predictions], truths)
    baselines: dict[str, Any] = {}
    if all(sample.get("mask_path") is not None for sample in samples):
        baselines = baseline_scores(config, samples, truths)  # and "sizes", which the table leaves out
    else:
        baselines["skipped"] = baselines_skipped_reason(config.task.data_format, samples)
        if baselines["skipped"] not in _ANNOUNCED:  # once, not at every validation of a training
            _ANNOUNCED.add(baselines["skipped"])
            print(f"qvl-grasp: baselines skipped: {baselines['skipped']}", file=sys.stderr)
    shown = samples[: config.task.eval_pictures]
    contact_sheet([draw_on_image(s["image"], predicted_grasp(p), s["grasps"], caption=s.get("instruction"))
                   for s, p in zip(shown, predictions)], out_dir / "examples.png")
    return EvalResult(model=model, baselines=baselines, columns=list(COLUMNS), titles=BASELINE_TITLES,
                      extra={"ensemble": config.task.ensemble.eval, "constrained": config.task.constrained})


BASELINE_VERSION = 2  # of the baselines' code: bump when a baseline changes (2: the target's mask, largest object)


def baseline_scores(config: Any, samples: list[Any], truths: list[list[Grasp]]) -> dict[str, Any]:
    """The mask baselines' scores on these samples, computed once per data set and kept in the cache.

    They depend on the masks, the labels, the seed and the typical grasp size, never on the model:
    recomputing them (and decoding every mask) at each eval cost as much as a third of a plain
    generation loop over the same images.
    """
    import attrs
    import numpy as np

    import qvl
    from qvl.build import build_directory

    opening, jaw, source = typical_sizes(config, truths)
    fingerprint = {"version": BASELINE_VERSION, "baselines": list(BASELINES), "seed": config.seed,
                   "sizes": [opening, jaw], "masks": files_fingerprint(s["mask_path"] for s in samples),
                   "labels": [[s["id"], s.get("target"), [attrs.astuple(g) for g in t]]
                              for s, t in zip(samples, truths)]}
    key = digest(fingerprint)

    def compute(out: Path) -> None:
        rng = np.random.default_rng(config.seed)
        scores: dict[str, Any] = {}
        for name in BASELINES:
            # only the no-oracle baseline reads every object's labels (a second decode of the mask file)
            guesses = [baseline_grasp(name, sample["mask"], rng, opening, jaw,
                                      labels=sample["labels"] if name == "largest_object" else None)
                       for sample in samples]
            scores[name] = summarize(guesses, truths)
        scores["sizes"] = {"opening_px": opening, "jaw_px": jaw, "from": source}
        (out / "baselines.json").write_text(json.dumps(scores, indent=1))

    folder = build_directory(qvl.cache_dir() / "grasp-baselines" / key, compute, kind="baselines",
                             fingerprint=fingerprint, hint="set another QVL_CACHE")
    return json.loads((folder / "baselines.json").read_text())


def write_grasps(config: Any, predictions: list[dict], samples: Sequence[Any], out_dir: Path) -> dict[str, Any]:
    """``grasps.json`` (pixels and degrees, with corners) and, with ``--save-vis``, one PNG per image."""
    rows = [{"image": p["id"], **({"instruction": p["instruction"]} if p.get("instruction") else {}),
             "grasp": p["grasp"], "corners": p["corners"], "valid": p["valid"]} for p in predictions]
    write_json(out_dir / "grasps.json", rows, indent=2)
    pictures = 0
    if config.predict.save_vis:
        vis = out_dir / "vis"
        vis.mkdir(exist_ok=True)
        for sample, prediction in zip(samples, predictions):
            name = Path(str(sample["id"]).replace("/", "__")).stem + ".png"
            draw_on_image(sample["image"], predicted_grasp(prediction), sample.get("grasps") or (),
                          caption=sample.get("instruction")).save(vis / name)
            pictures += 1
    return {"images": len(rows), "valid": sum(r["valid"] for r in rows), "ensemble": config.task.ensemble.predict,
            "grasps": str(out_dir / "grasps.json"), "pictures": pictures}
