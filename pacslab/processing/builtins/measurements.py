"""Region measurements per slice: area in mm², mean and standard deviation in HU, region count."""

from __future__ import annotations

import numpy as np

from pacslab.processing.builtins.masks import otsu_mask, threshold_mask
from pacslab.processing.parameters import Parameter
from pacslab.processing.registry import SliceContext, processor

__all__ = ["region_measurements"]


@processor(
    name="region_measurements",
    version="1.0",
    origin="builtin",
    output="measurements",
    params={
        "method": Parameter("otsu", choices=("otsu", "manual"), description="how regions are found"),
        "lower": Parameter(-500.0, description="manual: lowest value inside a region (HU)"),
        "upper": Parameter(3000.0, description="manual: highest value inside a region (HU)"),
        "min_area_mm2": Parameter(0.0, minimum=0.0, description="ignore regions smaller than this"),
    },
    description="Area (mm², from PixelSpacing), mean and std (HU) and number of regions in a slice.",
)
def region_measurements(
    pixels: np.ndarray, method: str, lower: float, upper: float, min_area_mm2: float, context: SliceContext
) -> dict[str, float]:
    """Measure the regions found by Otsu or by a manual threshold (holes kept, all regions)."""
    from skimage.measure import label, regionprops

    if method == "otsu":
        mask = otsu_mask(pixels, largest_component=False, fill_holes=False)
    else:
        mask = threshold_mask(pixels, lower=lower, upper=upper, largest_component=False, fill_holes=False)
    pixel_area = float(context.pixel_spacing[0]) * float(context.pixel_spacing[1])
    kept = np.zeros(mask.shape, dtype=bool)
    count = 0
    for region in regionprops(label(mask, connectivity=2)):
        if region.area * pixel_area >= min_area_mm2:
            kept[region.slice][region.image] = True
            count += 1
    values = pixels[kept]
    return {
        "area_mm2": float(kept.sum()) * pixel_area,
        "mean_hu": float(values.mean()) if values.size else float("nan"),
        "std_hu": float(values.std()) if values.size else float("nan"),
        "count": float(count),
    }
