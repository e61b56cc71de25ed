"""Item 6: UIDs, Patient IDs and file names that try to leave the store create nothing outside it.

Hostile values ('..' paths, absolute paths, backslashes, NUL, 20,000 characters), each carrying
a token, are put in the Study, Series and SOP Instance UIDs and the Patient ID of small images,
and in upload and zip member names. They go in through every door: an upload, a zip, a C-GET
and a C-MOVE from a PACS holding them, a C-STORE straight to our receiver, and the export to
a folder. Then the file system is searched for anything named with the token.
"""

from __future__ import annotations

import uuid
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from pacslab.config import Config, PacsNode, Timeouts
from pacslab.export import ExportError, write_folder
from pacslab.ingest import Ingest, IngestReport
from pacslab.pacs import PacsError
from pacslab.pacs.client import into_ingest
from pacslab.pacs.dimse import DimseClient
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.pacs.receiver import Receiver
from pacslab.retrieve import retrieve_into_store
from pacslab.store import SliceStore
from tests.reliability.conftest import PROJECT_ROOT, Figures
from tests.reliability.dicom_bytes import encode, image

ITEM = 6
OUR_AE = "PACSLAB_REL"
FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID")

pytestmark = pytest.mark.timeout(180)


def hostile_values(token: str) -> dict[str, str]:
    return {
        "dot-dot": f"../../../../../../tmp/escape-{token}-a",
        "absolute": f"/tmp/escape-{token}-b",
        "backslash": f"..\\..\\escape-{token}-c",
        "nul": f"escape-{token}-d\x00/../../x",
        "over-long": "9" * 20000 + f"escape-{token}-e",
    }


def hostile_images(token: str) -> dict[str, Dataset]:
    images = {}
    for label, value in hostile_values(token).items():
        for field in FIELDS:
            ds = image(4, 4)
            setattr(ds, field, value)
            images[f"{field} {label}"] = ds
    return images


def _token_files(token: str, roots: list[Path]) -> list[Path]:
    """Files and folders whose name carries the token: under ``roots[0]`` and beside the others."""
    found = [p for p in roots[0].rglob("*") if token in p.name]
    for folder in roots[1:]:
        found += [p for p in folder.iterdir() if token in p.name]
    return found


def _ingest(store: SliceStore, add: list[tuple[str, bytes]], zip_path: Path | None = None) -> IngestReport:
    with Ingest(store) as ingest:
        for name, data in add:
            ingest.add_bytes(name, data)
        if zip_path is not None:
            ingest.add_path(zip_path)
    assert ingest.report is not None
    return ingest.report


def _config(node: PacsNode) -> Config:
    return Config(
        ae_title=OUR_AE,
        receiver_port=0,
        nodes=(node,),
        default_node=node.name,
        timeouts=Timeouts(connection=3, acse=5, dimse=10, network=10),
    )


# pydicom warns on each hostile value it is given or reads; in use it would only log that.
@pytest.mark.filterwarnings("ignore::UserWarning:pydicom.valuerep")
def test_nothing_lands_outside_the_store(tmp_path: Path, figures: Figures) -> None:
    token = uuid.uuid4().hex[:12]
    work = tmp_path / "deep" / "inside"
    store = SliceStore(work / "store")
    images = hostile_images(token)
    encoded = {label: encode(ds) for label, ds in images.items()}
    outcomes: dict[str, str] = {}

    # An upload named like its content.
    report = _ingest(store, [(f"../../escape-{token}-{label}.dcm", data) for label, data in encoded.items()])
    outcomes["upload"] = f"{report.n_instances} stored, {len(report.rejected)} refused by name"

    # A zip whose member names escape, holding the same images.
    archive = work / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, data in enumerate(encoded.values()):
            zf.writestr(f"ok/{i}.dcm", data)
        for label, value in hostile_values(token).items():
            if label != "nul":  # zipfile cannot write a NUL in a name; the ingest's check is unit-tested
                zf.writestr(value[-200:] + ".dcm", next(iter(encoded.values())))
    report = _ingest(store, [], archive)
    outcomes["zip"] = f"{report.n_instances} stored, {len(report.rejected)} refused by name"

    # A PACS holding whatever it accepts of them, sending to us by C-MOVE and C-GET.
    files = work / "pacs-files"
    files.mkdir()
    for i, data in enumerate(encoded.values()):
        (files / f"{i}.dcm").write_bytes(data)
    with Receiver(_config(PacsNode("x", "X")), port=0, allowed_calling_aes=["HOSTILE_PACS"]) as receiver:
        pacs = EmbeddedPacs(work / "pacs", ae_title="HOSTILE_PACS", port=0)
        pacs.add_destination(OUR_AE, "127.0.0.1", receiver.port)
        held = pacs.add_files([files])
        with pacs:
            client = DimseClient(pacs.node, _config(pacs.node), receiver=receiver)
            stored = refused = 0
            for study in dict.fromkeys(str(ds.StudyInstanceUID) for ds in images.values()):
                try:  # what the study browser does: C-GET (auto) into an ingest
                    stored += retrieve_into_store(client, store, study).report.n_instances
                except PacsError:
                    refused += 1
                try:
                    with Ingest(store) as ingest:
                        client.retrieve_study(study, on_instance=into_ingest(ingest), method="c-move")
                    stored += ingest.report.n_instances if ingest.report else 0
                except PacsError:
                    refused += 1
            outcomes["c-get and c-move from a PACS"] = (
                f"PACS took {held} of {len(images)}; {stored} stored, "
                f"{refused} study retrieves refused by name"
            )

        # Straight to our receiver, with no retrieve waiting for them: refused per instance.
        sender = AE("HOSTILE_PACS")
        sender.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = sender.associate("127.0.0.1", receiver.port, ae_title=OUR_AE)
        assert assoc.is_established
        codes = []
        for data in encoded.values():
            try:
                codes.append(int(assoc.send_c_store(dcmread(BytesIO(data))).Status))
            except (TypeError, ValueError):  # pynetdicom will not send a multi-valued SOP Instance UID
                continue
        assoc.release()
        outcomes["c-store to our receiver, unasked"] = (
            f"{sum(c == 0x0124 for c in codes)} of {len(codes)} sent refused (0x0124 not authorised)"
        )
        assert receiver.unsolicited == len(codes)
        assert set(codes) == {0x0124}

    # The export to a folder.
    out = work / "export"
    try:
        write_folder(list(images.values()), out)
        outcomes["export to a folder"] = "written"
    except ExportError:
        outcomes["export to a folder"] = "refused by name, nothing written"

    roots = [tmp_path, Path("/tmp"), PROJECT_ROOT, Path.cwd(), *work.parents[:4]]
    escaped = _token_files(token, roots)
    inside = [p for p in escaped if (work / "store") in p.parents]
    for door, text in outcomes.items():
        figures(door, text)
    figures("files created outside the store root", len(escaped) - len(inside))
    figures("files inside the store named by a hostile value", len(inside))
    assert escaped == []
    assert not (out.exists() and any(out.iterdir()))
    assert list(store.inbox_dir.iterdir()) == []
