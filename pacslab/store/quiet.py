"""pydicom's warnings about odd-but-readable data, collected instead of shown.

pydicom reports such data with ``warnings.warn``; files from the field trigger it often, and
under ``-W error`` (as in the test suite) a warning would become an exception. Collecting
needs ``catch_warnings``, which changes process-wide state, so every caller in pacslab goes
through this one lock (pydicom parsing holds the GIL anyway).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_pydicom"]

_LOCK = threading.RLock()


@contextmanager
def quiet_pydicom() -> Iterator[list[warnings.WarningMessage]]:
    """Collect the warnings raised inside the block (yields the list)."""
    with _LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
