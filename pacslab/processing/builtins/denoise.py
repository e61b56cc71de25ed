"""Gaussian and non-local-means denoising."""

from __future__ import annotations

import numpy as np

from pacslab.processing.parameters import Parameter
from pacslab.processing.registry import processor

__all__ = ["gaussian_denoise", "nl_means_denoise"]


@processor(
    name="gaussian_denoise",
    version="1.0",
    origin="builtin",
    params={"sigma": Parameter(1.0, minimum=0.0, maximum=50.0, description="standard deviation in pixels")},
    description="Gaussian smoothing (values stay in HU).",
)
def gaussian_denoise(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter of standard deviation ``sigma`` pixels, edges reflected."""
    from skimage.filters import gaussian

    return gaussian(pixels.astype(np.float32), sigma=sigma, preserve_range=True, mode="reflect").astype(
        np.float32
    )


@processor(
    name="nl_means_denoise",
    version="1.0",
    origin="builtin",
    params={
        "h_factor": Parameter(
            0.8, minimum=0.01, maximum=10.0, description="filter strength, times the noise"
        ),
        "patch_size": Parameter(5, minimum=1, maximum=21, description="patch side in pixels"),
        "patch_distance": Parameter(6, minimum=1, maximum=50, description="search radius in pixels"),
    },
    description="Non-local means with the noise level estimated from the slice.",
)
def nl_means_denoise(pixels: np.ndarray, h_factor: float, patch_size: int, patch_distance: int) -> np.ndarray:
    """Non-local means; ``h = h_factor * sigma`` with sigma from :func:`estimate_sigma`."""
    from skimage.restoration import denoise_nl_means, estimate_sigma

    image = pixels.astype(np.float64)
    sigma = float(estimate_sigma(image))
    if sigma == 0.0:
        return pixels.astype(np.float32)
    return denoise_nl_means(
        image,
        h=h_factor * sigma,
        sigma=sigma,
        patch_size=patch_size,
        patch_distance=patch_distance,
        fast_mode=True,
        preserve_range=True,
    ).astype(np.float32)
