"""Training-time augmentation, applied to the image and its grasps together.

Rotation turns the image, the mask and every rectangle about the image centre; colour jitter
changes brightness, contrast and saturation; label noise and the masked field act on the target
integers (the masked field is left out of the loss, see ``prompting.field_token_mask``).
"""

from __future__ import annotations

from typing import Any

import attrs

from qvl.config import fraction, non_negative
from qvl_grasp.geometry import Grasp
from qvl_grasp.quantizer import FIELD_MAX


@attrs.define
class AugmentConfig:
    enabled: bool = True
    # uniform in [-rotation_degrees, rotation_degrees]; past 180 the same angles come again
    rotation_degrees: float = attrs.field(default=15.0, validator=[non_negative, attrs.validators.le(180.0)])
    brightness: float = attrs.field(default=0.3, validator=fraction)
    contrast: float = attrs.field(default=0.3, validator=fraction)
    saturation: float = attrs.field(default=0.3, validator=fraction)
    label_noise_prob: float = attrs.field(default=0.2, validator=fraction)
    masked_field_prob: float = attrs.field(default=0.1, validator=fraction)

    @property
    def rotates(self) -> bool:
        """Whether training turns its images (the prepared working copies depend on it)."""
        return self.enabled and self.rotation_degrees > 0


def rotate(image: Any, grasps: list[Grasp], degrees: float, mask: Any = None) -> tuple[Any, list[Grasp], Any]:
    """Turn the image counter-clockwise (as seen) by ``degrees`` about its centre, grasps with it."""
    import numpy as np
    from PIL import Image

    width, height = image.size
    fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
    turned = image.rotate(degrees, resample=Image.BILINEAR, fillcolor=fill)
    turned_grasps = [g.rotated_about(width / 2, height / 2, degrees) for g in grasps]
    turned_mask = None
    if mask is not None:
        turned_mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).rotate(degrees, resample=Image.NEAREST)) != 0
    return turned, turned_grasps, turned_mask


def color_factors(rng: Any, config: AugmentConfig) -> tuple[float | None, float | None, float | None]:
    """Brightness, contrast and saturation factors, drawn in that order (None: that jitter is off)."""
    return tuple(float(rng.uniform(1 - amount, 1 + amount)) if amount > 0 else None  # type: ignore[return-value]
                 for amount in (config.brightness, config.contrast, config.saturation))


def jitter_colors(image: Any, factors: tuple[float | None, ...]) -> Any:
    from PIL import ImageEnhance

    for enhancer, factor in zip((ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), factors):
        if factor is not None:
            image = enhancer(image).enhance(factor)
    return image


def noisy_bins(bins: tuple[int, ...], rng: Any, probability: float) -> tuple[int, ...]:
    """Each field moved by one bin up or down with ``probability`` (the angle wraps around)."""
    noisy = []
    for index, (value, high) in enumerate(zip(bins, FIELD_MAX)):
        if rng.random() < probability:
            value += int(rng.choice((-1, 1)))
            value = value % (high + 1) if index == 2 else max(0, min(high, value))
        noisy.append(value)
    return tuple(noisy)


def augment_geometry(image: Any, grasps: list[Grasp], rng: Any, config: AugmentConfig) -> tuple[Any, list[Grasp]]:
    if config.rotation_degrees > 0:
        image, grasps, _ = rotate(image, grasps, float(rng.uniform(-config.rotation_degrees, config.rotation_degrees)))
    return image, grasps


def augment_sample(image: Any, grasps: list[Grasp], rng: Any, config: AugmentConfig) -> tuple[Any, list[Grasp]]:
    """Rotation, then colour jitter, at the image's own size (the collator jitters after scaling the image
    down to the model's size, where it costs a quarter)."""
    image, grasps = augment_geometry(image, grasps, rng, config)
    return jitter_colors(image, color_factors(rng, config)), grasps
