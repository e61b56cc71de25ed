"""JobPanel driven headless on the real 2-worker Dask cluster over a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

import dask_cluster
from pacslab.store import SliceStore
from pacslab.store.results import ResultReader
from tests.widgets.conftest import settle
from widgets import JobPanel, SliceViewer, TransferLog
from widgets.job_panel import parameter_control


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes with the dashboard on a free port (the panel links to it).

    Not the shared ``dask_client``: that one asks for no dashboard, yet its scheduler still
    binds the default HTTP port 8787 and fails when anything else holds it.
    """
    from distributed import LocalCluster

    from tests.widgets import processors  # noqa: F401 - registers them

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as dask_client,
    ):
        dask_cluster.register_processors(dask_client)
        yield dask_client


def test_controls_follow_parameter_ranges() -> None:
    from pacslab.processing import Parameter

    slider = parameter_control("sigma", Parameter(1.0, minimum=0.0, maximum=50.0, description="px"))
    assert (type(slider).__name__, slider.min, slider.max, slider.value) == ("FloatSlider", 0.0, 50.0, 1.0)
    assert type(parameter_control("n", Parameter(3, minimum=1))).__name__ == "BoundedIntText"
    assert type(parameter_control("flag", Parameter(True))).__name__ == "Checkbox"
    choice = parameter_control("method", Parameter("otsu", choices=("otsu", "manual")))
    assert list(choice.options) == ["otsu", "manual"]


def test_run_mask_job_live_in_viewer(client: Client, small_store: SliceStore, ct_uid: str) -> None:
    viewer = SliceViewer(small_store)
    log = TransferLog()
    panel = JobPanel(client, small_store, viewer=viewer, transfers=log)
    assert "otsu_mask" in panel.processor_picker.options
    assert 'href="http://127.0.0.1:' in panel.dashboard.value
    panel.processor_picker.value = "threshold_mask"
    assert set(panel.param_controls) == {"lower", "upper", "largest_component", "fill_holes"}
    panel.set_params(lower=0.0)
    assert panel.params["lower"] == 0.0
    panel.series_picker.value = (ct_uid,)
    panel.run_button.click()
    settle(panel, 120)
    assert panel.error == ""
    assert (panel.job_status, panel.done, panel.failed, panel.total) == ("done", 6, 0, 6)
    assert (panel.progress.value, panel.progress.bar_style) == (6, "success")
    assert "6 done, 0 failed of 6" in panel.progress_label.value
    assert panel.workers
    assert sum(w["slices"] for w in panel.workers) == 6
    # The viewer followed the job: every slice's mask is there and drawn.
    assert viewer.series_uid == ct_uid
    assert viewer.overlay_mode == "mask"
    assert viewer.overlay_done == 6
    assert viewer.overlay_shown
    path = panel.summary.result_paths[ct_uid] if panel.summary else None
    assert path is not None
    assert ResultReader(path).done_mask().all()
    assert [(t.kind, t.state, t.done) for t in log.transfers] == [("job", "done", 6)]
    viewer.clear_result()
    assert not panel.open_button.disabled
    panel.open_button.click()
    assert viewer.overlay_path == str(path)


def test_failed_slices_are_listed(client: Client, small_store: SliceStore, ct_uid: str) -> None:
    panel = JobPanel(client, small_store)
    panel.processor = "widget_test_fail_on"
    panel.set_params(index=2)
    panel.series_uids = (ct_uid,)
    panel.run()
    settle(panel, 120)
    assert (panel.done, panel.failed) == (5, 1)
    assert [(f["series_uid"], f["index"]) for f in panel.failures] == [(ct_uid, 2)]
    assert "cannot be read by this processor" in panel.failures[0]["error"]
    assert "Failed slices" in panel.failure_table.value
    assert panel.progress.bar_style == "warning"


def test_measurements_are_tabled(client: Client, small_store: SliceStore, ct_uid: str) -> None:
    panel = JobPanel(client, small_store)
    panel.processor = "region_measurements"
    panel.series_uids = (ct_uid,)
    panel.run()
    settle(panel, 120)
    assert panel.error == ""
    assert panel.done == 6
    assert "area" in panel.result_table.value
    assert panel.open_button.disabled


def test_bad_parameter_and_no_series_are_shown(client: Client, small_store: SliceStore, ct_uid: str) -> None:
    panel = JobPanel(client, small_store)
    panel.run_button.click()
    assert "choose at least one series" in panel.error
    panel.processor = "threshold_mask"
    panel.params = {"lower": "<b>ten</b>"}
    panel.series_uids = (ct_uid,)
    panel.run()
    settle(panel)
    assert "parameter 'lower'" in panel.error
    assert "<b>" not in panel.error_area.value


def test_cancel_keeps_finished_slices(client: Client, store: SliceStore, tmp_path: Path) -> None:
    from pacslab.ingest import Ingest
    from pacslab.samples import phantom_ct_datasets

    with Ingest(store) as ingest:
        for ds in phantom_ct_datasets(n_slices=40, size=64):
            ingest.add_dataset(ds)
    [info] = store.list_series()
    panel = JobPanel(client, store)
    panel.processor = "nl_means_denoise"
    panel.series_uids = (info.series_uid,)
    first = __import__("threading").Event()
    panel.observe(lambda c: c["new"] > 0 and first.set(), "done")
    panel.run()
    assert first.wait(120), "no slice was done"
    panel.cancel_button.click()
    settle(panel, 120)
    assert panel.job_status == "cancelled"
    assert 0 < panel.done < 40
    assert panel.summary is not None
    path = panel.summary.result_paths[info.series_uid]
    assert int(ResultReader(path).done_mask().sum()) == panel.done
