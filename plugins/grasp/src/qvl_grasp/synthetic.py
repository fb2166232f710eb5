"""The embedded default data: a synthetic data set written in the OCID-Grasp layout.

Each scene is one object (a bar, an ellipse or a capsule; random size, colour and orientation,
with a soft shadow) on a textured table (wood grain or tiles), near the middle of the view
(``position_jitter``). Its grasps run across the object's
long axis at five places along it, the central one first; the opening is 1.3 times the local
thickness and the jaws 0.45 times it. Everything is written exactly as OCID-Grasp stores it
(``rgb/``, ``Annotations/``, ``seg_mask_labeled_combi/``, ``data_split/``), so the real reader
reads it, and the same seed gives the same files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs

from qvl_grasp.geometry import Grasp
from qvl_grasp.readers import ANNOTATION_DIR, MASK_DIR, RGB_DIR

SHAPES = ("bar", "ellipse", "capsule")
SPLIT_FILES = {"train": "training_0.txt", "val": "validation_0.txt", "test": "test_0.txt"}
IMAGES_PER_SEQUENCE = 50
GRASP_POSITIONS = (0.0, -0.15, 0.15, -0.3, 0.3)  # along the long axis, as a fraction of the length


@attrs.frozen
class SceneSpec:
    width: int = 640
    height: int = 480
    train: int = 800
    val: int = 100
    test: int = 100
    seed: int = 0
    position_jitter: float = 0.12  # object centre: image centre +- this fraction of the image size
    orientations: int = 0  # object axes every 180/n degrees (+-2); 0: any angle

    def key(self) -> str:
        return (f"ocid-synthetic-v5-{self.width}x{self.height}-{self.train}-{self.val}-{self.test}"
                f"-j{self.position_jitter:g}-o{self.orientations}-s{self.seed}")


def _table(rng: Any, width: int, height: int) -> Any:
    import numpy as np
    from PIL import Image

    # tables are neutral (greys, beiges, browns); objects are saturated, as in OCID's scenes
    grey = rng.uniform(70, 190)
    base = np.clip(grey + rng.uniform(-1, 1) * np.array([18.0, 6.0, -14.0]), 0, 255)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.random() < 0.5:  # wood grain: stripes along a random direction, wobbling
        a = rng.uniform(0, math.pi)
        u = xs * math.cos(a) + ys * math.sin(a)
        v = -xs * math.sin(a) + ys * math.cos(a)
        grain = np.sin(u / rng.uniform(6, 14) + 2.0 * np.sin(v / rng.uniform(40, 90)))
        shade = 1.0 + 0.08 * grain
    else:  # tiles
        tile = rng.uniform(60, 140)
        grout = ((xs % tile) < 3) | ((ys % tile) < 3)
        shade = np.where(grout, 0.7, 1.0)
    coarse = rng.normal(0, 1, size=(height // 40 + 2, width // 40 + 2)).astype(np.float32)
    blotches = np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.BILINEAR))
    pixels = base[None, None, :] * (shade * (1.0 + 0.06 * blotches))[..., None]
    pixels += rng.normal(0, 4, size=pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _outline(shape: str, length: float, thickness: float, cx: float, cy: float, axis_deg: float) -> list:
    """Polygon of the object, its long axis at ``axis_deg`` (counter-clockwise as seen)."""
    half_l, half_t = length / 2, thickness / 2
    if shape == "bar":
        local = [(-half_l, -half_t), (half_l, -half_t), (half_l, half_t), (-half_l, half_t)]
    elif shape == "ellipse":
        local = [(half_l * math.cos(t), half_t * math.sin(t)) for t in (i * math.pi / 24 for i in range(48))]
    else:  # capsule: a bar with round ends
        straight = half_l - half_t
        local = [(straight + half_t * math.cos(t), half_t * math.sin(t))
                 for t in (-math.pi / 2 + i * math.pi / 12 for i in range(13))]
        local += [(-straight - half_t * math.cos(t), -half_t * math.sin(t))
                  for t in (-math.pi / 2 + i * math.pi / 12 for i in range(13))]
    a = math.radians(axis_deg)
    return [(cx + u * math.cos(a) + v * math.sin(a), cy - u * math.sin(a) + v * math.cos(a)) for u, v in local]


def _local_thickness(shape: str, thickness: float, length: float, t: float) -> float:
    if shape == "ellipse":
        return thickness * math.sqrt(max(0.0, 1.0 - (2.0 * t) ** 2))
    if shape == "capsule":
        straight = (length - thickness) / 2
        offset = abs(t) * length - straight
        return thickness if offset <= 0 else 2.0 * math.sqrt(max(0.0, (thickness / 2) ** 2 - offset**2))
    return thickness


def render_scene(rng: Any, width: int, height: int, position_jitter: float = 0.12,
                 orientations: int = 0) -> tuple[Any, Any, list[Grasp]]:
    """One scene: RGB image, label mask (0 table, 1 object) and the object's grasps."""
    import colorsys

    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    scale = min(width, height) / 480
    length = rng.uniform(260, 380) * scale
    thickness = rng.uniform(80, 130) * scale
    if orientations:
        axis = -90 + 180 / orientations * int(rng.integers(orientations)) + rng.uniform(-2, 2)
    else:
        axis = rng.uniform(-90, 90)
    # the object lies near the middle of the view, as under a workspace camera; orientation, shape,
    # size and colour vary freely
    cx = width / 2 + rng.uniform(-position_jitter, position_jitter) * width
    cy = height / 2 + rng.uniform(-position_jitter, position_jitter) * height
    outline = _outline(shape, length, thickness, cx, cy, axis)

    image = Image.fromarray(_table(rng, width, height))
    shadow = Image.new("L", (width, height), 0)
    ImageDraw.Draw(shadow).polygon([(x + 6 * scale, y + 8 * scale) for x, y in outline], fill=110)
    shadow = shadow.filter(ImageFilter.GaussianBlur(6 * scale))
    image = Image.composite(Image.new("RGB", (width, height), (0, 0, 0)), image, shadow)
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    color = tuple(int(255 * c) for c in (r, g, b))
    draw = ImageDraw.Draw(image)
    draw.polygon(outline, fill=color)
    highlight = _outline(shape, length * 0.8, thickness * 0.25, cx, cy, axis)
    draw.polygon(highlight, fill=tuple(min(255, int(c * 0.6 + 100)) for c in color))
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).polygon(outline, fill=1)

    grasps = []
    a = math.radians(axis)
    for t in GRASP_POSITIONS:
        local = _local_thickness(shape, thickness, length, t)
        if local < thickness * 0.5:
            continue
        gx, gy = cx + t * length * math.cos(a), cy - t * length * math.sin(a)
        grasps.append(Grasp(cx=gx, cy=gy, theta=axis + 90.0, w=1.3 * local, h=0.45 * thickness).folded())
    return image, np.asarray(mask), grasps


def _write_png(image: Any, path: Path) -> None:
    image.save(path, format="PNG", compress_level=1)


def write_dataset(out: Path, spec: SceneSpec, *, progress: bool = True) -> Path:
    """Render ``spec`` into the empty folder ``out`` in the OCID-Grasp layout.

    Callers go through :func:`qvl.build.build_directory`, which hands over a temporary folder and
    renames it into place, so a user's folder is never written over.
    """
    import numpy as np
    from PIL import Image
    from tqdm.auto import tqdm

    out = Path(out)
    (out / "data_split").mkdir(parents=True, exist_ok=True)
    total = spec.train + spec.val + spec.test
    bar = tqdm(total=total, desc="grasp make-data", unit="image", disable=not progress, dynamic_ncols=True)
    for split_index, split in enumerate(("train", "val", "test")):
        rng = np.random.default_rng([spec.seed, split_index])
        lines = []
        for index in range(getattr(spec, split)):
            seq = f"synthetic/table/top/{split}_seq{index // IMAGES_PER_SEQUENCE:02d}"
            name = f"scene_{index:05d}.png"
            for folder in (RGB_DIR, ANNOTATION_DIR, MASK_DIR):
                (out / seq / folder).mkdir(parents=True, exist_ok=True)
            image, mask, grasps = render_scene(rng, spec.width, spec.height, spec.position_jitter, spec.orientations)
            _write_png(image, out / seq / RGB_DIR / name)
            _write_png(Image.fromarray(mask.astype(np.uint8)), out / seq / MASK_DIR / name)
            corners = "".join(f"{x:.2f} {y:.2f}\n" for g in grasps for x, y in g.corners())
            (out / seq / ANNOTATION_DIR / (Path(name).stem + ".txt")).write_text(corners)
            lines.append(f"{seq},{name}\n")
            bar.update()
        (out / "data_split" / SPLIT_FILES[split]).write_text("".join(lines))
    bar.close()
    return out
