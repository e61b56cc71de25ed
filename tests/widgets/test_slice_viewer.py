"""SliceViewer driven headless over a real store: what the picture, probe and panels show."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pacslab.samples import mr_phantom_datasets, phantom_ct_datasets
from pacslab.store import SliceStore
from pacslab.store.results import ResultWriter
from tests.widgets.conftest import settle
from widgets import SliceViewer


def _picture(viewer: SliceViewer) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(viewer.image.value)))


def _dom(viewer: SliceViewer, source: Any, **event: Any) -> None:
    # What ipyevents' front end sends when the user clicks or scrolls on the picture.
    source._handle_mouse_msg(None, event, [])


def _hu_from_pydicom(datasets: Any, sop_uid: str, row: int, col: int) -> float:
    ds = next(d for d in datasets if d.SOPInstanceUID == sop_uid)
    return float(ds.pixel_array[row, col] * float(ds.RescaleSlope) + float(ds.RescaleIntercept))


def test_opens_with_header_preset_and_shows_middle_slice(small_store: SliceStore, ct_uid: str) -> None:
    viewer = SliceViewer(small_store, ct_uid)
    settle(viewer)
    assert viewer.error == ""
    assert (viewer.n_slices, viewer.index) == (6, 3)
    assert viewer.preset == "BRAIN 40/80"
    assert (viewer.center, viewer.width) == (40.0, 80.0)
    options = list(viewer.preset_picker.options)
    assert {"ABDOMEN 40/400", "LUNG -600/1500", "BONE 400/1800", "brain 40/80", "auto", "custom"} <= set(
        options
    )
    assert viewer.image.format == "jpeg"
    assert _picture(viewer).shape == (64, 64)
    assert viewer.unit == "HU"
    assert viewer.channel_picker.layout.display == "none"


def test_presets_and_free_window_change_the_picture(small_store: SliceStore, ct_uid: str) -> None:
    viewer = SliceViewer(small_store, ct_uid)
    brain = _picture(viewer)
    viewer.preset_picker.value = "lung -600/1500"
    assert (viewer.center, viewer.width) == (-600.0, 1500.0)
    lung = _picture(viewer)
    assert not np.array_equal(brain, lung)
    viewer.width_slider.value = 2000
    assert viewer.preset == "custom"
    assert viewer.preset_picker.value == "custom"
    assert viewer.width == 2000
    viewer.preset = "auto"
    assert viewer.width >= 1


def test_slider_play_and_wheel_scroll(small_store: SliceStore, ct_uid: str) -> None:
    viewer = SliceViewer(small_store, ct_uid)
    viewer.slider.value = 0
    first = bytes(viewer.image.value)  # air only: the phantom starts above the head
    viewer.play.value = 3
    assert viewer.index == 3
    assert bytes(viewer.image.value) != first
    viewer.play.value = 5
    _dom(viewer, viewer.image_events, type="wheel", deltaY=-100)
    assert viewer.index == 4
    _dom(viewer, viewer.image_events, type="wheel", deltaY=100)
    _dom(viewer, viewer.image_events, type="wheel", deltaY=100)
    assert viewer.index == 5  # stops at the last slice


def test_click_probes_hounsfield_units(small_store: SliceStore, ct_uid: str) -> None:
    viewer = SliceViewer(small_store, ct_uid)
    info = small_store.series(ct_uid)
    _dom(viewer, viewer.image_events, type="click", dataX=30, dataY=20)
    assert viewer.probe == (20, 30)
    expected = _hu_from_pydicom(phantom_ct_datasets(n_slices=6, size=64), info.sop_instance_uids[3], 20, 30)
    assert viewer.probe_value == pytest.approx(expected)
    assert f"{expected:.0f} HU" in viewer.probe_label.value
    viewer.index = 0
    expected0 = _hu_from_pydicom(phantom_ct_datasets(n_slices=6, size=64), info.sop_instance_uids[0], 20, 30)
    assert viewer.probe_value == pytest.approx(expected0)


def test_zoom_centres_on_the_probe_and_clicks_map_back(small_store: SliceStore, ct_uid: str) -> None:
    viewer = SliceViewer(small_store, ct_uid)
    viewer.click(48, 40)
    viewer.zoom = 4.0
    assert _picture(viewer).shape == (16, 16)
    assert viewer.rendered is not None
    assert viewer.rendered.origin == (32, 40)
    viewer.click(2, 3)  # a pixel of the zoomed picture
    assert viewer.probe == (35, 42)


def test_mr_channels_have_their_own_values(small_store: SliceStore, mr_uid: str) -> None:
    viewer = SliceViewer(small_store, mr_uid)
    assert viewer.channel_picker.layout.display is None
    assert [label for label, _ in viewer.channel_picker.options] == ["magnitude", "phase"]
    assert viewer.preset == viewer.preset_picker.options[0]
    assert not any(name.startswith("lung") for name in viewer.preset_picker.options)
    viewer.click(16, 16)
    magnitude = viewer.probe_value
    viewer.channel_picker.value = 1
    assert viewer.channel == 1
    phase = viewer.probe_value
    assert phase is not None
    assert magnitude != phase
    assert -np.pi - 1e-3 <= phase <= np.pi + 1e-3
    assert viewer.unit == ""
    sop = small_store.read_header(mr_uid, viewer.index, 1).SOPInstanceUID
    ds = next(d for d in mr_phantom_datasets(n_slices=4, size=32) if d.SOPInstanceUID == sop)
    assert phase == pytest.approx(
        float(ds.pixel_array[16, 16] * ds.RescaleSlope + ds.RescaleIntercept), abs=1e-4
    )


def test_metadata_panel_is_searchable(small_store: SliceStore, ct_uid: str) -> None:
    viewer = SliceViewer(small_store, ct_uid)
    viewer.show_metadata()
    keywords = {row[1] for row in viewer.metadata_rows}
    assert {"PatientName", "SOPInstanceUID", "WindowCenter"} <= keywords
    viewer.metadata_search.value = "window"
    assert {row[1] for row in viewer.metadata_rows} == {
        "WindowCenter",
        "WindowWidth",
        "WindowCenterWidthExplanation",
    }
    uid = small_store.series(ct_uid).sop_instance_uids[viewer.index]
    viewer.metadata_search.value = "sopinstance"
    assert [row[3] for row in viewer.metadata_rows] == [uid]
    viewer.metadata_search.value = "<img src=x onerror=alert(1)>"
    assert viewer.metadata_rows == []
    assert "<img" not in viewer.metadata_table.value


def test_thumbnails_jump_to_their_slice(small_store: SliceStore, ct_uid: str) -> None:
    viewer = SliceViewer(small_store, ct_uid)
    settle(viewer)
    assert viewer.thumbnail_indices == [0, 1, 2, 3, 4, 5]
    montage = np.asarray(Image.open(io.BytesIO(viewer.thumbnails.value)))
    assert montage.shape == (48, 6 * 48)
    _dom(viewer, viewer.thumbnail_events, type="click", dataX=2 * 48 + 5, dataY=10)
    assert viewer.index == 2


def test_rendered_slices_are_cached(small_store: SliceStore, ct_uid: str) -> None:
    viewer = SliceViewer(small_store, ct_uid)
    for i in [0, 1, 2, 3, 4, 5]:
        viewer.index = i
    drawn = viewer.renders
    for i in [4, 3, 2, 1, 0]:
        viewer.index = i
    assert viewer.renders == drawn
    assert viewer.cache.hits >= 5


def test_unknown_series_is_an_error_in_the_widget(small_store: SliceStore) -> None:
    viewer = SliceViewer(small_store)
    viewer.show_series("1.2.3.4")
    assert "no series '1.2.3.4'" in viewer.error
    assert viewer.series_uid == ""


def _mask_writer(small_store: SliceStore, ct_uid: str, path: Path) -> ResultWriter:
    info = small_store.series(ct_uid)
    return ResultWriter(
        path,
        "mask",
        info.n_slices,
        (info.rows, info.cols),
        np.uint8,
        {
            "processor": "test_mask",
            "processor_version": "1",
            "params": {},
            "series_uid": ct_uid,
            "job_id": "test",
            "sop_instance_uids": list(info.sop_instance_uids),
        },
    )


def test_mask_overlay_follows_done_slices(small_store: SliceStore, ct_uid: str, tmp_path: Path) -> None:
    viewer = SliceViewer(small_store, ct_uid)
    viewer.preset = "lung -600/1500"
    mask = np.zeros((64, 64), dtype=bool)
    mask[10:20, 10:20] = True
    path = tmp_path / "result.h5"
    with _mask_writer(small_store, ct_uid, path) as writer:
        writer.write(0, mask)
        viewer.show_result(path)
        assert viewer.overlay_mode == "mask"
        assert viewer.overlay_done == 1
        viewer.index = 3
        assert not viewer.overlay_shown
        plain = _picture(viewer)
        writer.write(3, mask)
        viewer.refresh_overlay()
        assert viewer.overlay_done == 2
        assert viewer.overlay_shown
        painted = _picture(viewer)
    red = painted[12:18, 12:18].astype(int)
    assert (red[..., 0] - red[..., 1]).mean() > 60
    assert np.abs(painted[40:50, 40:50].astype(int) - plain[40:50, 40:50, None]).max() <= 8
    viewer.overlay_picker.value = "off"
    assert not viewer.overlay_shown


def test_measurement_result_is_refused(small_store: SliceStore, ct_uid: str, tmp_path: Path) -> None:
    info = small_store.series(ct_uid)
    path = tmp_path / "m.h5"
    dtype = np.dtype([("area", "f8")])
    with ResultWriter(
        path,
        "measurements",
        info.n_slices,
        (),
        dtype,
        {"processor": "m", "processor_version": "1", "params": {}, "series_uid": ct_uid, "job_id": "m"},
    ) as writer:
        writer.write(0, {"area": 1.0})
    viewer = SliceViewer(small_store, ct_uid)
    viewer.show_result(path)
    assert "measurements, not images" in viewer.error
    assert viewer.overlay_mode == "off"
