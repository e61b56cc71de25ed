"""Caps that keep hostile or broken input from exhausting memory or disk."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IngestLimits"]


@dataclass(frozen=True)
class IngestLimits:
    """Resource caps of one ingest, all checked before the data they guard is read.

    Attributes
    ----------
    max_image_bytes : int
        Decoded size of one instance (Rows x Columns x frames x samples x bytes), checked
        from the header before any pixel is decoded.
    max_inflated_bytes : int
        Size a deflated-transfer-syntax dataset may inflate to.
    max_zip_member_bytes, max_zip_total_bytes : int
        Uncompressed size of one zip member, and of all members of one archive.
    max_zip_members : int
        Number of members read from one archive.
    """

    max_image_bytes: int = 1 << 30
    max_inflated_bytes: int = 512 << 20
    max_zip_member_bytes: int = 1 << 30
    max_zip_total_bytes: int = 32 << 30
    max_zip_members: int = 200_000
