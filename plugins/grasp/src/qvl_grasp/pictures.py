"""PNG pictures: rectangles drawn on images, several on a contact sheet (the model-versus-baselines
chart is the core's ``comparison.png``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qvl_grasp.geometry import Grasp

PREDICTION_COLORS = ((255, 40, 40), (255, 200, 0))  # opening edges, jaw plates
TRUTH_COLORS = ((40, 200, 60), (40, 120, 255))


def draw_grasp(draw: Any, grasp: Grasp, colors: tuple[tuple[int, int, int], ...], width: int) -> None:
    """Jaw plates (the ``h`` edges) thick, opening edges thin, as grasp papers draw them."""
    c = grasp.corners()
    opening, plates = colors
    draw.line([c[0], c[1]], fill=opening, width=max(1, width // 2))
    draw.line([c[2], c[3]], fill=opening, width=max(1, width // 2))
    draw.line([c[1], c[2]], fill=plates, width=width)
    draw.line([c[3], c[0]], fill=plates, width=width)


def draw_legend(draw: Any, image_size: tuple[int, int], entries: Sequence[tuple[str, tuple[int, int, int]]]) -> bool:
    """Each ``(label, colour)`` as a swatch and its label, on a dark box in the bottom-left corner.

    Returns False, drawing nothing, on an image too small for the box to leave the grasps visible.
    """
    from PIL import ImageFont

    font = ImageFont.load_default(size=max(10, round(image_size[1] / 40)))
    line = max(draw.textbbox((0, 0), label, font=font)[3] for label, _ in entries) + 4
    swatch = line - 4
    box_width = swatch + 6 + max(draw.textlength(label, font=font) for label, _ in entries) + 8
    top = image_size[1] - line * len(entries) - 6
    if box_width > 0.5 * image_size[0] or top < 0.6 * image_size[1]:
        return False
    draw.rectangle([0, top, box_width, image_size[1]], fill=(0, 0, 0))
    for index, (label, color) in enumerate(entries):
        y = top + 3 + index * line
        draw.rectangle([4, y + 2, 4 + swatch, y + 2 + swatch - 2], fill=color)
        draw.text((swatch + 10, y), label, fill=(255, 255, 255), font=font)
    return True


def draw_on_image(image: Any, prediction: Grasp | None, truths: Sequence[Grasp] = (),
                  caption: str | None = None) -> Any:
    """The prediction (red opening, yellow jaws) over the ground truth (green, blue), with a legend
    when there is ground truth to tell apart, and ``caption`` (the instruction, ``"Grasp the red
    mug."``) on a dark band at the top."""
    from PIL import ImageDraw, ImageFont

    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 160))
    for truth in truths:
        draw_grasp(draw, truth, TRUTH_COLORS, width)
    if prediction is not None:
        draw_grasp(draw, prediction, PREDICTION_COLORS, width + 1)
    else:
        draw.text((8, 8), "invalid output", fill=(255, 40, 40))
    if truths:
        draw_legend(draw, canvas.size, [("prediction", PREDICTION_COLORS[0]),
                                        (f"ground truth ({len(truths)})", TRUTH_COLORS[0])])
    if caption:
        font = ImageFont.load_default(size=max(10, round(canvas.size[1] / 30)))
        band = draw.textbbox((0, 0), caption, font=font)[3] + 8
        draw.rectangle([0, 0, canvas.size[0], band], fill=(0, 0, 0))
        draw.text((6, 4), caption, fill=(255, 255, 255), font=font)
    return canvas


def contact_sheet(images: Sequence[Any], out: Path, columns: int = 4, thumb_width: int = 320) -> None:
    """Several drawn images on one PNG."""
    from PIL import Image

    if not images:
        return
    thumbs = [im.resize((thumb_width, round(im.height * thumb_width / im.width))) for im in images]
    height = max(t.height for t in thumbs)
    rows = (len(thumbs) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * thumb_width, rows * height), (255, 255, 255))
    for index, thumb in enumerate(thumbs):
        sheet.paste(thumb, ((index % columns) * thumb_width, (index // columns) * height))
    sheet.save(out)
