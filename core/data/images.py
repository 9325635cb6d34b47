"""Reading face images from files: every mode Pillow decodes, bounded cost, one error type that names the file.

Every entry point that reads an image file (folder and real-data sources, ``fsx encode``/``retrieve``/``edit``,
LFW evaluation) goes through :func:`read_image`, so that a file reads the same everywhere and a bad one is
refused for the same reason everywhere.

- 16-bit greyscale (PNG ``I;16``, ``I``) is scaled to 8 bits, not clipped (clipping turns it nearly white);
- palette images, greyscale, CMYK and 1-bit images are converted to RGB; EXIF orientation is applied;
- images with transparency are composited over :data:`BACKGROUND` (white), not over black;
- images smaller than :data:`MIN_SIDE` px on a side are refused (a 1x1 "face" carries nothing to learn);
- images above :data:`MAX_PIXELS` are refused before their pixels are decoded; JPEGs are decoded at a
  reduced scale (Pillow's draft mode) when that is still at least twice the size asked for.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# The suffixes fsx treats as images, everywhere (listing a gallery, a VoxCeleb tree, ...): all formats Pillow
# reads without plugins that face pictures come in.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MIN_SIDE = 16
MAX_PIXELS = 100_000_000  # 10,000 x 10,000; Pillow's own bomb check refuses above ~179 MP
BACKGROUND = (255, 255, 255)


class ImageReadError(ValueError):
    """An image file that cannot be used; the message names the file and the reason."""


def is_image_file(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB with the values meant, not clipped."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale (PNG, TIFF). Mode "I" is what Pillow gives for 16-bit PNGs as well.
        arr = np.asarray(im).astype(np.float64)
        arr = np.clip(arr / 257.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if im.mode == "F":
        arr = np.asarray(im).astype(np.float64)
        scale = 255.0 if np.nanmax(arr) <= 1.0 else 1.0  # floats in [0, 1] or already on the 0-255 scale
        return Image.fromarray(np.clip(np.nan_to_num(arr) * scale, 0, 255).round().astype(np.uint8), "L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode in ("L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB")


def read_image(path: str | Path, size: int, box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """(3, size, size) float in [0, 1], cropped to ``box`` (x, y, w, h in the file's pixels) first when given.

    Raises :class:`ImageReadError` naming the file when it cannot be read or is not usable as a face."""
    return torch.from_numpy(read_rgb(path, size, box)).permute(2, 0, 1).float() / 255


def read_rgb(path: str | Path, size: int | None = None, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the whole picture at its own resolution when ``size`` is None (what a face detector
    reads), else cropped to ``box`` and resized to (size, size) as :func:`read_image` does."""
    path = Path(path)
    if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO or a device would block or never end
        raise ImageReadError(f"{path}: not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS below is the limit
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageReadError(f"{path}: {w}x{h} px is over the limit of {MAX_PIXELS:,} pixels")
                if min(w, h) < MIN_SIDE:
                    raise ImageReadError(f"{path}: {w}x{h} px is smaller than the minimum {MIN_SIDE} px on a side")
                region = (w, h) if box is None else (box[2], box[3])
                if size is not None and im.format == "JPEG" and min(region) > 2 * size:
                    scale = max(1, min(region) // (2 * size))  # decode at 1/2, 1/4 or 1/8 scale: far cheaper
                    im.draft("RGB", (max(1, w // scale), max(1, h // scale)))
                im.load()
                sx, sy = im.size[0] / w, im.size[1] / h  # draft mode decoded a smaller pixel grid
                if box is None:  # boxes are given in the file's stored orientation
                    im = ImageOps.exif_transpose(im)
                im = _to_rgb(im)
                if box is not None:
                    x, y, bw, bh = box
                    im = im.crop((round(x * sx), round(y * sy), round((x + bw) * sx), round((y + bh) * sy)))
                if size is not None:
                    im = im.resize((size, size), Image.BILINEAR, reducing_gap=3.0)
                return np.asarray(im, dtype=np.uint8).copy()
    except ImageReadError:
        raise
    except IsADirectoryError:
        raise ImageReadError(f"{path}: a folder, not an image file") from None
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such image file") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc or type(exc).__name__})") from None
