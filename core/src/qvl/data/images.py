"""Image-folder inputs: one image file, or every image of a folder (``predict --input``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qvl.errors import UserError

# the suffixes read as images (any case), in the order messages list them
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")


def is_image_file(path: str | Path) -> bool:
    """Whether ``path``'s suffix is one of :data:`IMAGE_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def image_files(path: str | Path, *, what: str | None = None, error: type[Exception] = UserError) -> list[Path]:
    """``[path]`` for a file; for a folder its image files (not its subfolders'), by name.

    :param what: how messages name the input (default: the path), e.g. ``"predict.input = 'x'"``.
    :param error: the exception raised (a :class:`UserError` subclass of the caller's).
    :raises error: ``path`` does not exist, or is a folder holding no image file.
    """
    path = Path(path)
    label = what if what is not None else str(path)
    if not path.exists():
        raise error(f"{label}: no such file or folder")
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if is_image_file(p))
    if not files:
        raise error(f"{label}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def load_rgb(path: str | Path, error: type[Exception] = UserError) -> Any:
    """The image file as an RGB PIL image, decoded now.

    :raises error: ``"<path>: not a readable image (<reason>)"``.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise error(f"{path}: not a readable image ({exc})") from None


def image_folder(path: str | Path, *, what: str | None = None, error: type[Exception] = UserError
                 ) -> list[dict[str, Any]]:
    """Samples ``{"id": file name, "image": RGB PIL image}`` of :func:`image_files`."""
    return [{"id": file.name, "image": load_rgb(file, error)} for file in image_files(path, what=what, error=error)]


__all__ = ["IMAGE_SUFFIXES", "image_files", "image_folder", "is_image_file", "load_rgb"]
