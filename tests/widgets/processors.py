"""A processor that fails on purpose, registered like a notebook's and shipped to workers by value."""

from __future__ import annotations

import sys

import cloudpickle
import numpy as np

from pacslab.processing import Parameter, SliceContext, processor

__all__ = ["fail_on"]


@processor(name="widget_test_fail_on", version="1", output="mask", params={"index": Parameter(-1)})
def fail_on(pixels: np.ndarray, index: int, context: SliceContext) -> np.ndarray:
    """A mask of positive pixels; slice ``index`` raises every time."""
    if context.index == index:
        raise ValueError(f"slice {context.index} cannot be read by this processor")
    return pixels > 0


# Workers cannot import the tests package: send the function by value, as for a notebook.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
