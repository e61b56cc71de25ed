"""Order image planes along the slice normal and say why they are not a regular volume.

Pure functions: the writer calls :func:`plan_slices` on every version of a series.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pacslab.store.slices import SliceSource

__all__ = ["CHANNEL_ORDER", "SlicePlan", "plan_slices", "slice_normal"]

# Known channel names first, in the order users expect; anything else follows alphabetically.
CHANNEL_ORDER = ("", "magnitude", "phase", "real", "imaginary")
# Positions closer than this (mm) are the same plane: DICOM DS values carry rounding noise.
SAME_PLANE_MM = 1e-3
# Spacing deviating more than this fraction (or SAME_PLANE_MM) from the median is irregular.
SPACING_TOLERANCE = 0.01
GAP_FACTOR = 1.5


@dataclass(frozen=True)
class SlicePlan:
    """The stored order: ``planes[k][c]`` is the index of the source for plane k, channel c."""

    planes: tuple[tuple[int | None, ...], ...]
    channels: tuple[str, ...]
    positions: tuple[float | None, ...]
    orientation: tuple[float, ...] | None
    spacing: float | None
    warnings: tuple[str, ...]


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of the image plane from the six direction cosines of ImageOrientationPatient."""
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:6], dtype=float)
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm > 0 else normal


def _channel_rank(name: str) -> tuple[int, str]:
    return (CHANNEL_ORDER.index(name), "") if name in CHANNEL_ORDER else (len(CHANNEL_ORDER), name)


def _tie_break(source: SliceSource) -> tuple[int, int, str]:
    number = source.instance_number if source.instance_number is not None else 0
    return (number, source.frame, source.sop_instance_uid)


def plan_slices(sources: Sequence[SliceSource]) -> SlicePlan:
    """Group sources into planes sorted along the slice normal, channels side by side.

    Sources at the same position with different ``channel`` share a plane. Several sources of
    one channel at one position, orientations that differ, gaps, irregular spacing and
    missing positions are kept (stacked in instance order) but named in ``warnings``.

    Parameters
    ----------
    sources : sequence of SliceSource
        Every plane of the series, in any order.

    Returns
    -------
    SlicePlan
    """
    channels = tuple(sorted({s.channel for s in sources}, key=_channel_rank))
    column = {name: i for i, name in enumerate(channels)}
    warnings: list[str] = []
    located = [s.position is not None and s.orientation is not None for s in sources]
    orientation: tuple[float, ...] | None = None

    if sources and all(located):
        rounded = [tuple(round(float(v), 4) for v in s.orientation or ()) for s in sources]
        counts = Counter(rounded)
        main = counts.most_common(1)[0][0]
        orientation = main
        if len(counts) > 1:
            warnings.append(f"mixed orientation: {len(counts)} different image orientations in one series")
        group_of = {o: i for i, (o, _) in enumerate(counts.most_common())}
        normals = {o: slice_normal(o) for o in counts}
        keys = [
            (group_of[o], float(np.dot(np.asarray(s.position, dtype=float), normals[o])))
            for s, o in zip(sources, rounded, strict=True)
        ]
    else:
        if any(located):
            warnings.append("some slices have no position or orientation: ordered by instance number")
        elif len(sources) > 1:
            warnings.append("no slice positions: ordered by instance number")
        keys = [(0, float("nan"))] * len(sources)

    order = sorted(range(len(sources)), key=lambda i: (keys[i], _tie_break(sources[i])))
    has_positions = bool(sources) and all(located)

    # Walk the sorted sources, cutting a new cluster when the position (or orientation) changes.
    clusters: list[list[int]] = []
    for i in order:
        if clusters and has_positions:
            last = clusters[-1][-1]
            same_group = keys[last][0] == keys[i][0]
            if same_group and abs(keys[last][1] - keys[i][1]) <= SAME_PLANE_MM:
                clusters[-1].append(i)
                continue
        elif clusters and sources[i].channel not in {sources[j].channel for j in clusters[-1]}:
            # Without positions, a plane is one source per channel, in instance order.
            clusters[-1].append(i)
            continue
        clusters.append([i])

    planes: list[tuple[int | None, ...]] = []
    positions: list[float | None] = []
    duplicates = 0
    missing: Counter[str] = Counter()
    for cluster in clusters:
        per_channel: dict[str, list[int]] = defaultdict(list)
        for i in cluster:
            per_channel[sources[i].channel].append(i)
        depth = max(len(v) for v in per_channel.values())
        duplicates += depth - 1
        for k in range(depth):
            row: list[int | None] = [None] * len(channels)
            for name, members in per_channel.items():
                if k < len(members):
                    row[column[name]] = members[k]
            for name in channels:
                if row[column[name]] is None:
                    missing[name] += 1
            planes.append(tuple(row))
            positions.append(keys[cluster[0]][1] if has_positions else None)

    if duplicates:
        warnings.append(f"duplicate positions: {duplicates} slices share a position with another slice")
    for name, count in sorted(missing.items()):
        warnings.append(f"channel {name!r} missing at {count} positions (stored as zeros)")

    spacing: float | None = None
    if has_positions and len(clusters) > 1:
        centers = [keys[c[0]] for c in clusters]
        main_group = [d for g, d in centers if g == 0]
        diffs = np.diff(np.asarray(main_group, dtype=float))
        if diffs.size:
            spacing = float(np.median(diffs))
            if spacing > 0:
                tolerance = max(SPACING_TOLERANCE * spacing, SAME_PLANE_MM)
                gaps = int(np.count_nonzero(diffs > GAP_FACTOR * spacing))
                if gaps:
                    warnings.append(f"gap: {gaps} missing slice position(s) inside the series")
                elif float(np.max(np.abs(diffs - spacing))) > tolerance:
                    warnings.append(
                        f"irregular spacing: {float(diffs.min()):.4g} to {float(diffs.max()):.4g} mm "
                        f"(median {spacing:.4g} mm)"
                    )

    return SlicePlan(
        planes=tuple(planes),
        channels=channels,
        positions=tuple(positions),
        orientation=orientation,
        spacing=spacing,
        warnings=tuple(warnings),
    )
