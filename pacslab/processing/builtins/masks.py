"""Threshold masks (Otsu or a manual range) with largest-component and hole-filling clean-up."""

from __future__ import annotations

import numpy as np

from pacslab.processing.errors import ProcessorError
from pacslab.processing.parameters import Parameter
from pacslab.processing.registry import processor

__all__ = ["clean_mask", "otsu_mask", "threshold_mask"]


def clean_mask(mask: np.ndarray, largest_component: bool, fill_holes: bool) -> np.ndarray:
    """Keep the largest 8-connected region and/or fill its holes."""
    from scipy.ndimage import binary_fill_holes
    from skimage.measure import label

    if largest_component and mask.any():
        labels = label(mask, connectivity=2)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    if fill_holes:
        mask = binary_fill_holes(mask)
    return np.asarray(mask, dtype=bool)


_CLEAN_UP = {
    "largest_component": Parameter(True, description="keep only the largest connected region"),
    "fill_holes": Parameter(True, description="fill holes inside regions"),
}


@processor(
    name="otsu_mask",
    version="1.0",
    origin="builtin",
    output="mask",
    params=_CLEAN_UP,
    description="Pixels above the slice's Otsu threshold.",
)
def otsu_mask(pixels: np.ndarray, largest_component: bool, fill_holes: bool) -> np.ndarray:
    """Mask of pixels above Otsu's threshold; an empty mask for a flat slice."""
    from skimage.filters import threshold_otsu

    if np.ptp(pixels) == 0:
        return np.zeros(pixels.shape, dtype=bool)
    return clean_mask(pixels > threshold_otsu(pixels), largest_component, fill_holes)


@processor(
    name="threshold_mask",
    version="1.0",
    origin="builtin",
    output="mask",
    params={
        "lower": Parameter(-500.0, description="lowest value inside the mask (HU)"),
        "upper": Parameter(3000.0, description="highest value inside the mask (HU)"),
        "largest_component": Parameter(False, description="keep only the largest connected region"),
        "fill_holes": Parameter(False, description="fill holes inside regions"),
    },
    description="Pixels within [lower, upper].",
)
def threshold_mask(
    pixels: np.ndarray, lower: float, upper: float, largest_component: bool, fill_holes: bool
) -> np.ndarray:
    """Mask of ``lower <= pixel <= upper``."""
    if lower > upper:
        raise ProcessorError(f"threshold_mask: lower {lower} must not exceed upper {upper}")
    return clean_mask((pixels >= lower) & (pixels <= upper), largest_component, fill_holes)
