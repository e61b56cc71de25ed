"""App and TransferMonitor: the views wired together, driven headless."""

from __future__ import annotations

from typing import Any

from pydicom import dcmread

from pacslab.pacs import connect_pacs
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.store import SliceStore
from tests.widgets.conftest import make_config, settle
from widgets import TABS, App, TransferLog, TransferMonitor


def test_app_tabs_and_opening_a_series(small_store: SliceStore, ct_uid: str) -> None:
    app = App(small_store)
    assert [app.tabs.get_title(i) for i in range(len(TABS))] == list(TABS)
    assert app.browser.source == "Local store"
    assert "No Dask cluster" in app.tabs.children[4].value
    assert app.tabs.children[TABS.index("Export")] is app.export.widget
    app.open_link({"series": ct_uid})
    assert app.tab == "View"
    assert app.tabs.selected_index == 3
    assert app.viewer.series_uid == ct_uid
    app.tabs.selected_index = 0
    assert app.tab == "Browse"
    app.tab = "Nowhere"
    assert "no tab 'Nowhere'" in app.error


def test_batch_needs_a_pacs_source(small_store: SliceStore) -> None:
    app = App(small_store)
    app.batch.load("list.csv", b"PatientID\n123\n")
    app.batch.run()
    settle(app.batch)
    assert "choose one as the source in the Browse tab" in app.batch.error


def test_retrieve_shows_in_transfers_and_opens(
    embedded_pacs: EmbeddedPacs, store: SliceStore, small_series: tuple[str, dict[str, Any]]
) -> None:
    series_uid, facts = small_series
    node = embedded_pacs.node
    app = App(store, pacs=connect_pacs(node, make_config(node)))
    settle(app.browser)
    app.open_link({"study": facts["study_uid"]})
    settle(app.browser)
    assert app.tab == "Browse"
    assert app.browser.selected_study == facts["study_uid"]
    app.browser.series_table.select([series_uid])
    app.browser.retrieve_button.click()
    settle(app.browser)
    app.monitor.redraw()
    assert (app.monitor.running, app.monitor.finished, app.monitor.failed) == (0, 1, 0)
    assert "retrieve" in app.monitor.table.value
    app.browser.series_table.select([series_uid])
    app.browser.open_button.click()
    assert app.tab == "View"
    assert app.viewer.series_uid == series_uid


def test_patient_link_searches_that_patient(
    embedded_pacs: EmbeddedPacs,
    store: SliceStore,
    small_series: tuple[str, dict[str, Any]],
    sample_series: dict[str, dict[str, Any]],
) -> None:
    _, facts = small_series
    patient_id = str(dcmread(facts["files"][0], stop_before_pixels=True).PatientID)
    expected = {
        s["study_uid"]
        for s in sample_series.values()
        if str(dcmread(s["files"][0], stop_before_pixels=True).PatientID) == patient_id
    }
    node = embedded_pacs.node
    app = App(store, pacs=connect_pacs(node, make_config(node)))
    settle(app.browser)
    app.tab = "View"
    app.open_link({"patient": patient_id})
    settle(app.browser)
    assert app.tab == "Browse"
    assert app.browser.patient_id.value == patient_id
    assert app.browser.error == ""
    assert {r["study_uid"] for r in app.browser.studies} == expected
    assert {r["patient_id"] for r in app.browser.studies} == {patient_id}


def test_monitor_counts_and_escapes() -> None:
    log = TransferLog()
    monitor = TransferMonitor(log, min_interval_s=0.0)
    upload = log.start("upload", "<b>scan</b>.zip", total=3)
    job = log.start("job", "otsu_mask")
    log.update(upload, done=2, bytes=3 * 1024 * 1024)
    assert (monitor.running, monitor.finished) == (2, 0)
    assert "2/3" in monitor.table.value
    assert "3.0 MiB" in monitor.table.value
    log.finish(upload, "failed", "<script>x</script>")
    log.finish(job, "done")
    assert (monitor.running, monitor.finished, monitor.failed) == (0, 2, 1)
    assert "<script>" not in monitor.table.value
    assert "&lt;b&gt;scan&lt;/b&gt;.zip" in monitor.table.value
