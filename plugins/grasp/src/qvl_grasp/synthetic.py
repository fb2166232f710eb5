"""The embedded default data: a synthetic data set written in the OCID-Grasp layout.

Two kinds of scene, ``task.synthetic.scene``:

* ``multi`` (not the default: ``single`` is, which the tiny model learns): 2 to
  5 objects (``objects``) on a textured table (wood grain or tiles), apart from each other, each
  with a soft shadow. Each has a colour of :data:`PALETTE` and a shape of :mod:`qvl_grasp.shapes`,
  among them mugs, pans, T- and L-shapes, which are grasped at a part (a handle, a stem, an arm)
  and not across their principal axis. No two objects of a scene share both colour and shape, so
  "the red mug" names one. One object, drawn at random, is the scene's target.
* ``single``: one bar, ellipse or capsule near the middle of the view (``position_jitter``), grasped
  across its long axis at five places, the central one first. Its files are those of earlier
  versions, byte for byte, in the same cache folder.

Everything is written as OCID-Grasp stores it, so the real reader reads it:

* ``<seq>/rgb/<image>.png``;
* ``<seq>/Annotations/<stem>.txt``: every object's rectangles in one file, four ``x y`` corners each;
* ``<seq>/seg_mask_labeled_combi/<image>.png``: one integer label per object (1, 2, ...; 0 is the
  table);
* ``data_split/{training,validation,test}_0.txt``.

Multi-object scenes add what an instruction needs, which OCID-Grasp does not have, in a folder of
its own that OCID tools ignore: ``<seq>/objects/<stem>.json``, ``{"objects": {"<label>": {"colour":
"red", "shape": "mug"}, ...}, "target": <label>}``. The reader ties every rectangle to the label
under its centre, so the target's rectangles are the ground truth and "Grasp the red mug." the
instruction. The same seed gives the same files.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from qvl.data import settings_fingerprint

from qvl_grasp.config import SyntheticConfig
from qvl_grasp.geometry import Grasp
from qvl_grasp.readers import ANNOTATION_DIR, MASK_DIR, OBJECTS_DIR, RGB_DIR, GraspDataError
from qvl_grasp.shapes import PRINCIPAL_SHAPES, SHAPES, ObjectModel, axis_grasps, build_object, outline, union_polygon

SPLIT_FILES = {"train": "training_0.txt", "val": "validation_0.txt", "test": "test_0.txt"}
IMAGES_PER_SEQUENCE = 50
# named colours, by hue: far enough apart to stay distinct after the colour jitter and at 96x64 pixels
PALETTE = {"red": 0.0, "orange": 0.07, "yellow": 0.15, "green": 0.33, "blue": 0.61, "purple": 0.78}
PLACEMENT_TRIES = 60  # per object; an object that finds no free spot is left out (the table is full)
LAYOUT_TRIES = 50  # per scene, to place at least the fewest objects
MULTI_GENERATOR = "multi-v1"  # in the cache key and fingerprint: bump when multi-object scenes change


def summary(settings: SyntheticConfig) -> str:
    """What make-data wrote, in a few words."""
    s = settings
    scenes = "one object each" if s.scene == "single" else f"{s.objects[0]}-{s.objects[1]} objects each"
    return f"{s.train} train, {s.val} val, {s.test} test images ({scenes}) in OCID-Grasp layout"


def dataset_key(settings: SyntheticConfig, seed: int) -> str:
    """The cache folder's name; a single-object set keeps the name of earlier versions."""
    size = f"{settings.width}x{settings.height}-{settings.train}-{settings.val}-{settings.test}"
    if settings.scene == "single":
        return f"ocid-synthetic-v5-{size}-j{settings.position_jitter:g}-o{settings.orientations}-s{seed}"
    low, high = settings.objects
    return f"ocid-synthetic-{MULTI_GENERATOR}-{size}-n{low}-{high}-o{settings.orientations}-s{seed}"


def fingerprint(settings: SyntheticConfig, seed: int) -> dict[str, Any]:
    """What the files depend on; a single-object set's is that of earlier versions, so it is not rewritten."""
    if settings.scene == "single":
        return settings_fingerprint(settings, format="ocid-synthetic", seed=seed, exclude=("scene", "objects"))
    return settings_fingerprint(settings, format="ocid-synthetic", seed=seed, exclude=("position_jitter",),
                                generator=MULTI_GENERATOR)


def _table(rng: Any, width: int, height: int, noise: float = 4.0) -> Any:
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
    if noise:  # per-pixel camera noise (std, grey levels); it makes the PNG most of its size
        pixels += rng.normal(0, noise, size=pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def render_scene(rng: Any, width: int, height: int, position_jitter: float = 0.12,
                 orientations: int = 0) -> tuple[Any, Any, list[Grasp]]:
    """One single-object scene: RGB image, label mask (0 table, 1 object) and the object's grasps."""
    import colorsys

    import numpy as np
    from PIL import Image, ImageDraw

    shape = PRINCIPAL_SHAPES[int(rng.integers(len(PRINCIPAL_SHAPES)))]
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
    polygon = outline(shape, length, thickness, cx, cy, axis)

    image = Image.fromarray(_table(rng, width, height))
    image = _shadowed(image, [polygon], scale)
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    color = tuple(int(255 * c) for c in (r, g, b))
    draw = ImageDraw.Draw(image)
    draw.polygon(polygon, fill=color)
    highlight = outline(shape, length * 0.8, thickness * 0.25, cx, cy, axis)
    draw.polygon(highlight, fill=tuple(min(255, int(c * 0.6 + 100)) for c in color))
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=1)
    return image, np.asarray(mask), axis_grasps(shape, length, thickness, cx, cy, axis)


def _shadowed(image: Any, polygons: Sequence[Sequence[tuple[float, float]]], scale: float) -> Any:
    """The table with the soft shadows of ``polygons``, cast down and to the right."""
    from PIL import Image, ImageDraw, ImageFilter

    width, height = image.size
    shadow = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(shadow)
    for polygon in polygons:
        draw.polygon([(x + 6 * scale, y + 8 * scale) for x, y in polygon], fill=110)
    shadow = shadow.filter(ImageFilter.GaussianBlur(6 * scale))
    return Image.composite(Image.new("RGB", (width, height), (0, 0, 0)), image, shadow)


@attrs.frozen
class PlacedObject:
    label: int  # its value in the labelled mask
    colour: str
    shape: str
    grasps: tuple[Grasp, ...]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@attrs.frozen
class Scene:
    """A multi-object scene: the image, the labelled mask (uint8, 0 = table), the objects and the target's label."""

    image: Any
    labels: Any
    objects: tuple[PlacedObject, ...]
    target: int


def _axis_angle(rng: Any, orientations: int) -> float:
    """An object's turn in degrees over the full circle (a mug's handle may point anywhere)."""
    if orientations:
        return -180 + 180 / orientations * int(rng.integers(2 * orientations)) + rng.uniform(-2, 2)
    return rng.uniform(-180, 180)


def _layout(rng: Any, width: int, height: int, count: int, orientations: int,
            scale: float) -> list[tuple[str, ObjectModel]]:
    """Up to ``count`` objects of distinct colour and shape, each a gap away from the others."""
    from shapely import affinity

    margin, gap = 6 * scale, 14 * scale
    names: set[tuple[str, str]] = set()
    placed: list[tuple[str, ObjectModel]] = []
    polygons: list[Any] = []
    colours = list(PALETTE)
    while len(placed) < count:
        shape, colour = SHAPES[int(rng.integers(len(SHAPES)))], colours[int(rng.integers(len(colours)))]
        if (colour, shape) in names:
            continue
        model = build_object(shape, rng, scale)
        body = union_polygon(model.parts)
        for _ in range(PLACEMENT_TRIES):
            angle = _axis_angle(rng, orientations)
            at_origin = affinity.rotate(body, -angle, origin=(0, 0))  # shapely's y is up: counter-clockwise as seen
            left, top, right, bottom = at_origin.bounds
            if right - left > width - 2 * margin or bottom - top > height - 2 * margin:
                continue
            cx = rng.uniform(margin - left, width - margin - right)
            cy = rng.uniform(margin - top, height - margin - bottom)
            polygon = affinity.translate(at_origin, cx, cy)
            if all(polygon.distance(other) > gap for other in polygons):
                names.add((colour, shape))
                placed.append((colour, model.placed(cx, cy, angle)))
                polygons.append(polygon)
                break
        else:
            break  # no free spot left for an object this size
    return placed


def _shade(color: tuple[int, int, int], shade: float) -> tuple[int, ...]:
    if shade <= 1.0:
        return tuple(int(c * shade) for c in color)
    return tuple(min(255, int(c + (255 - c) * (shade - 1.0))) for c in color)


def render_multi_scene(rng: Any, width: int, height: int, objects: tuple[int, int] = (2, 5),
                       orientations: int = 0) -> Scene:
    """A table with ``objects[0]``-``objects[1]`` objects, one of them the target."""
    import colorsys

    import numpy as np
    from PIL import Image, ImageDraw

    scale = min(width, height) / 480
    low, high = objects
    for _ in range(LAYOUT_TRIES):  # a table too full for the fewest objects is laid out again
        layout = _layout(rng, width, height, int(rng.integers(low, high + 1)), orientations, scale)
        if len(layout) >= low:
            break
    else:
        raise GraspDataError(f"task.synthetic.objects = {list(objects)}: {low} objects rarely fit apart on one "
                             f"{width}x{height} table; ask for fewer")
    # the table and the shadows at half size, scaled up, without per-pixel noise: to a model that sees
    # 96x64 pixels they look the same, and they cost a quarter to draw and a third to compress
    half = Image.fromarray(_table(rng, max(1, width // 2), max(1, height // 2), noise=0.0))
    shadows = [[(x * half.width / width, y * half.height / height) for x, y in part]
               for _, model in layout for part in model.parts]
    image = _shadowed(half, shadows, scale * half.height / height).resize((width, height), Image.BILINEAR)
    labels = Image.new("L", (width, height), 0)
    draw, draw_labels = ImageDraw.Draw(image), ImageDraw.Draw(labels)
    placed = []
    for label, (colour, model) in enumerate(layout, start=1):
        hue = (PALETTE[colour] + rng.uniform(-0.015, 0.015)) % 1.0
        rgb = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.65, 1.0)))
        for part in model.parts:
            draw.polygon(part, fill=rgb)
            draw_labels.polygon(part, fill=label)
        for polygon, shade in model.details:
            draw.polygon(polygon, fill=_shade(rgb, shade))
        placed.append(PlacedObject(label=label, colour=colour, shape=model.shape, grasps=model.grasps))
    target = int(rng.integers(len(placed))) + 1
    return Scene(image=image, labels=np.asarray(labels), objects=tuple(placed), target=target)


def _write_png(image: Any, path: Path) -> None:
    image.save(path, format="PNG", compress_level=1)


def _write_files(folder: Path, name: str, image: Any, labels: Any, grasps: Sequence[Grasp]) -> None:
    import numpy as np
    from PIL import Image

    _write_png(image, folder / RGB_DIR / name)
    _write_png(Image.fromarray(labels.astype(np.uint8)), folder / MASK_DIR / name)
    corners = "".join(f"{x:.2f} {y:.2f}\n" for g in grasps for x, y in g.corners())
    (folder / ANNOTATION_DIR / (Path(name).stem + ".txt")).write_text(corners)


def _write_multi(folder: Path, name: str, settings: SyntheticConfig, seed: Sequence[int]) -> None:
    """Render and write one multi-object scene; its own random stream lets scenes render in parallel."""
    import numpy as np

    scene = render_multi_scene(np.random.default_rng(list(seed)), settings.width, settings.height,
                               tuple(settings.objects), settings.orientations)
    _write_files(folder, name, scene.image, scene.labels, [g for o in scene.objects for g in o.grasps])
    sidecar = {"objects": {str(o.label): {"colour": o.colour, "shape": o.shape} for o in scene.objects},
               "target": scene.target}
    (folder / OBJECTS_DIR / (Path(name).stem + ".json")).write_text(json.dumps(sidecar) + "\n")


def write_dataset(out: Path, settings: SyntheticConfig, seed: int, *, progress: bool = True,
                  workers: int | None = None) -> Path:
    """Render ``task.synthetic`` with the run's ``seed`` into the empty folder ``out`` in the OCID-Grasp layout.

    Callers go through :func:`qvl.build.build_directory`, which hands over a temporary folder and
    renames it into place, so a user's folder is never written over. PNG encoding and numpy release
    the GIL, so ``workers`` threads (default: the CPUs, at most 8) render and write scenes together.
    """
    import numpy as np
    from tqdm.auto import tqdm

    out = Path(out)
    workers = workers or min(8, os.cpu_count() or 1)
    folders = (RGB_DIR, ANNOTATION_DIR, MASK_DIR) + ((OBJECTS_DIR,) if settings.scene == "multi" else ())
    (out / "data_split").mkdir(parents=True, exist_ok=True)
    total = settings.train + settings.val + settings.test
    with ThreadPoolExecutor(workers) as pool, \
            tqdm(total=total, desc="grasp make-data", unit="image", disable=not progress, dynamic_ncols=True) as bar:
        pending: deque[Future] = deque()
        for split_index, split in enumerate(("train", "val", "test")):
            rng = np.random.default_rng([seed, split_index])
            lines = []
            for index in range(getattr(settings, split)):
                seq = f"synthetic/table/top/{split}_seq{index // IMAGES_PER_SEQUENCE:02d}"
                name = f"scene_{index:05d}.png"
                if index % IMAGES_PER_SEQUENCE == 0:
                    for folder in folders:
                        (out / seq / folder).mkdir(parents=True, exist_ok=True)
                if settings.scene == "single":  # one random stream per split, drawn in order: the files of earlier versions
                    image, mask, grasps = render_scene(rng, settings.width, settings.height,
                                                       settings.position_jitter, settings.orientations)
                    pending.append(pool.submit(_write_files, out / seq, name, image, mask, grasps))
                else:
                    pending.append(pool.submit(_write_multi, out / seq, name, settings, (seed, split_index, index)))
                while len(pending) > 2 * workers:  # bounded: rendered images wait in memory
                    pending.popleft().result()
                    bar.update()
                lines.append(f"{seq},{name}\n")
            (out / "data_split" / SPLIT_FILES[split]).write_text("".join(lines))
        while pending:
            pending.popleft().result()
            bar.update()
    return out
