"""StudyBrowser driven headless against the embedded PACS and Orthanc on loopback."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from pacslab.config import PacsNode
from pacslab.pacs import connect_pacs
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.store import SliceStore
from tests.widgets.conftest import closed_port, make_config, settle
from widgets import LOCAL_STORE, StudyBrowser, TransferLog


def _browser(pacs_fixture: Any, store: SliceStore, **kw: Any) -> StudyBrowser:
    node = pacs_fixture.node
    browser = StudyBrowser(store, connect_pacs(node, make_config(node)), **kw)
    settle(browser)
    return browser


def test_echo_search_expand_and_retrieve(
    embedded_pacs: EmbeddedPacs, store: SliceStore, small_series: tuple[str, dict[str, Any]]
) -> None:
    series_uid, facts = small_series
    log = TransferLog()
    browser = _browser(embedded_pacs, store, transfers=log)
    assert browser.echo_ok is True
    assert browser.error == ""

    browser.patient_name.value = facts["patient_name"].split("^")[0]
    browser.search_button.click()
    settle(browser)
    assert facts["study_uid"] in {r["study_uid"] for r in browser.studies}
    assert all(r["patient_name"].startswith(facts["patient_name"].split("^")[0]) for r in browser.studies)

    browser.study_table.select([facts["study_uid"]])
    settle(browser)
    assert browser.selected_study == facts["study_uid"]
    row = next(r for r in browser.series if r["series_uid"] == series_uid)
    assert row["n_instances"] == len(facts["files"])
    assert row["stored"] == ""

    browser.series_table.select([series_uid])
    assert not browser.retrieve_button.disabled
    browser.retrieve_button.click()
    settle(browser)
    assert browser.error == ""
    assert browser.retrieved == [series_uid]
    stored = store.series(series_uid)
    assert stored.n_slices * len(stored.channels) >= 1
    assert sum(1 for _ in store.instances(series_uid)) == len(facts["files"])
    bar = browser.transfer_box.children[0].children[0]
    assert (bar.value, bar.bar_style) == (bar.max, "success")
    assert [(t.kind, t.state, t.done) for t in log.transfers] == [("retrieve", "done", len(facts["files"]))]
    # The series list refreshed: the series now shows as stored.
    assert next(r for r in browser.series if r["series_uid"] == series_uid)["stored"] == "yes"


def test_open_is_enabled_after_retrieving_the_picked_series(
    embedded_pacs: EmbeddedPacs, store: SliceStore, small_series: tuple[str, dict[str, Any]]
) -> None:
    series_uid, facts = small_series
    opened: list[str] = []
    browser = _browser(embedded_pacs, store, on_open=opened.append)
    browser.show_study(facts["study_uid"])
    settle(browser)
    browser.series_table.select([series_uid])
    assert browser.open_button.disabled  # not stored yet
    browser.retrieve_button.click()
    settle(browser)
    assert browser.error == ""
    assert browser.selected_series == (series_uid,)
    assert next(r for r in browser.series if r["series_uid"] == series_uid)["stored"] == "yes"
    # Still picked, now stored: it can be opened without picking it again.
    assert not browser.open_button.disabled
    assert not browser.retrieve_button.disabled
    browser.open_button.click()
    assert opened == [series_uid]


def test_search_keeps_the_selected_study_and_its_series(
    embedded_pacs: EmbeddedPacs, store: SliceStore, small_series: tuple[str, dict[str, Any]]
) -> None:
    series_uid, facts = small_series
    browser = _browser(embedded_pacs, store)
    browser.patient_name.value = facts["patient_name"]
    browser.search_button.click()
    settle(browser)
    browser.study_table.select([facts["study_uid"]])
    settle(browser)
    listed = [r["series_uid"] for r in browser.series]
    assert series_uid in listed

    # A search that lists the study again keeps it selected and shows its series.
    browser.patient_name.value = facts["patient_name"].split("^")[0] + "*"
    browser.search_button.click()
    settle(browser)
    assert facts["study_uid"] in {r["study_uid"] for r in browser.studies}
    assert browser.selected_study == facts["study_uid"]
    assert browser.study_table.picker.value == facts["study_uid"]
    assert [r["series_uid"] for r in browser.series] == listed

    # One that does not list it drops the selection and its series.
    browser.patient_name.value = "Nobody^Here"
    browser.search_button.click()
    settle(browser)
    assert browser.studies == []
    assert browser.selected_study == ""
    assert browser.series == []


def test_local_store_is_a_source(small_store: SliceStore, ct_uid: str) -> None:
    opened: list[str] = []
    browser = StudyBrowser(small_store, on_open=opened.append)
    assert browser.source == LOCAL_STORE
    browser.modality.value = "CT"
    browser.search_button.click()
    settle(browser)
    study_uid = small_store.series(ct_uid).study_uid
    assert [r["study_uid"] for r in browser.studies] == [study_uid]
    browser.study_table.select([study_uid])
    settle(browser)
    browser.series_table.select([ct_uid])
    assert not browser.open_button.disabled
    browser.open_button.click()
    assert opened == [ct_uid]


def test_date_range_and_sorting(embedded_pacs: EmbeddedPacs, store: SliceStore) -> None:
    browser = _browser(embedded_pacs, store)
    browser.search_button.click()
    settle(browser)
    everything = browser.studies
    dates = sorted(r["study_date"] for r in everything if r["study_date"])
    browser.study_table.sort_by = "study_date"
    browser.study_table.descending = True
    shown = [r["study_date"] for r in browser.study_table.ordered_rows if r["study_date"]]
    assert shown == dates[::-1]

    day = datetime.datetime.strptime(dates[0], "%Y%m%d").date()
    browser.date_from.value = day
    browser.date_to.value = day
    browser.search_button.click()
    settle(browser)
    assert browser.studies
    assert {r["study_date"] for r in browser.studies} == {dates[0]}


def test_paging_keeps_selection(small_store: SliceStore) -> None:
    browser = StudyBrowser(small_store)
    table = browser.study_table
    table.page_size = 2
    table.rows = [{"study_uid": f"1.2.{i}", "patient_name": f"P{i}"} for i in range(5)]
    assert table.n_pages == 3
    table.select(["1.2.4"])
    table.next.click()
    table.next.click()
    assert table.page == 2
    assert table.picker.value == "1.2.4"
    table.previous.click()
    assert table.picker.value is None
    assert browser.selected_study == "1.2.4"


# pynetdicom drops the socket of a refused connection without closing it (transport.connect).
PYNETDICOM_REFUSED_SOCKET = (
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)


@pytest.mark.filterwarnings(PYNETDICOM_REFUSED_SOCKET)
def test_pacs_down_shows_message(store: SliceStore) -> None:
    node = PacsNode(name="down", ae_title="NOBODY", host="127.0.0.1", port=closed_port())
    browser = StudyBrowser(store, connect_pacs(node, make_config(node)))
    settle(browser)
    assert browser.echo_ok is False
    assert "unreachable" in browser.error
    browser.search_button.click()
    settle(browser)
    assert "unreachable" in browser.error
    assert "pacslab-error" in browser.error_area.value
    assert "Traceback" not in browser.error_area.value
    assert browser.studies == []


def test_association_rejected_shows_message(tmp_path: Path, store: SliceStore) -> None:
    pacs = EmbeddedPacs(tmp_path / "pacs", port=0, allowed_calling_aes=("SOMEONE_ELSE",))
    pacs.start()
    try:
        browser = _browser(pacs, store)
        assert browser.echo_ok is False
        assert "rejected the association" in browser.error
        assert "PACSLAB_WIDGETS" in browser.error
    finally:
        pacs.stop()


def test_bad_filter_and_injection_are_shown_as_text(embedded_pacs: EmbeddedPacs, store: SliceStore) -> None:
    browser = _browser(embedded_pacs, store)
    browser.patient_id.value = "<script>alert(1)</script>\\"
    browser.search_button.click()
    settle(browser)
    assert "backslash" in browser.error
    assert "<script>" not in browser.error_area.value
    assert "&lt;script&gt;" in browser.error_area.value


@pytest.mark.orthanc
def test_orthanc_over_dicomweb(
    orthanc: Any, store: SliceStore, small_series: tuple[str, dict[str, Any]]
) -> None:
    series_uid, facts = small_series
    node = orthanc.web_node
    browser = StudyBrowser(store, connect_pacs(node, make_config(node)))
    settle(browser)
    assert browser.echo_ok is True
    browser.show_study(facts["study_uid"])
    settle(browser)
    assert browser.selected_study == facts["study_uid"]
    browser.series_table.select([series_uid])
    browser.retrieve_button.click()
    settle(browser)
    assert browser.error == ""
    assert browser.retrieved == [series_uid]
    assert len(store.instances(series_uid)) == len(facts["files"])
