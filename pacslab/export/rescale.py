"""Real-world values → stored pixel values with an honest Rescale Slope / Intercept.

DICOM pixel data holds integers; a float result (a denoised CT in HU) is written as
``value = stored * slope + intercept`` with one slope and intercept for the whole series, so
viewers and readers recover the values within half a slope step. Integer results that fit
16 bits are written as they are (slope 1, intercept 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.valuerep import format_number_as_ds

from pacslab.export.errors import NonFiniteValues

__all__ = ["StoredValues", "stored_values"]

_UINT16_MAX = 65535


@dataclass(frozen=True)
class StoredValues:
    """Stored pixels and the rescale that maps them back to the real-world values."""

    pixels: np.ndarray  # int16 or uint16, same shape as the values
    slope: float
    intercept: float

    @property
    def signed(self) -> bool:
        """True when the pixels are two's complement (PixelRepresentation 1)."""
        return bool(self.pixels.dtype == np.int16)

    @property
    def exact(self) -> bool:
        """True when every value is represented exactly (integers written as they are)."""
        return self.slope == 1.0 and float(self.intercept).is_integer()


def _ds(value: float) -> float:
    """The value as a DICOM DS string (16 characters) would carry it, back as a float."""
    return float(format_number_as_ds(float(value)))


def stored_values(values: np.ndarray) -> StoredValues:
    """Encode real-world ``values`` as 16-bit stored pixels with one slope and intercept.

    Parameters
    ----------
    values : numpy.ndarray
        Any real numbers, any shape (normally slices, rows, columns).

    Returns
    -------
    StoredValues
        ``pixels * slope + intercept`` reproduces ``values`` exactly for integers within 16 bits,
        else within ``slope / 2`` (slope = value range / 65535).

    Raises
    ------
    NonFiniteValues
        When a value is NaN or infinite.
    """
    values = np.asarray(values)
    if values.size == 0:
        return StoredValues(np.zeros(values.shape, dtype=np.uint16), 1.0, 0.0)
    if not np.issubdtype(values.dtype, np.integer) and not np.all(np.isfinite(values)):
        raise NonFiniteValues(
            f"{int(np.count_nonzero(~np.isfinite(values)))} values are NaN or infinite; replace them "
            "(e.g. numpy.nan_to_num) before export, DICOM pixel data cannot carry them"
        )
    lo, hi = float(values.min()), float(values.max())
    integral = np.issubdtype(values.dtype, np.integer) or bool(np.all(values == np.rint(values)))
    if integral and lo >= -32768 and hi <= 32767:
        return StoredValues(values.astype(np.int16), 1.0, 0.0)
    if integral and hi - lo <= _UINT16_MAX:
        intercept = lo  # an integer, so the DS string carries it exactly
        return StoredValues((values - intercept).astype(np.uint16), 1.0, intercept)
    intercept = _ds(lo)
    if hi == lo:
        return StoredValues(np.zeros(values.shape, dtype=np.uint16), 1.0, intercept)
    slope = _ds((hi - intercept) / _UINT16_MAX)
    while intercept + slope * _UINT16_MAX < hi:  # DS rounding went down: widen by one ulp-ish step
        slope = _ds(slope * (1 + 1e-12) + np.finfo(np.float64).tiny)
    scaled = np.rint((values.astype(np.float64) - intercept) / slope)
    return StoredValues(np.clip(scaled, 0, _UINT16_MAX).astype(np.uint16), slope, intercept)
