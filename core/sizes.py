"""Image sizes fsx's networks support, and the channel count under a width multiplier."""

from __future__ import annotations

SUPPORTED_SIZES = (32, 64, 128, 256)


def check_size(image_size: int) -> int:
    """The number of 2x steps between 4x4 and the image (log2(size / 4)); a ValueError for an unsupported size."""
    if image_size not in SUPPORTED_SIZES:
        raise ValueError(f"image_size must be one of {SUPPORTED_SIZES}, got {image_size}")
    return image_size.bit_length() - 3


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 8, so tiny test models stay valid)."""
    return max(8, int(round(channels * width)))
