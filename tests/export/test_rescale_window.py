"""Stored-value encoding and window presets (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import Dataset

from pacslab.export import NonFiniteValues, fitting_presets, stored_values
from pacslab.export.window import source_presets


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        (np.array([-1024, 0, 3071]), np.int16),
        (np.array([0, 40000, 60000]), np.uint16),
        (np.array([-100000, -50000, -40000]), np.uint16),
    ],
)
def test_integers_are_exact(values: np.ndarray, dtype: type) -> None:
    encoded = stored_values(values)
    assert encoded.pixels.dtype == dtype
    assert encoded.slope == 1.0
    assert encoded.exact
    np.testing.assert_array_equal(encoded.pixels * encoded.slope + encoded.intercept, values)


@pytest.mark.parametrize("span", [1e-3, 1.0, 4000.0, 1e9])
def test_floats_are_within_half_a_step(span: float) -> None:
    rng = np.random.default_rng(3)
    values = rng.uniform(-span / 3, span * 2 / 3, size=(4, 16, 16))
    encoded = stored_values(values)
    assert encoded.pixels.dtype == np.uint16
    # Slope and intercept survive a trip through a 16-character DS string unchanged.
    assert float(f"{encoded.slope}") == encoded.slope
    assert len(str(encoded.slope)) <= 16
    assert len(str(encoded.intercept)) <= 16
    decoded = encoded.pixels * encoded.slope + encoded.intercept
    assert np.max(np.abs(decoded - values)) <= encoded.slope / 2 * (1 + 1e-6)
    assert encoded.slope <= span / 65535 * 1.01


def test_constant_float_image() -> None:
    encoded = stored_values(np.full((2, 3, 3), 0.25))
    np.testing.assert_allclose(encoded.pixels * encoded.slope + encoded.intercept, 0.25)


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(NonFiniteValues, match="2 values"):
        stored_values(np.array([0.0, np.inf, -np.inf, 1.5]))


def test_source_presets_and_fitting() -> None:
    ds = Dataset()
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    ds.WindowCenterWidthExplanation = ["SOFT", "LUNG"]
    presets = source_presets(ds)
    assert presets == [("SOFT", 40.0, 400.0), ("LUNG", -600.0, 1500.0)]
    hu = np.linspace(-1000, 1000, 10000)
    assert fitting_presets(hu, presets) == presets
    # Soft tissue only (0..100 HU) still fills the soft-tissue window but not the lung window.
    assert [name for name, _, _ in fitting_presets(np.linspace(0, 100, 1000), presets)] == ["SOFT"]
    probabilities = np.linspace(0, 1, 1000)
    (only,) = fitting_presets(probabilities, presets)
    assert only[0] == "DATA"
    assert only[1] == pytest.approx(0.5, abs=0.01)


def test_single_unnamed_window() -> None:
    ds = Dataset()
    ds.WindowCenter = 50
    ds.WindowWidth = 350
    assert source_presets(ds) == [("WINDOW1", 50.0, 350.0)]
