"""Sobel edge magnitude."""

from __future__ import annotations

import numpy as np

from pacslab.processing.registry import processor

__all__ = ["sobel_edges"]


@processor(
    name="sobel_edges",
    version="1.0",
    origin="builtin",
    description="Sobel gradient magnitude (scikit-image normalisation).",
)
def sobel_edges(pixels: np.ndarray) -> np.ndarray:
    """Sobel magnitude ``sqrt((Gr² + Gc²) / 2)`` with scikit-image's kernels."""
    from skimage.filters import sobel

    return sobel(pixels.astype(np.float32)).astype(np.float32)
