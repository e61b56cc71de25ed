"""ExportPanel driven headless: a job in a real store, sent to an embedded PACS of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from pacslab.config import PacsNode
from pacslab.ingest import Ingest
from pacslab.jobs import run_job
from pacslab.pacs import connect_pacs
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.samples import phantom_ct_datasets
from pacslab.store import SliceStore
from tests.widgets.conftest import closed_port, make_config, settle
from widgets import JobPanel, TransferLog
from widgets.export_panel import ExportPanel


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[EmbeddedPacs]:
    """An empty PACS that only this test sends to."""
    with EmbeddedPacs(tmp_path / "pacs", port=0) as pacs:
        yield pacs


@pytest.fixture
def ct_store(store: SliceStore) -> tuple[SliceStore, str]:
    with Ingest(store) as ingest:
        for ds in phantom_ct_datasets(n_slices=6, size=64):
            ingest.add_dataset(ds)
    return store, store.list_series()[0].series_uid


def test_a_finished_mask_job_is_sent_as_a_segmentation(
    dask_client: Client, ct_store: tuple[SliceStore, str], destination: EmbeddedPacs
) -> None:
    store, series_uid = ct_store
    summary = run_job(dask_client, store, "otsu_mask", {}, [series_uid]).wait()
    node = destination.node
    log = TransferLog()
    panel = ExportPanel(store, [node], config=make_config(node), transfers=log)
    assert [value for _, value in panel.job_picker.options] == [summary.job_id]
    assert panel.job_id == summary.job_id
    assert "sends a DICOM Segmentation" in panel.what.value
    panel.send_button.click()
    settle(panel)
    assert panel.error == ""
    assert (panel.sent, panel.refused) == (1, 0)
    assert panel.status == f"sent SEG to {node.name}: 1 stored, 0 refused"
    assert [(e["modality"], e["sop_class"]) for e in panel.exported] == [("SEG", "Segmentation Storage")]
    study_uid = store.series(series_uid).study_uid
    with connect_pacs(node, make_config(node)) as pacs:
        found = pacs.find_series(study_uid, modality="SEG")
    assert [s.series_uid for s in found] == [panel.exported[0]["series_uid"]]
    assert "success" in panel.result_table.value
    assert [(t.kind, t.state, t.done, t.total) for t in log.transfers] == [("export", "done", 1, 1)]
    assert log.transfers[0].name == f"{summary.job_id} to {node.name}"


def test_a_job_finished_in_the_job_panel_is_picked(
    dask_client: Client, ct_store: tuple[SliceStore, str], destination: EmbeddedPacs
) -> None:
    store, series_uid = ct_store
    jobs = JobPanel(dask_client, store)
    panel = ExportPanel(store, [destination.node], config=make_config(destination.node), jobs=jobs)
    assert panel.job_picker.options == ()
    jobs.processor = "threshold_mask"
    jobs.series_uids = (series_uid,)
    jobs.run()
    settle(jobs)
    assert jobs.summary is not None
    assert panel.job_id == jobs.summary.job_id
    assert "threshold_mask" in panel.job_picker.label


def test_an_incomplete_job_is_refused_unless_partial_is_ticked(
    dask_client: Client, ct_store: tuple[SliceStore, str], destination: EmbeddedPacs
) -> None:
    import dask_cluster
    from tests.widgets import processors  # noqa: F401 - registers widget_test_fail_on

    dask_cluster.register_processors(dask_client)
    store, series_uid = ct_store
    summary = run_job(dask_client, store, "widget_test_fail_on", {"index": 2}, [series_uid], retries=0).wait()
    assert (summary.done, summary.failed) == (5, 1)
    panel = ExportPanel(store, [destination.node], config=make_config(destination.node))
    panel.job_id = summary.job_id
    panel.send()
    settle(panel)
    assert panel.error.startswith(f"job {summary.job_id!r} has 5 of 6 slices done")  # named, not unexpected
    assert (panel.sent, panel.exported) == (0, [])
    panel.partial_box.value = True
    panel.send()
    settle(panel)
    assert panel.error == ""
    assert panel.sent == 1
    assert panel.left_out == 1
    assert panel.status.endswith("; 1 unfinished slice(s) left out")


def test_problems_are_named_and_nothing_is_sent(
    dask_client: Client, ct_store: tuple[SliceStore, str], destination: EmbeddedPacs
) -> None:
    store, series_uid = ct_store
    down = PacsNode(name="down", ae_title="DOWN", host="127.0.0.1", port=closed_port())
    log = TransferLog()
    panel = ExportPanel(store, [destination.node, down], config=make_config(destination.node), transfers=log)
    panel.send()
    assert panel.error == "pick a result to send (run a processor first)"
    panel.node = "nowhere"
    assert panel.error == "no PACS node 'nowhere'; nodes: embedded, down"

    summary = run_job(dask_client, store, "otsu_mask", {}, [series_uid]).wait()
    panel.refresh()
    panel.job_id = summary.job_id
    panel.node = "down"
    panel.send()
    settle(panel)
    assert panel.sent == 0
    assert "127.0.0.1" in panel.error
    assert "unreachable" in panel.error
    assert [(t.kind, t.state, t.error) for t in log.transfers] == [("export", "failed", panel.error)]
    assert "<" not in panel.error_area.value.replace("<div", "").replace("</div>", "")
