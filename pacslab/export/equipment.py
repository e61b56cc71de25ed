"""Who made an exported object: the equipment attributes shared by every export."""

from __future__ import annotations

from importlib import metadata

__all__ = ["MANUFACTURER", "software_version"]

MANUFACTURER = "pacslab"
# Enhanced General Equipment needs a serial number; software has none, so say so plainly.
DEVICE_SERIAL_NUMBER = "none"


def software_version() -> str:
    """Return the installed pacslab version (``"0"`` when run from a source tree not installed)."""
    try:
        return metadata.version("pacslab")
    except metadata.PackageNotFoundError:
        return "0"
