"""Built-in processors on scikit-image and SciPy; importing this package registers them."""

from pacslab.processing.builtins import denoise, edges, fourier, intensity, masks, measurements, slab

__all__ = ["denoise", "edges", "fourier", "intensity", "masks", "measurements", "slab"]
