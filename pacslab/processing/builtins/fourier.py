"""FFT magnitude and phase, and back: magnitude and phase channels to a complex image."""

from __future__ import annotations

import numpy as np

from pacslab.processing.parameters import Parameter
from pacslab.processing.registry import processor

__all__ = ["complex_image", "fft"]


@processor(
    name="fft",
    version="1.0",
    origin="builtin",
    params={"shift": Parameter(True, description="put the zero frequency in the centre")},
    description="2-D FFT as two channels: magnitude and phase (radians).",
)
def fft(pixels: np.ndarray, shift: bool) -> np.ndarray:
    """(rows, cols, 2) float32: ``[..., 0]`` magnitude, ``[..., 1]`` phase in radians."""
    import scipy.fft

    spectrum = scipy.fft.fft2(pixels.astype(np.float64))
    if shift:
        spectrum = scipy.fft.fftshift(spectrum)
    return np.stack([np.abs(spectrum), np.angle(spectrum)], axis=-1).astype(np.float32)


@processor(
    name="complex_image",
    version="1.0",
    origin="builtin",
    input="channels",
    params={
        "domain": Parameter(
            "image",
            choices=("image", "kspace"),
            description="image: channels are an image's magnitude and phase; kspace: they are an FFT's",
        ),
        "shifted": Parameter(True, description="kspace: zero frequency is in the centre"),
        "phase_scale": Parameter(
            1.0, minimum=1e-12, description="multiply stored phase values by this to get radians"
        ),
    },
    description="Magnitude and phase channels to a complex image (inverse FFT for k-space).",
)
def complex_image(pixels: np.ndarray, domain: str, shifted: bool, phase_scale: float) -> np.ndarray:
    """Complex64 image ``magnitude * exp(i * phase)``; in k-space, its inverse FFT."""
    import scipy.fft

    magnitude = pixels[0].astype(np.float64)
    phase = pixels[1].astype(np.float64) * phase_scale
    values = magnitude * np.exp(1j * phase)
    if domain == "kspace":
        if shifted:
            values = scipy.fft.ifftshift(values)
        values = scipy.fft.ifft2(values)
    return values.astype(np.complex64)
