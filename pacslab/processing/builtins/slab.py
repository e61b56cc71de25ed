"""Thick-slab average: a slice averaged with its neighbours (2.5-D input)."""

from __future__ import annotations

import numpy as np

from pacslab.processing.registry import processor

__all__ = ["slab_average"]


@processor(
    name="slab_average",
    version="1.0",
    origin="builtin",
    input="neighbours",
    neighbours=1,
    description="Mean of the slice and one neighbour on each side (edge slices repeat).",
)
def slab_average(pixels: np.ndarray) -> np.ndarray:
    """Average over the first axis of a (3, rows, cols) stack."""
    return pixels.astype(np.float32).mean(axis=0, dtype=np.float32)
