"""Slices to pictures: window/level, colormaps, overlays, zoom, thumbnails and PNG/JPEG bytes.

Everything here is a pure function of arrays, except :class:`RenderCache`, a small LRU of
encoded pictures. The viewer widget, exports and thumbnails share it; nothing here imports
ipywidgets.

Window/level follows the DICOM linear VOI function (PS3.3 C.11.2.1.2.1): with centre ``c``
and width ``w`` (in output units, i.e. after the rescale: HU for CT), a value ``x`` maps to
black at or below ``c - 0.5 - (w - 1) / 2``, to white above ``c - 0.5 + (w - 1) / 2``, and
linearly in between. Integer slices go through a 65,536-entry uint8 lookup table built once
per (dtype, rescale, window, colormap) and indexed by the raw stored values, which is what
makes a 512×512 slice cost about a millisecond.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

__all__ = [
    "CT_PRESETS",
    "ImageFormat",
    "RenderCache",
    "RenderError",
    "RenderedSlice",
    "apply_window",
    "auto_window",
    "blend_mask",
    "colormap_table",
    "encode_image",
    "render_slice",
    "side_by_side",
    "thumbnail_montage",
    "window_lut",
    "zoom_crop",
]

ImageFormat = Literal["png", "jpeg"]
IMAGE_FORMATS: tuple[str, ...] = ("png", "jpeg")

# Common CT windows (centre, width) in HU, as radiology departments name them.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "abdomen": (40.0, 400.0),
}

MAX_ZOOM = 16.0
SIDE_BY_SIDE_GAP = 4


class RenderError(ValueError):
    """A slice, window or option that cannot be rendered; the message says what would work."""


# -- window/level ------------------------------------------------------------------------------


def _check_window(center: float, width: float) -> tuple[float, float]:
    c, w = float(center), float(width)
    if not np.isfinite(c) or not np.isfinite(w):
        raise RenderError(f"window centre and width must be finite numbers, got {center!r}/{width!r}")
    if w < 1.0:
        raise RenderError(f"window width must be at least 1, got {width!r}")
    return c, w


def _linear_voi(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear function to 0..255 (uint8), for float input."""
    # y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, clipped; w == 1 is a hard threshold.
    if width <= 1.0:
        return np.where(values > center - 0.5, np.uint8(255), np.uint8(0)).astype(np.uint8)
    scale = np.float32(255.0 / (width - 1.0))
    offset = np.float32(255.0 * (0.5 - (center - 0.5) / (width - 1.0)))
    out = values.astype(np.float32, copy=True)
    out *= scale
    out += offset
    np.clip(out, 0.0, 255.0, out=out)
    # Round half up, as the standard's output is quantised to the nearest level.
    out += np.float32(0.5)
    return out.astype(np.uint8)


@lru_cache(maxsize=32)
def colormap_table(name: str) -> np.ndarray:
    """A matplotlib colormap as a (256, 3) uint8 table.

    Raises
    ------
    RenderError
        When matplotlib has no colormap of that name.
    """
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        known = ", ".join(sorted(c for c in matplotlib.colormaps if not c.endswith("_r"))[:12])
        raise RenderError(f"no colormap named {name!r}; try one of {known}, ...") from None
    rgba = cmap(np.linspace(0.0, 1.0, 256))
    table = np.round(rgba[:, :3] * 255.0).astype(np.uint8)
    table.setflags(write=False)
    return table


def _is_gray(colormap: str | None) -> bool:
    return colormap is None or colormap in ("gray", "grey", "")


@lru_cache(maxsize=16)
def window_lut(
    dtype: str,
    center: float,
    width: float,
    slope: float = 1.0,
    intercept: float = 0.0,
    colormap: str | None = None,
) -> np.ndarray:
    """Lookup table from every raw stored value of a 8- or 16-bit dtype to a display value.

    Index the table with the raw pixels viewed as unsigned (``pixels.view(np.uint16)`` for
    ``int16``): entry ``u`` holds the display value of the stored value whose bit pattern is
    ``u``. The rescale (``slope``, ``intercept``) is applied before the window.

    Returns
    -------
    numpy.ndarray
        ``(2**bits,)`` uint8 for grey, ``(2**bits, 3)`` uint8 with a colormap.

    Raises
    ------
    RenderError
        For a dtype other than (u)int8/(u)int16, or an invalid window.
    """
    kind = np.dtype(dtype)
    if kind.kind not in "iu" or kind.itemsize > 2:
        raise RenderError(f"a lookup table needs 8- or 16-bit integer pixels, not {kind}")
    center, width = _check_window(center, width)
    unsigned = np.dtype(f"u{kind.itemsize}")
    stored = np.arange(2 ** (8 * kind.itemsize), dtype=np.int64).astype(unsigned).view(kind)
    values = stored.astype(np.float64) * slope + intercept
    table = _linear_voi(values, center, width)
    if not _is_gray(colormap):
        table = colormap_table(str(colormap))[table]
    table.setflags(write=False)
    return table


def apply_window(
    pixels: np.ndarray,
    center: float,
    width: float,
    slope: float = 1.0,
    intercept: float = 0.0,
    colormap: str | None = None,
) -> np.ndarray:
    """Window a 2-D slice to display values.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(rows, cols)``, raw stored values (integers, then ``slope``/``intercept`` give the
        output units) or values already in output units (floats, with the default rescale).
    center, width : float
        Window in output units (HU for CT).
    slope, intercept : float
        Modality rescale of the stored values.
    colormap : str, optional
        A matplotlib colormap name; grey when None.

    Returns
    -------
    numpy.ndarray
        uint8 ``(rows, cols)`` for grey, ``(rows, cols, 3)`` with a colormap.

    Raises
    ------
    RenderError
        When ``pixels`` is not 2-D, the window is invalid, or the colormap unknown.
    """
    if pixels.ndim != 2:
        raise RenderError(f"a slice must be 2-D (rows, cols); got shape {pixels.shape}")
    if pixels.dtype.kind in "iu" and pixels.dtype.itemsize <= 2:
        table = window_lut(
            pixels.dtype.str, float(center), float(width), float(slope), float(intercept), colormap
        )
        unsigned = np.dtype(f"u{pixels.dtype.itemsize}")
        return table[pixels.view(unsigned)]
    if pixels.dtype.kind not in "iufb":
        raise RenderError(f"cannot window pixels of dtype {pixels.dtype}")
    center, width = _check_window(center, width)
    values = pixels.astype(np.float32, copy=False)
    if slope != 1.0 or intercept != 0.0:
        values = values * np.float32(slope) + np.float32(intercept)
    gray = _linear_voi(np.nan_to_num(values, nan=-np.inf), center, width)
    if _is_gray(colormap):
        return gray
    return colormap_table(str(colormap))[gray]


def auto_window(pixels: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> tuple[float, float]:
    """A window covering the 1st to 99th percentile of a slice (for series without presets).

    Returns
    -------
    tuple of float
        ``(center, width)`` in output units; width at least 1.
    """
    finite = pixels[np.isfinite(pixels)] if pixels.dtype.kind == "f" else pixels
    if finite.size == 0:
        return 0.0, 1.0
    # A strided sample is plenty for percentiles and keeps this cheap on large slices.
    step = max(1, finite.size // 65536)
    low, high = np.percentile(finite.ravel()[::step], [1.0, 99.0])
    low, high = low * slope + intercept, high * slope + intercept
    if high < low:
        low, high = high, low
    width = max(float(high - low), 1.0)
    return float(low + high) / 2.0, width


# -- composition -----------------------------------------------------------------------------


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return image


def _parse_color(color: str | Sequence[int]) -> np.ndarray:
    if isinstance(color, str):
        from matplotlib.colors import to_rgb

        try:
            rgb = to_rgb(color)
        except ValueError:
            raise RenderError(f"{color!r} is not a colour; use a name like 'red' or '#ff0000'") from None
        return np.round(np.asarray(rgb) * 255).astype(np.float32)
    values = np.asarray(color, dtype=np.float32)
    if values.shape != (3,) or values.min() < 0 or values.max() > 255:
        raise RenderError(f"a colour must be three values 0-255, got {color!r}")
    return values


def blend_mask(
    image: np.ndarray, mask: np.ndarray, color: str | Sequence[int] = "red", opacity: float = 0.4
) -> np.ndarray:
    """Paint ``mask`` over a display image in ``color`` at ``opacity`` (0 to 1).

    Returns
    -------
    numpy.ndarray
        uint8 ``(rows, cols, 3)``.

    Raises
    ------
    RenderError
        When shapes differ, the opacity is outside 0-1, or the colour is not one.
    """
    if mask.shape != image.shape[:2]:
        raise RenderError(f"mask shape {mask.shape} does not match the slice {image.shape[:2]}")
    if not 0.0 <= opacity <= 1.0:
        raise RenderError(f"opacity must be between 0 and 1, got {opacity!r}")
    paint = _parse_color(color)
    rgb = _rgb(image).copy()
    where = mask.astype(bool, copy=False)
    if opacity == 0.0 or not where.any():
        return rgb
    picked = rgb[where].astype(np.float32)
    rgb[where] = np.round(picked * (1.0 - opacity) + paint * opacity).astype(np.uint8)
    return rgb


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = SIDE_BY_SIDE_GAP) -> np.ndarray:
    """Two display images next to each other (a dark gap between), padded to one height."""
    a, b = _rgb(left), _rgb(right)
    rows = max(a.shape[0], b.shape[0])
    out = np.zeros((rows, a.shape[1] + gap + b.shape[1], 3), dtype=np.uint8)
    out[: a.shape[0], : a.shape[1]] = a
    out[: b.shape[0], a.shape[1] + gap :] = b
    return out


def zoom_crop(
    image: np.ndarray, zoom: float, center: tuple[float, float] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of ``image`` seen at ``zoom`` (1 = whole image) around ``center`` (row, col).

    The browser scales the picture to the viewer's size, so zooming is cropping.

    Returns
    -------
    tuple
        The cropped image and the (row, col) of its top-left corner in the full image.

    Raises
    ------
    RenderError
        For a zoom below 1 or above :data:`MAX_ZOOM`.
    """
    if not 1.0 <= zoom <= MAX_ZOOM:
        raise RenderError(f"zoom must be between 1 and {MAX_ZOOM:g}, got {zoom!r}")
    rows, cols = image.shape[:2]
    if zoom == 1.0:
        return image, (0, 0)
    height, width = max(1, round(rows / zoom)), max(1, round(cols / zoom))
    cy, cx = center if center is not None else (rows / 2.0, cols / 2.0)
    top = int(np.clip(round(cy - height / 2.0), 0, rows - height))
    left = int(np.clip(round(cx - width / 2.0), 0, cols - width))
    return image[top : top + height, left : left + width], (top, left)


# -- encoding ----------------------------------------------------------------------------------


def encode_image(image: np.ndarray, fmt: ImageFormat = "png", quality: int = 90) -> bytes:
    """Encode a uint8 grey or RGB image as PNG (lossless, fast zlib level) or JPEG.

    Raises
    ------
    RenderError
        For an unknown format or an image that is not uint8 2-D / RGB.
    """
    from PIL import Image

    if fmt not in IMAGE_FORMATS:
        raise RenderError(f"image format must be one of {IMAGE_FORMATS}, got {fmt!r}")
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise RenderError(
            f"encode needs a uint8 (rows, cols) or (rows, cols, 3) image, got {image.dtype} {image.shape}"
        )
    picture = Image.fromarray(np.ascontiguousarray(image))
    buffer = io.BytesIO()
    if fmt == "png":
        # Level 1: the slice is mostly smooth; higher levels cost 3-5x the time for ~10% size.
        picture.save(buffer, format="PNG", compress_level=1)
    else:
        picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class RenderedSlice:
    """An encoded picture and how its pixels map back to the slice.

    A picture pixel ``(x, y)`` (column, row) shows slice pixel ``(origin[0] + y, origin[1] + x)``.
    In a side-by-side picture (``left_width`` > 0) the right part repeats the same slice
    coordinates after a gap of :data:`SIDE_BY_SIDE_GAP` pixels.
    """

    data: bytes
    format: ImageFormat
    shape: tuple[int, int]
    origin: tuple[int, int]
    left_width: int = 0

    def slice_position(self, x: float, y: float) -> tuple[int, int] | None:
        """The (row, col) of the slice under picture pixel ``(x, y)``; None outside the slice."""
        col, row = int(np.floor(x)), int(np.floor(y))
        if self.left_width and col >= self.left_width:
            col -= self.left_width + SIDE_BY_SIDE_GAP
        limit = self.left_width or self.shape[1]
        if not (0 <= col < limit and 0 <= row < self.shape[0]):
            return None
        return self.origin[0] + row, self.origin[1] + col


def render_slice(
    pixels: np.ndarray,
    center: float,
    width: float,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    colormap: str | None = None,
    overlay: np.ndarray | None = None,
    overlay_mode: Literal["mask", "side-by-side"] = "mask",
    overlay_color: str | Sequence[int] = "red",
    overlay_opacity: float = 0.4,
    overlay_window: tuple[float, float] | None = None,
    zoom: float = 1.0,
    zoom_center: tuple[float, float] | None = None,
    fmt: ImageFormat = "png",
) -> RenderedSlice:
    """Window a slice, add a result overlay, crop to the zoom and encode it.

    Parameters
    ----------
    pixels : numpy.ndarray
        The slice, ``(rows, cols)``.
    center, width, slope, intercept, colormap
        See :func:`apply_window`.
    overlay : numpy.ndarray, optional
        A mask (painted over the slice) or a result image (shown beside it).
    overlay_mode : {"mask", "side-by-side"}
        How to show ``overlay``.
    overlay_color, overlay_opacity
        Mask colour and opacity.
    overlay_window : tuple, optional
        ``(center, width)`` for a side-by-side result image; its own 1-99% range when None.
    zoom, zoom_center
        See :func:`zoom_crop`; the overlay is cropped the same way.
    fmt : {"png", "jpeg"}
        Encoding.

    Returns
    -------
    RenderedSlice

    Raises
    ------
    RenderError
        For any invalid option (message names it).
    """
    image = apply_window(pixels, center, width, slope, intercept, colormap)
    if overlay is not None:
        if overlay.shape[:2] != pixels.shape:
            raise RenderError(f"result shape {overlay.shape} does not match the slice {pixels.shape}")
        if overlay_mode == "mask":
            image = blend_mask(image, overlay, overlay_color, overlay_opacity)
        elif overlay_mode == "side-by-side":
            result = overlay.astype(np.uint8) * 255 if overlay.dtype == bool else overlay
            if result.ndim != 2:
                raise RenderError(f"a result image must be 2-D to show beside the slice, got {result.shape}")
            oc, ow = overlay_window if overlay_window is not None else auto_window(result)
            right = apply_window(result, oc, ow, colormap=colormap)
            left, origin = zoom_crop(image, zoom, zoom_center)
            right, _ = zoom_crop(right, zoom, zoom_center)
            combined = side_by_side(left, right)
            return RenderedSlice(encode_image(combined, fmt), fmt, combined.shape[:2], origin, left.shape[1])
        else:
            raise RenderError(f"overlay mode must be 'mask' or 'side-by-side', got {overlay_mode!r}")
    cropped, origin = zoom_crop(image, zoom, zoom_center)
    return RenderedSlice(encode_image(cropped, fmt), fmt, cropped.shape[:2], origin)


def thumbnail_montage(
    slices: Sequence[np.ndarray],
    center: float,
    width: float,
    *,
    size: int = 64,
    columns: int = 8,
    slope: float = 1.0,
    intercept: float = 0.0,
) -> np.ndarray:
    """Small windowed copies of ``slices`` tiled in a grid (row-major), as one uint8 image.

    Tile ``k`` sits at rows ``(k // columns) * size`` and columns ``(k % columns) * size``.
    Each slice is shrunk with Pillow's area-averaging thumbnail so thin structures survive.

    Raises
    ------
    RenderError
        For an empty list, a size below 8 or columns below 1.
    """
    from PIL import Image

    if not slices:
        raise RenderError("no slices to make thumbnails of")
    if size < 8 or columns < 1:
        raise RenderError(f"thumbnail size must be at least 8 and columns at least 1, got {size}, {columns}")
    n = len(slices)
    columns = min(columns, n)
    rows = (n + columns - 1) // columns
    out = np.zeros((rows * size, columns * size), dtype=np.uint8)
    for k, pixels in enumerate(slices):
        picture = Image.fromarray(apply_window(pixels, center, width, slope, intercept))
        picture.thumbnail((size, size), Image.Resampling.BOX)
        tile = np.asarray(picture)
        r, c = (k // columns) * size, (k % columns) * size
        dy, dx = (size - tile.shape[0]) // 2, (size - tile.shape[1]) // 2
        out[r + dy : r + dy + tile.shape[0], c + dx : c + dx + tile.shape[1]] = tile
    return out


# -- cache -----------------------------------------------------------------------------------


class RenderCache:
    """A small thread-safe LRU of rendered pictures, keyed by whatever decides the picture.

    Parameters
    ----------
    maxsize : int
        Pictures kept; the least recently used goes first.
    """

    def __init__(self, maxsize: int = 64) -> None:
        if maxsize < 1:
            raise RenderError(f"cache size must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, RenderedSlice] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> RenderedSlice | None:
        """The picture stored under ``key``, or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: Hashable, item: RenderedSlice) -> None:
        """Store a picture, dropping the least recently used beyond ``maxsize``."""
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every picture (e.g. when the series file changed)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
