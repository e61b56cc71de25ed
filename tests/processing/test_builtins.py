"""Each built-in processor against a known answer, on the CT phantom or on a drawn image."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import disk

from pacslab.processing import SliceContext, registry
from pacslab.samples import phantom_ct_volume

SIZE = 128
# With an odd slice count the middle slice sits at the phantom's equator (z = 0).
N_SLICES = 5


@pytest.fixture(scope="module")
def equator() -> np.ndarray:
    """The phantom's middle slice in HU (float32), noise of about 8 HU included."""
    return phantom_ct_volume(N_SLICES, SIZE)[N_SLICES // 2].astype(np.float32)


def head_area_px(size: int) -> float:
    """Analytic area of the skull's outer ellipse at z = 0 (a=0.69, b=0.92 of a [-1, 1] field)."""
    half = (size - 1) / 2
    return math.pi * 0.69 * 0.92 * half * half


def test_window_maps_the_window_linearly_onto_the_range(equator: np.ndarray) -> None:
    ramp = np.linspace(-500, 500, 101, dtype=np.float32).reshape(1, -1).repeat(4, axis=0)
    out = registry.get("window")(ramp, center=40.0, width=400.0)
    expected = np.clip((ramp - (40 - 200)) / 400, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out.dtype == np.float32
    on_phantom = registry.get("window")(equator, center=40.0, width=400.0, out_min=0.0, out_max=255.0)
    assert on_phantom[0, 0] == 0.0  # air
    assert on_phantom.max() == 255.0  # skull
    assert np.median(on_phantom[90:100, 58:70]) == pytest.approx(255 * (40 + 160) / 400, abs=4)  # brain


def test_normalise_maps_percentiles_to_the_range() -> None:
    ramp = np.arange(1000, dtype=np.float32).reshape(10, 100)
    out = registry.get("normalise")(ramp, low_percentile=10.0, high_percentile=90.0)
    low, high = np.percentile(ramp, [10, 90])
    np.testing.assert_allclose(out, np.clip((ramp - low) / (high - low), 0, 1), atol=1e-6)
    flat = registry.get("normalise")(np.full((8, 8), 7.0, dtype=np.float32), out_min=-1.0)
    assert (flat == -1.0).all()


def test_gaussian_reduces_white_noise_by_the_theoretical_factor() -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(40.0, 20.0, (256, 256)).astype(np.float32)
    sigma = 2.0
    out = registry.get("gaussian_denoise")(noise, sigma=sigma)
    inner = out[16:-16, 16:-16]
    # A 2-D Gaussian of sigma s scales white-noise standard deviation by 1 / (2 sqrt(pi) s).
    assert inner.std() == pytest.approx(20.0 / (2 * math.sqrt(math.pi) * sigma), rel=0.1)
    assert inner.mean() == pytest.approx(40.0, abs=0.5)


def test_gaussian_keeps_tissue_values_on_the_phantom(equator: np.ndarray) -> None:
    out = registry.get("gaussian_denoise")(equator, sigma=1.0)
    brain = (slice(90, 100), slice(58, 70))  # uniform brain tissue (40 HU) below the ventricles
    assert out[brain].mean() == pytest.approx(40.0, abs=2.0)
    assert out[brain].std() < equator[brain].std() / 2


def test_nl_means_removes_noise_and_keeps_edges() -> None:
    clean = np.full((96, 96), -1000.0, dtype=np.float32)
    clean[disk((48, 48), 30)] = 40.0
    clean[disk((48, 48), 12)] = 300.0
    noisy = clean + np.random.default_rng(3).normal(0, 20, clean.shape).astype(np.float32)
    out = registry.get("nl_means_denoise")(noisy)
    rmse_noisy = float(np.sqrt(np.mean((noisy - clean) ** 2)))
    rmse_out = float(np.sqrt(np.mean((out - clean) ** 2)))
    assert rmse_out < rmse_noisy / 2
    # Edge kept: the row through the centre still jumps within two pixels.
    profile = out[48, 10:30]
    assert np.count_nonzero((profile > -900) & (profile < 0)) <= 2


def test_otsu_mask_keeps_the_largest_region_and_fills_holes() -> None:
    image = np.full((100, 100), -1000.0, dtype=np.float32)
    body = np.zeros(image.shape, dtype=bool)
    body[disk((50, 50), 30)] = True
    image[body] = 40.0
    image[disk((50, 50), 8)] = -1000.0  # a hole (air inside the body)
    image[disk((8, 8), 4)] = 40.0  # a separate small blob
    image += np.random.default_rng(1).normal(0, 5, image.shape).astype(np.float32)
    mask = registry.get("otsu_mask")(image)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, body)
    raw = registry.get("otsu_mask")(image, largest_component=False, fill_holes=False)
    assert raw[8, 8]
    assert not raw[50, 50]


def test_otsu_mask_on_the_phantom_matches_the_head_ellipse(equator: np.ndarray) -> None:
    mask = registry.get("otsu_mask")(equator)
    assert mask.sum() == pytest.approx(head_area_px(SIZE), rel=0.02)
    assert not mask[0, 0]


def test_threshold_mask_selects_the_range() -> None:
    ramp = np.arange(-50, 50, dtype=np.float32).reshape(10, 10)
    mask = registry.get("threshold_mask")(ramp, lower=-10.0, upper=20.0)
    np.testing.assert_array_equal(mask, (ramp >= -10) & (ramp <= 20))


def test_region_measurements_on_two_discs() -> None:
    image = np.full((80, 80), -1000.0, dtype=np.float32)
    big, small = disk((30, 30), 12), disk((60, 60), 5)
    image[big] = 100.0
    image[small] = 300.0
    n_big, n_small = len(big[0]), len(small[0])
    context = SliceContext(pixel_spacing=(0.5, 0.8))
    found = registry.get("region_measurements")(image, context=context, method="manual", lower=0.0)
    values = np.concatenate([np.full(n_big, 100.0), np.full(n_small, 300.0)])
    assert found == pytest.approx(
        {"area_mm2": (n_big + n_small) * 0.4, "mean_hu": values.mean(), "std_hu": values.std(), "count": 2.0}
    )
    assert registry.get("region_measurements")(image, context=context) == pytest.approx(found)
    only_big = registry.get("region_measurements")(image, context=context, min_area_mm2=n_small * 0.4 + 1)
    assert only_big["count"] == 1.0
    assert only_big["mean_hu"] == pytest.approx(100.0)


def test_region_measurements_on_the_phantom(equator: np.ndarray) -> None:
    spacing = 0.5 * 512 / SIZE  # the phantom's PixelSpacing at this size
    found = registry.get("region_measurements")(
        equator, context=SliceContext(pixel_spacing=(spacing, spacing))
    )
    assert found["count"] == 1.0
    assert found["area_mm2"] == pytest.approx(head_area_px(SIZE) * spacing * spacing, rel=0.02)


def test_sobel_on_a_step_edge() -> None:
    step = np.zeros((16, 16), dtype=np.float32)
    step[:, 8:] = 100.0
    out = registry.get("sobel_edges")(step)
    # scikit-image's Sobel: both columns beside a step of height h get h / sqrt(2).
    np.testing.assert_allclose(out[4:12, 7:9], 100.0 / math.sqrt(2), rtol=1e-5)
    assert np.abs(out[4:12, :6]).max() == 0.0
    assert np.abs(out[4:12, 10:]).max() == 0.0


def test_fft_magnitude_and_phase_of_a_cosine() -> None:
    n, k = 64, 5
    x = np.arange(n)
    image = np.tile(np.cos(2 * np.pi * k * x / n), (n, 1)).astype(np.float32)
    out = registry.get("fft")(image)
    assert out.shape == (n, n, 2)
    magnitude, phase = out[..., 0], out[..., 1]
    centre = n // 2
    assert magnitude[centre, centre + k] == pytest.approx(n * n / 2, rel=1e-5)
    assert magnitude[centre, centre - k] == pytest.approx(n * n / 2, rel=1e-5)
    assert phase[centre, centre + k] == pytest.approx(0.0, abs=1e-5)
    others = magnitude.copy()
    others[centre, [centre - k, centre + k]] = 0
    assert others.max() < 1e-2


def test_complex_image_inverts_the_fft(equator: np.ndarray) -> None:
    spectrum = registry.get("fft")(equator)
    channels = np.moveaxis(spectrum, -1, 0)
    back = registry.get("complex_image")(channels, domain="kspace")
    assert back.dtype == np.complex64
    np.testing.assert_allclose(back.real, equator, atol=0.05)
    assert np.abs(back.imag).max() < 0.05


def test_complex_image_from_magnitude_and_phase_channels() -> None:
    magnitude = np.full((8, 8), 3.0, dtype=np.float32)
    stored_phase = np.full((8, 8), 1000.0, dtype=np.float32)
    out = registry.get("complex_image")(np.stack([magnitude, stored_phase]), phase_scale=1e-3)
    np.testing.assert_allclose(np.abs(out), 3.0, rtol=1e-6)
    np.testing.assert_allclose(np.angle(out), 1.0, rtol=1e-6)


def test_slab_average_of_a_slice_and_its_neighbours() -> None:
    stack = np.stack([np.full((4, 4), v, dtype=np.float32) for v in (1.0, 2.0, 6.0)])
    assert registry.get("slab_average").input == "neighbours"
    np.testing.assert_allclose(registry.get("slab_average")(stack), 3.0)


def test_every_builtin_is_registered_with_a_description() -> None:
    builtins = [p for p in registry if p.origin == "builtin"]
    assert {p.name for p in builtins} >= {
        "window",
        "normalise",
        "gaussian_denoise",
        "nl_means_denoise",
        "otsu_mask",
        "threshold_mask",
        "region_measurements",
        "sobel_edges",
        "fft",
        "complex_image",
        "slab_average",
    }
    assert all(p.description for p in builtins)
