"""export_job against a real store, real result files (one from a real Dask job) and a real Orthanc."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest
import requests
from pydicom.uid import CTImageStorage, SegmentationStorage

from pacslab.config import load_config
from pacslab.export import (
    EmptyResult,
    IncompleteResult,
    SendIncomplete,
    SourceMismatch,
    deidentified_export,
    export_job,
    send_to_pacs,
    write_folder,
)
from pacslab.ingest import ingest_paths
from pacslab.pacs import connect_pacs
from pacslab.samples import phantom_ct_datasets
from pacslab.store import JobRecord
from pacslab.store.results import ResultWriter

N_SLICES = 8
SIZE = 64


@pytest.fixture
def ct_store(store, tmp_path: Path):
    """A store holding the 8-slice 64x64 phantom CT; returns (store, SeriesInfo, HU volume)."""
    folder = tmp_path / "ct"
    folder.mkdir()
    for ds in phantom_ct_datasets(N_SLICES, SIZE):
        ds.save_as(folder / f"{ds.InstanceNumber:03d}.dcm", enforce_file_format=True)
    report = ingest_paths(store, [folder])
    (series_uid,) = report.series_uids
    info = store.series(series_uid)
    hu = np.stack([store.read_slice(series_uid, i, rescaled=True) for i in range(info.n_slices)])
    return store, info, hu


def _record_result(
    store, info, job_id: str, kind: str, values: dict[int, object], dtype, shape=(SIZE, SIZE)
) -> JobRecord:
    """Write a result file the way a job's writer does, and record the job in the catalog."""
    path = store.jobs_dir / f"{job_id}.h5"
    provenance = {
        "processor": f"test_{kind}",
        "processor_version": "1.0",
        "params": {"level": 3},
        "series_uid": info.series_uid,
        "job_id": job_id,
        "sop_instance_uids": list(info.sop_instance_uids),
    }
    with ResultWriter(path, kind, info.n_slices, shape, dtype, provenance) as writer:  # type: ignore[arg-type]
        writer.write_many(list(values.items()))
    record = JobRecord(
        job_id=job_id,
        processor=f"test_{kind}",
        version="1.0",
        params_json=json.dumps({"level": 3}),
        series_uid=info.series_uid,
        result_path=str(path),
        status="done" if len(values) == info.n_slices else "cancelled",
        total=info.n_slices,
        done=len(values),
    )
    store.record_job(record)
    return record


def test_mask_job_becomes_a_seg_of_the_stored_series(ct_store, tmp_path: Path, dciodvfy, dcmdump) -> None:
    store, info, hu = ct_store
    mask = hu > 500
    _record_result(store, info, "job-mask", "mask", {i: mask[i] for i in range(info.n_slices)}, np.uint8)
    exported = export_job(store, "job-mask")
    (seg,) = exported.datasets
    assert seg.SOPClassUID == SegmentationStorage
    assert seg.SegmentSequence[0].SegmentLabel == "test_mask"
    assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "1.0"
    (path,) = write_folder(exported.datasets, tmp_path / "out")
    assert dciodvfy(path).errors == []
    assert info.series_uid in dcmdump(path)
    back = hd.seg.segread(path)
    pixels = back.get_pixels_by_source_instance(
        source_sop_instance_uids=list(info.sop_instance_uids), combine_segments=True
    )
    np.testing.assert_array_equal(np.asarray(pixels), mask.astype(np.uint8))
    # Exporting again gives the same instance: sending it twice replaces, never duplicates.
    assert export_job(store, "job-mask").datasets[0].SOPInstanceUID == seg.SOPInstanceUID


def test_partial_job_is_refused_unless_asked(ct_store) -> None:
    store, info, hu = ct_store
    done = {i: hu[i] for i in range(3)}
    _record_result(store, info, "job-part", "image", done, np.float32)
    with pytest.raises(IncompleteResult, match="3 of 8 slices done"):
        export_job(store, "job-part")
    exported = export_job(store, "job-part", allow_partial=True)
    assert exported.slices == [0, 1, 2]
    assert exported.skipped == [3, 4, 5, 6, 7]
    assert [ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in exported.datasets] == list(
        info.sop_instance_uids[:3]
    )
    _record_result(store, info, "job-none", "image", {}, np.float32)
    with pytest.raises(EmptyResult, match="no finished slice"):
        export_job(store, "job-none", allow_partial=True)


def test_result_of_a_replaced_series_is_refused(ct_store) -> None:
    store, info, hu = ct_store
    record = _record_result(store, info, "job-old", "image", {i: hu[i] for i in range(8)}, np.float32)
    path = Path(record.result_path)
    stale = store.jobs_dir / "job-stale.h5"
    provenance = {
        "processor": "p",
        "processor_version": "1",
        "params": {},
        "series_uid": info.series_uid,
        "job_id": "job-stale",
        "sop_instance_uids": [f"1.2.3.{i}" for i in range(info.n_slices)],
    }
    with ResultWriter(stale, "image", info.n_slices, (SIZE, SIZE), np.float32, provenance) as writer:
        writer.write_many([(i, hu[i]) for i in range(info.n_slices)])
    store.record_job(JobRecord("job-stale", "p", "1", "{}", info.series_uid, str(stale), "done", 8, 8))
    assert path.exists()
    with pytest.raises(SourceMismatch, match="run the job again"):
        export_job(store, "job-stale")


def test_measurement_job_gives_csv_and_sr(ct_store, tmp_path: Path, dciodvfy) -> None:
    store, info, hu = ct_store
    dtype = np.dtype([("area_mm2", "f8"), ("mean_hu", "f8")])
    values = {
        i: np.array((float((hu[i] > 0).sum()) * 16.0, float(hu[i].mean())), dtype=dtype) for i in range(8)
    }
    _record_result(store, info, "job-m", "measurements", values, dtype, shape=())
    exported = export_job(store, "job-m", report=True, measurements_csv=tmp_path / "m.csv")
    table = pd.read_csv(exported.csv_path)
    assert table["slice"].tolist() == list(range(8))
    assert table["sop_instance_uid"].tolist() == list(info.sop_instance_uids)
    np.testing.assert_allclose(table["mean_hu"], [float(hu[i].mean()) for i in range(8)])
    (sr,) = exported.datasets
    (path,) = write_folder([sr], tmp_path / "sr")
    assert dciodvfy(path).errors == []


def test_denoise_job_on_dask_to_orthanc(
    ct_store, dask_client, empty_orthanc, dciodvfy, tmp_path: Path
) -> None:
    """The whole path: a real job on Dask, export, C-STORE to Orthanc, listed in the right study."""
    from pacslab.jobs import run_job

    store, info, _hu = ct_store
    job = run_job(dask_client, store, "gaussian_denoise", {"sigma": 1.0}, [info.series_uid])
    summary = job.wait(timeout=120)
    assert summary.status == "done"
    exported = export_job(store, job.job_id, units_kept=True)
    assert len(exported.datasets) == N_SLICES
    assert {ds.SOPClassUID for ds in exported.datasets} == {CTImageStorage}
    for path in write_folder(exported.datasets, tmp_path / "derived"):
        assert dciodvfy(path).errors == []
    mask_job = run_job(dask_client, store, "otsu_mask", {}, [info.series_uid])
    assert mask_job.wait(timeout=120).status == "done"
    seg = export_job(store, mask_job.job_id).datasets

    config = load_config(env={})
    with connect_pacs(empty_orthanc.node, config) as pacs:
        statuses = send_to_pacs(pacs, [*exported.datasets, *seg])
        assert all(s.ok for s in statuses)
        again = send_to_pacs(pacs, [*exported.datasets, *seg])  # idempotent: same UIDs
        assert all(s.ok for s in again)

    found = requests.post(
        f"{empty_orthanc.url}/tools/find",
        json={"Level": "Study", "Query": {"StudyInstanceUID": info.study_uid}, "Expand": True},
        timeout=10,
    ).json()
    (study,) = found
    series = [requests.get(f"{empty_orthanc.url}/series/{sid}", timeout=10).json() for sid in study["Series"]]
    by_uid = {s["MainDicomTags"]["SeriesInstanceUID"]: s for s in series}
    derived_uid = str(exported.datasets[0].SeriesInstanceUID)
    assert len(by_uid[derived_uid]["Instances"]) == N_SLICES  # sent twice, stored once
    assert "gaussian_denoise" in by_uid[derived_uid]["MainDicomTags"]["SeriesDescription"]
    assert len(by_uid[str(seg[0].SeriesInstanceUID)]["Instances"]) == 1
    assert by_uid[str(seg[0].SeriesInstanceUID)]["MainDicomTags"]["Modality"] == "SEG"


def test_refused_instances_are_reported(ct_store, refusing_scp) -> None:
    store, info, hu = ct_store
    _record_result(store, info, "job-x", "image", {i: hu[i] for i in range(8)}, np.float32)
    datasets = export_job(store, "job-x").datasets
    with connect_pacs(refusing_scp.node, load_config(env={})) as pacs:
        with pytest.raises(SendIncomplete, match="refused 1 of 8") as refused:
            send_to_pacs(pacs, datasets)
        statuses = send_to_pacs(pacs, datasets, raise_on_failure=False)
    failed = [s for s in refused.value.statuses if not s.ok]
    assert [s.sop_instance_uid for s in failed] == [str(datasets[0].SOPInstanceUID)]
    assert failed[0].status == 0xA700
    assert [s.ok for s in statuses] == [False] + [True] * 7
    assert sorted(set(refusing_scp.received)) == sorted(str(ds.SOPInstanceUID) for ds in datasets[1:])


def test_deidentified_export_to_folder_and_orthanc(ct_store, empty_orthanc, tmp_path: Path, dciodvfy) -> None:
    store, info, hu = ct_store
    _record_result(store, info, "job-d", "mask", {i: hu[i] > 500 for i in range(8)}, np.uint8)
    seg = export_job(store, "job-d").datasets
    sources = [store.read_header(info.series_uid, i) for i in range(info.n_slices)]
    for ds, pixels in zip(sources, store.read_slices(info.series_uid), strict=True):
        ds.PixelData = pixels.tobytes()
    sources[7].BurnedInAnnotation = "YES"
    with connect_pacs(empty_orthanc.node, load_config(env={})) as pacs:
        result = deidentified_export(
            [*sources, *seg], tmp_path / "keys" / "map.csv", folder=tmp_path / "deid", client=pacs, seed="k"
        )
    assert result.n_exported == 8
    assert [h.sop_instance_uid for h in result.held_back] == [info.sop_instance_uids[7]]
    assert all(s.ok for s in result.statuses)
    for path in result.paths:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.PatientID != info.patient_id
        assert dciodvfy(path).errors == []
    table = pd.read_csv(result.pseudonym_map, dtype=str)
    (pseudo_study,) = table[table["attribute"] == "StudyInstanceUID"]["pseudonym"]
    patients = requests.get(f"{empty_orthanc.url}/patients?expand", timeout=10).json()
    assert [p["MainDicomTags"]["PatientID"] for p in patients] != [info.patient_id]
    found = requests.post(
        f"{empty_orthanc.url}/tools/find",
        json={"Level": "Series", "Query": {"StudyInstanceUID": pseudo_study}},
        timeout=10,
    ).json()
    assert len(found) == 2  # the images and the SEG, under the pseudonymous study
