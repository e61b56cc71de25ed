"""Item 5: a series whose slices do not make a regular volume is flagged, never stacked silently.

Four broken series (orientation change, spacing jitter, a duplicate position, a gap) and a
clean one are uploaded through the upload panel. The catalog must flag every broken one (or
split it) and not the clean one; what the user sees (the upload panel after the upload, the
viewer with the series open) must say so too.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pacslab.store import SliceStore
from tests.reliability.conftest import Figures
from tests.reliability.dicom_bytes import PREFIX, encode, image
from tests.reliability.widget_text import visible_text
from widgets import SliceViewer, UploadPanel

ITEM = 5
N = 10
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _slices(
    positions: list[tuple[float, float, float]], orientations: list[tuple[float, ...]]
) -> list[Dataset]:
    uid = generate_uid(PREFIX)
    return [
        image(16, 16, series_uid=uid, position=p, orientation=o, number=i + 1)
        for i, (p, o) in enumerate(zip(positions, orientations, strict=True))
    ]


def _series() -> dict[str, list[Dataset]]:
    rng = random.Random(5)
    axial = [AXIAL] * N
    straight = [(0.0, 0.0, float(i)) for i in range(N)]
    return {
        "clean": _slices(straight, axial),
        "orientation change": _slices(
            straight[:5] + [(0.0, float(i), 0.0) for i in range(5)], axial[:5] + [CORONAL] * 5
        ),
        "spacing jitter": _slices([(0.0, 0.0, i + rng.uniform(-0.3, 0.3)) for i in range(N)], axial),
        "duplicate position": _slices([*straight, straight[5]], [*axial, AXIAL]),
        "gap": _slices([p for i, p in enumerate(straight) if i != 5], axial[:-1]),
    }


def _upload(panel: UploadPanel, datasets: list[Dataset]) -> None:
    now = dt.datetime.now(dt.UTC)
    files = [(f"{ds.InstanceNumber:03d}.dcm", encode(ds)) for ds in datasets]
    panel.upload.value = tuple(
        {
            "name": n,
            "type": "application/dicom",
            "size": len(d),
            "content": memoryview(d),
            "last_modified": now,
        }
        for n, d in files
    )
    panel.ingest_uploaded()
    assert panel.wait(60)
    assert panel.error == ""


@pytest.fixture
def uploaded(tmp_path: Path) -> tuple[SliceStore, dict[str, str], dict[str, str]]:
    """Store, the series UID of each variant, and what the upload panel showed after each."""
    store = SliceStore(tmp_path / "store")
    panel = UploadPanel(store)
    uids, shown = {}, {}
    for name, datasets in _series().items():
        _upload(panel, datasets)
        uids[name] = str(datasets[0].SeriesInstanceUID)
        shown[name] = visible_text(panel.widget)
    return store, uids, shown


def test_the_catalog_flags_every_irregular_series(
    uploaded: tuple[SliceStore, dict[str, str], dict[str, str]], figures: Figures
) -> None:
    store, uids, _ = uploaded
    warnings = {name: store.series(uid).geometry_warnings for name, uid in uids.items()}
    broken = [name for name in uids if name != "clean"]
    flagged = [name for name in broken if warnings[name]]
    figures("irregular series flagged in the catalog", f"{len(flagged)} of {len(broken)}")
    figures("silently stacked volumes", len(broken) - len(flagged))
    figures("warnings", {name: list(w) for name, w in warnings.items()})
    assert warnings["clean"] == ()
    assert flagged == broken
    assert "orientation" in " ".join(warnings["orientation change"])
    assert "spacing" in " ".join(warnings["spacing jitter"])
    assert "duplicate" in " ".join(warnings["duplicate position"])
    assert "gap" in " ".join(warnings["gap"])


def test_the_user_is_told_in_the_upload_panel_and_the_viewer(
    uploaded: tuple[SliceStore, dict[str, str], dict[str, str]], figures: Figures
) -> None:
    store, uids, shown = uploaded
    viewer = SliceViewer(store)
    told = []
    for name, uid in uids.items():
        if name == "clean":
            continue
        first_warning = store.series(uid).geometry_warnings[0]
        viewer.show_series(uid)
        if first_warning in shown[name] and first_warning in visible_text(viewer.widget):
            told.append(name)
    figures(
        "irregular series the user is told about (upload panel and viewer)", f"{len(told)} of {len(uids) - 1}"
    )
    assert len(told) == len(uids) - 1
