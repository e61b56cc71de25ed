"""Window presets for derived images: keep the source's where they still fit, else one from the data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom import Dataset
from pydicom.multival import MultiValue

__all__ = ["WindowPreset", "data_window", "fitting_presets", "source_presets"]

WindowPreset = tuple[str, float, float]  # (explanation, center, width) in real-world units

# A source preset is kept when the derived values fill at least this part of its width:
# a 0..1 probability map under a 400 HU window would show as one flat grey.
_MIN_FILL = 0.1


def _as_list(value: object) -> list[float]:
    if isinstance(value, MultiValue | list | tuple):
        return [float(v) for v in value]
    return [float(value)]  # type: ignore[arg-type]


def source_presets(ds: Dataset) -> list[WindowPreset]:
    """Return the window presets of a source header (empty when it has none)."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return []
    centers, widths = _as_list(ds.WindowCenter), _as_list(ds.WindowWidth)
    names: list[str] = []
    if "WindowCenterWidthExplanation" in ds:
        raw = ds.WindowCenterWidthExplanation
        names = [str(v) for v in raw] if isinstance(raw, MultiValue | list) else [str(raw)]
    names += [f"WINDOW{i + 1}" for i in range(len(names), len(centers))]
    return [(n, c, w) for n, c, w in zip(names, centers, widths, strict=False) if w >= 1]


def data_window(values: np.ndarray) -> WindowPreset:
    """A preset spanning the 1st to 99th percentile of ``values`` (a sample of them when large)."""
    flat = np.asarray(values).ravel()
    if flat.size > 1_000_000:
        flat = flat[:: flat.size // 1_000_000]
    lo, hi = (float(v) for v in np.percentile(flat, [1.0, 99.0]))
    if hi <= lo:  # nearly constant image: a window just around the value
        lo, hi = float(flat.min()), float(flat.max())
    width = max(hi - lo, 1.0)
    return ("DATA", round((lo + hi) / 2, 4), round(width, 4))


def fitting_presets(values: np.ndarray, presets: Sequence[WindowPreset]) -> list[WindowPreset]:
    """Keep the presets the derived ``values`` fill meaningfully; if none, a preset from the data."""
    _, center, width = data_window(values)
    lo, hi = center - width / 2, center + width / 2
    kept = []
    for name, c, w in presets:
        overlap = min(hi, c + w / 2) - max(lo, c - w / 2)
        if overlap >= _MIN_FILL * w:
            kept.append((name, c, w))
    return kept or [data_window(values)]
