"""The pure rendering functions: window/level against pydicom's VOI code, overlays, zoom, cache."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_windowing

from pacslab.render import (
    CT_PRESETS,
    RenderCache,
    RenderError,
    apply_window,
    auto_window,
    blend_mask,
    colormap_table,
    encode_image,
    render_slice,
    thumbnail_montage,
    window_lut,
    zoom_crop,
)


def _ct_dataset(center: float, width: float) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored = 16
    ds.PixelRepresentation = 1
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.WindowCenter = center
    ds.WindowWidth = width
    ds.VOILUTFunction = "LINEAR"
    return ds


@pytest.mark.parametrize(("name", "center", "width"), [(k, *v) for k, v in CT_PRESETS.items()])
def test_window_matches_pydicom_linear_voi(name: str, center: float, width: float) -> None:
    rng = np.random.default_rng(3)
    stored = rng.integers(-2000, 4000, size=(64, 64)).astype(np.int16)
    ours = apply_window(stored, center, width, slope=1.0, intercept=-1024.0)
    # pydicom windows values already rescaled (HU) into the rescaled range of the stored type.
    hu = stored.astype(np.float64) - 1024.0
    theirs = apply_windowing(hu, _ct_dataset(center, width))
    low, high = -32768.0 - 1024.0, 32767.0 - 1024.0
    expected = np.round((theirs - low) / (high - low) * 255.0)
    assert np.abs(ours.astype(int) - expected).max() <= 1, name


def test_integer_and_float_paths_agree() -> None:
    stored = np.arange(-1100, 2996, 4, dtype=np.int16).reshape(32, -1)
    via_lut = apply_window(stored, 40, 400, intercept=-1024)
    via_float = apply_window(stored.astype(np.float32) - 1024, 40, 400)
    assert np.array_equal(via_lut, via_float)


def test_window_extremes_are_black_and_white() -> None:
    hu = np.array([[-1000.0, 40.0, 3000.0]], dtype=np.float32)
    out = apply_window(hu, 40, 400)
    assert out.tolist() == [[0, 128, 255]]


def test_unsigned_lut_indexes_raw_values() -> None:
    table = window_lut("<u2", 100.0, 50.0)
    assert table.shape == (65536,)
    assert table[0] == 0
    assert table[200] == 255


def test_colormap_gives_rgb() -> None:
    out = apply_window(np.zeros((4, 5), dtype=np.int16), 0, 100, colormap="viridis")
    assert out.shape == (4, 5, 3)
    gray = apply_window(np.zeros((4, 5), dtype=np.int16), 0, 100)
    assert tuple(out[0, 0]) == tuple(colormap_table("viridis")[gray[0, 0]])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: apply_window(np.zeros((2, 2)), 0, 0), "width must be at least 1"),
        (lambda: apply_window(np.zeros((2, 2)), float("nan"), 10), "finite"),
        (lambda: apply_window(np.zeros((2, 2, 2)), 0, 10), "must be 2-D"),
        (lambda: apply_window(np.zeros((2, 2), dtype=np.int16), 0, 10, colormap="nope"), "no colormap named"),
        (lambda: zoom_crop(np.zeros((4, 4)), 0.5), "zoom must be between"),
        (lambda: blend_mask(np.zeros((4, 4), np.uint8), np.zeros((3, 3), bool)), "does not match"),
        (
            lambda: blend_mask(np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), "notacolour"),
            "not a colour",
        ),
        (lambda: blend_mask(np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), opacity=2), "opacity"),
        (lambda: encode_image(np.zeros((4, 4), np.uint8), "gif"), "format must be one of"),  # type: ignore[arg-type]
        (lambda: thumbnail_montage([], 0, 10), "no slices"),
        (lambda: RenderCache(0), "at least 1"),
    ],
)
def test_bad_options_raise_named_error(call: object, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        call()  # type: ignore[operator]


def test_mask_blend_colours_only_masked_pixels() -> None:
    gray = np.full((4, 4), 100, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    out = blend_mask(gray, mask, color=(255, 0, 0), opacity=0.5)
    assert tuple(out[1, 2]) == (178, 50, 50)
    assert tuple(out[0, 0]) == (100, 100, 100)


def test_zoom_crop_origin_maps_back() -> None:
    image = np.arange(100 * 100).reshape(100, 100)
    crop, (top, left) = zoom_crop(image, 4.0, center=(90, 10))
    assert crop.shape == (25, 25)
    assert (top, left) == (75, 0)
    assert crop[0, 0] == image[top, left]


def test_render_slice_decodes_and_maps_clicks() -> None:
    hu = np.zeros((64, 64), np.float32)
    hu[10, 20] = 1000
    rendered = render_slice(hu, 40, 400, zoom=2.0, zoom_center=(16, 16), fmt="png")
    picture = np.asarray(Image.open(io.BytesIO(rendered.data)))
    assert picture.shape == rendered.shape == (32, 32)
    assert rendered.origin == (0, 0)
    assert picture[10, 20] == 255
    assert rendered.slice_position(20.5, 10.2) == (10, 20)
    assert rendered.slice_position(40, 10) is None


def test_side_by_side_maps_both_halves_to_the_slice() -> None:
    hu = np.zeros((8, 10), np.float32)
    result = np.ones((8, 10), np.float32)
    rendered = render_slice(hu, 0, 10, overlay=result, overlay_mode="side-by-side")
    assert rendered.shape == (8, 24)
    assert rendered.slice_position(3, 2) == (2, 3)
    assert rendered.slice_position(14 + 3, 2) == (2, 3)
    assert rendered.slice_position(11, 2) is None  # the gap


def test_jpeg_encodes() -> None:
    data = encode_image(np.zeros((16, 16, 3), np.uint8), "jpeg")
    assert data[:2] == b"\xff\xd8"


def test_auto_window_covers_the_range() -> None:
    values = np.linspace(0, 1000, 10000, dtype=np.float32).reshape(100, 100)
    center, width = auto_window(values)
    assert center == pytest.approx(500, abs=1)
    assert width == pytest.approx(980, abs=2)


def test_thumbnail_montage_places_tiles() -> None:
    slices = [np.full((32, 32), v, np.float32) for v in (-1000, 1000, -1000)]
    montage = thumbnail_montage(slices, 40, 400, size=8, columns=2)
    assert montage.shape == (16, 16)
    assert [montage[0, 8], montage[0, 0], montage[8, 0]] == [255, 0, 0]


def test_cache_evicts_least_recently_used() -> None:
    cache = RenderCache(2)
    item = render_slice(np.zeros((4, 4), np.float32), 0, 10)
    cache.put("a", item)
    cache.put("b", item)
    assert cache.get("a") is item
    cache.put("c", item)
    assert cache.get("b") is None
    assert cache.get("a") is item
    assert len(cache) == 2
    assert (cache.hits, cache.misses) == (2, 1)
