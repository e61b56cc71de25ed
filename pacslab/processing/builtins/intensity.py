"""Intensity windowing and normalisation to a fixed output range.

The built-ins import scikit-image and SciPy when they run, not when they are registered: a
Dask worker registers them in its event loop, where seconds of imports would stall it.
"""

from __future__ import annotations

import numpy as np

from pacslab.processing.errors import ProcessorError
from pacslab.processing.parameters import Parameter
from pacslab.processing.registry import processor

__all__ = ["normalise", "window"]


@processor(
    name="window",
    version="1.0",
    origin="builtin",
    params={
        "center": Parameter(40.0, minimum=-5000.0, maximum=30000.0, description="window centre (HU)"),
        "width": Parameter(400.0, minimum=1.0, maximum=70000.0, description="window width (HU)"),
        "out_min": Parameter(0.0, description="value given to the bottom of the window"),
        "out_max": Parameter(1.0, description="value given to the top of the window"),
    },
    description="Window/level: map [centre - width/2, centre + width/2] linearly onto [out_min, out_max].",
)
def window(pixels: np.ndarray, center: float, width: float, out_min: float, out_max: float) -> np.ndarray:
    """Clip to the window and map it linearly onto the output range (float32)."""
    from skimage.exposure import rescale_intensity

    low, high = center - width / 2.0, center + width / 2.0
    return rescale_intensity(
        pixels.astype(np.float32), in_range=(low, high), out_range=(out_min, out_max)
    ).astype(np.float32)


@processor(
    name="normalise",
    version="1.0",
    origin="builtin",
    params={
        "low_percentile": Parameter(1.0, minimum=0.0, maximum=100.0, description="maps to out_min"),
        "high_percentile": Parameter(99.0, minimum=0.0, maximum=100.0, description="maps to out_max"),
        "out_min": Parameter(0.0),
        "out_max": Parameter(1.0),
    },
    description="Map the slice's own percentile range onto [out_min, out_max] (clipping beyond).",
)
def normalise(
    pixels: np.ndarray, low_percentile: float, high_percentile: float, out_min: float, out_max: float
) -> np.ndarray:
    """Rescale between two percentiles of the slice; a flat slice maps to ``out_min``."""
    if low_percentile >= high_percentile:
        raise ProcessorError(
            f"normalise: low_percentile {low_percentile} must be below high_percentile {high_percentile}"
        )
    from skimage.exposure import rescale_intensity

    low, high = np.percentile(pixels, [low_percentile, high_percentile])
    if high <= low:
        return np.full(pixels.shape, out_min, dtype=np.float32)
    return rescale_intensity(
        pixels.astype(np.float32), in_range=(float(low), float(high)), out_range=(out_min, out_max)
    ).astype(np.float32)
