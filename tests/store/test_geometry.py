"""Slice ordering along the normal, channel pairing and geometry warnings (pure functions)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pacslab.store import SliceSource
from pacslab.store.geometry import plan_slices, slice_normal

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def source(
    z: float | None,
    *,
    channel: str = "",
    number: int = 0,
    uid: str | None = None,
    orientation: tuple[float, float, float, float, float, float] | None = AXIAL,
    position: tuple[float, float, float] | None = None,
) -> SliceSource:
    if position is None and z is not None:
        position = (0.0, 0.0, z)
    return SliceSource(
        sop_instance_uid=uid or f"1.2.{number}.{channel or 'x'}.{z}",
        frame=1,
        channel=channel,
        header_json="{}",
        read_pixels=lambda: np.zeros((2, 2), np.uint16),
        rows=2,
        cols=2,
        dtype="uint16",
        position=position,
        orientation=orientation if position is not None else None,
        instance_number=number,
    )


def order(sources: list[SliceSource], plan_planes: tuple[tuple[int | None, ...], ...]) -> list[float]:
    return [sources[row[0]].position[2] for row in plan_planes if row[0] is not None]  # type: ignore[index]


def test_sorted_along_the_normal_whatever_the_input_order() -> None:
    sources = [source(float(z), number=10 - z) for z in range(10)]
    random.Random(1).shuffle(sources)
    plan = plan_slices(sources)
    assert order(sources, plan.planes) == [float(z) for z in range(10)]
    assert plan.spacing == pytest.approx(1.0)
    assert plan.warnings == ()
    assert plan.channels == ("",)


def test_oblique_series_uses_the_plane_normal() -> None:
    c, s = np.cos(0.5), np.sin(0.5)
    orientation = (1.0, 0.0, 0.0, 0.0, float(c), float(s))
    normal = slice_normal(orientation)
    sources = [
        source(None, number=k, orientation=orientation, position=tuple(float(v) for v in k * 2.0 * normal))  # type: ignore[arg-type]
        for k in (3, 0, 2, 1)
    ]
    plan = plan_slices(sources)
    assert [sources[row[0]].instance_number for row in plan.planes] == [0, 1, 2, 3]  # type: ignore[index]
    assert plan.spacing == pytest.approx(2.0)


def test_channels_at_the_same_position_share_a_plane() -> None:
    sources = [
        source(float(z), channel=ch, number=2 * z + (ch == "phase"))
        for z in range(3)
        for ch in ("phase", "magnitude")
    ]
    plan = plan_slices(sources)
    assert plan.channels == ("magnitude", "phase")
    assert len(plan.planes) == 3
    for row in plan.planes:
        assert [sources[i].channel for i in row if i is not None] == ["magnitude", "phase"]
        assert sources[row[0]].position == sources[row[1]].position  # type: ignore[index]


def test_missing_channel_is_flagged() -> None:
    sources = [
        source(0.0, channel="magnitude"),
        source(0.0, channel="phase"),
        source(1.0, channel="magnitude"),
    ]
    plan = plan_slices(sources)
    assert plan.planes[1] == (2, None)
    assert any("'phase' missing at 1" in w for w in plan.warnings)


def test_duplicate_positions_are_kept_and_flagged() -> None:
    sources = [source(0.0, number=1), source(0.0, number=2), source(1.0, number=3)]
    plan = plan_slices(sources)
    assert len(plan.planes) == 3
    assert any(w.startswith("duplicate positions") for w in plan.warnings)


def test_gap_is_flagged() -> None:
    plan = plan_slices([source(z) for z in (0.0, 1.0, 2.0, 4.0, 5.0)])
    assert any(w.startswith("gap") for w in plan.warnings)


def test_spacing_jitter_is_flagged() -> None:
    plan = plan_slices([source(z) for z in (0.0, 1.0, 2.2, 3.0, 4.0)])
    assert any(w.startswith("irregular spacing") for w in plan.warnings)


def test_rounding_noise_is_not_jitter() -> None:
    plan = plan_slices([source(z + (1e-5 if z % 2 else 0.0)) for z in range(6)])
    assert plan.warnings == ()


def test_mixed_orientation_is_flagged() -> None:
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    sources = [source(z) for z in (0.0, 1.0, 2.0)] + [
        source(None, orientation=sagittal, position=(5.0, 0.0, 0.0))
    ]
    plan = plan_slices(sources)
    assert any(w.startswith("mixed orientation") for w in plan.warnings)
    assert len(plan.planes) == 4


def test_without_positions_instance_number_orders() -> None:
    sources = [source(None, number=n) for n in (3, 1, 2)]
    plan = plan_slices(sources)
    assert [sources[row[0]].instance_number for row in plan.planes] == [1, 2, 3]  # type: ignore[index]
    assert plan.warnings == ("no slice positions: ordered by instance number",)
    assert plan_slices([source(None)]).warnings == ()
