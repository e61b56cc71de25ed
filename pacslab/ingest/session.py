"""Ingest: files, folders, zips, uploaded bytes and received datasets → stored series."""

from __future__ import annotations

import copy
import functools
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacslab.ingest.archive import is_zip, walk_folder, zip_members
from pacslab.ingest.deid import PSEUDONYM_MAP_NAME, Deidentifier
from pacslab.ingest.errors import DecodeFailed, FileSetViolation, InconsistentSeries, IngestError
from pacslab.ingest.headers import HeaderJson
from pacslab.ingest.limits import IngestLimits
from pacslab.ingest.reading import ScannedFile, scan_file
from pacslab.ingest.report import IngestProgress, IngestReport, Rejection
from pacslab.ingest.schema import FileSetSchema, UploadedFile, file_problems, set_problems
from pacslab.ingest.spool import Spool, abandoned_spools
from pacslab.store import SeriesMeta, SeriesNotFound, SliceReadError, SliceStore, StoreError

__all__ = ["Ingest", "ingest_paths", "recover_inbox"]

ProgressCallback = Callable[[IngestProgress], None]


_META_HEAD = struct.Struct("<HH2sHL")
_META_VERSION = b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01"


def part10_head(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """Preamble, ``DICM`` and file meta for a data set received bare, as pydicom writes them.

    Built with ``struct``: pydicom's writer takes most of a millisecond per instance, and a
    C-GET receives thousands. A UID that is not ASCII raises UnicodeEncodeError.
    """
    body = b"".join(
        (
            _META_VERSION,
            _meta_uid(0x0002, sop_class_uid),
            _meta_uid(0x0003, sop_instance_uid),
            _meta_uid(0x0010, transfer_syntax_uid),
            _implementation_elements(),
        )
    )
    return b"\x00" * 128 + b"DICM" + _META_HEAD.pack(0x0002, 0x0000, b"UL", 4, len(body)) + body


def _meta_uid(element: int, value: str) -> bytes:
    data = value.encode("ascii")
    if len(data) % 2:
        data += b"\x00"
    return struct.pack("<HH2sH", 0x0002, element, b"UI", len(data)) + data


@functools.lru_cache(maxsize=1)
def _implementation_elements() -> bytes:
    """Implementation Class UID and Version Name, as pydicom fills them into a file meta."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2")
    meta.MediaStorageSOPInstanceUID = UID("1.2")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = DicomBytesIO()
    write_file_meta_info(out, meta, enforce_standard=True)
    written = bytes(out.getvalue())
    return written[written.index(b"\x02\x00\x12\x00UI") :]


@dataclass(frozen=True)
class _Item:
    name: str
    path: Path
    # Read when it was added (received instances are checked while the transfer runs).
    scanned: ScannedFile | IngestError | None = None


class Ingest:
    """Collect DICOM from any source, validate it, and store it series by series.

    Use as a context manager; :meth:`finish` runs on a clean exit (its report is kept in
    ``report``); after an exception, spooled bytes stay in the inbox for
    :func:`recover_inbox`. Every file is checked before anything is written; bad files are rejected
    with a named :class:`~pacslab.ingest.errors.IngestError` and never half-stored. Bytes and
    datasets are spooled to ``store.root / "inbox"`` when added, so an ingest killed before
    it finished can be completed by :func:`recover_inbox`; files added by path are read in
    place and must stay until :meth:`finish` returns.

    Parameters
    ----------
    store : SliceStore
        Where the series go.
    schema : FileSetSchema, optional
        Rules the whole upload must meet; a violation stores nothing.
    deidentify : bool
        De-identify headers with dicognito (pseudonym map in ``store.root``); images with
        BurnedInAnnotation YES are held back.
    progress : callable, optional
        Called with :class:`IngestProgress` after each file read and each slice written.
    limits : IngestLimits, optional
        Resource caps (image size, deflate and zip expansion).
    durable : bool
        Whether :meth:`add_encoded` fsyncs each instance before returning, so that it can be
        acknowledged to a sender that may then drop its copy (a C-STORE to our Storage SCP,
        an upload). A retrieve passes False: the PACS keeps every instance, so the spooled
        files are fsynced together only if the ingest stops without storing them, and what
        :meth:`finish` stores is fsynced before it returns.
    """

    def __init__(
        self,
        store: SliceStore,
        schema: FileSetSchema | None = None,
        deidentify: bool = False,
        progress: ProgressCallback | None = None,
        *,
        limits: IngestLimits | None = None,
        durable: bool = True,
    ) -> None:
        self.store = store
        self.durable = durable
        self.schema = schema
        self.deidentify = deidentify
        self.progress = progress
        self.limits = limits or IngestLimits()
        self.report: IngestReport | None = None
        self._spool = Spool(store.inbox_dir)
        self._items: list[_Item] = []
        self._rejected: list[Rejection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._headers = HeaderJson()
        self._metas: dict[str, SeriesMeta] = {}
        self._scan_lock = threading.Lock()

    # -- adding ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Ingest has finished; start a new one")

    def add_file(self, path: Path | str) -> None:
        """Add one file by path (read in place when the ingest finishes)."""
        with self._lock:
            self._check_open()
            self._items.append(_Item(str(path), Path(path)))

    def add_path(self, path: Path | str) -> None:
        """Add a file, every file under a folder, or every member of a ``.zip``."""
        path = Path(path)
        if path.is_dir():
            for file in walk_folder(path):
                self.add_path(file) if is_zip(file) else self.add_file(file)
        elif is_zip(path) and path.is_file():
            for member in zip_members(path, str(path), self._spool, self.limits):
                with self._lock:
                    self._check_open()
                    if member.error is not None:
                        self._rejected.append(Rejection(member.name, member.error))
                    elif member.path is not None:
                        self._items.append(_Item(member.name, member.path))
        else:
            self.add_file(path)

    def add_bytes(self, name: str, data: bytes) -> Path:
        """Add an uploaded file's bytes; they are on disk (fsynced) when this returns."""
        self._check_open()
        path = self._spool.write([data])
        with self._lock:
            self._items.append(_Item(name, path))
        return path

    def add_dataset(self, ds: pydicom.Dataset, name: str | None = None) -> Path:
        """Add a pydicom dataset (written to the inbox as a DICOM file)."""
        self._check_open()
        out = copy.copy(ds)
        meta = FileMetaDataset(getattr(ds, "file_meta", FileMetaDataset()))
        if "TransferSyntaxUID" not in meta:
            implicit, _ = ds.original_encoding if ds.original_encoding != (None, None) else (False, True)
            meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", meta.get("MediaStorageSOPClassUID", ""))
        meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", meta.get("MediaStorageSOPInstanceUID", ""))
        out.file_meta = meta
        buffer = DicomBytesIO()
        out.save_as(buffer, enforce_file_format=True)
        path = self._spool.write([buffer.getvalue()])
        with self._lock:
            self._items.append(_Item(name or str(ds.get("SOPInstanceUID", path.name)), path))
        return path

    def add_encoded(
        self,
        data: bytes | bytearray | memoryview,
        transfer_syntax_uid: str | None = None,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
        name: str | None = None,
    ) -> Path:
        """Add an encoded dataset as received by a Storage SCP, without decoding it.

        ``data`` is either a whole DICOM file (pynetdicom's
        ``event.encoded_dataset(include_meta=True)``) or the bare dataset, in which case the
        transfer syntax and the SOP class and instance UIDs of the C-STORE request are needed
        to write its file meta. Unless the ingest was made with ``durable=False``, the file is
        fsynced before this returns, so the C-STORE can be acknowledged. The instance is checked
        here (on the receiving thread, while the next one arrives) rather than in :meth:`finish`.
        """
        self._check_open()
        if not isinstance(data, bytes):
            data = bytes(data)  # a multipart body gives bytearrays; the header scan keys on bytes
        if data[128:132] == b"DICM":
            content = data
        else:
            if not (transfer_syntax_uid and sop_class_uid and sop_instance_uid):
                raise ValueError(
                    "a bare encoded dataset needs transfer_syntax_uid, sop_class_uid and sop_instance_uid"
                )
            content = part10_head(sop_class_uid, sop_instance_uid, transfer_syntax_uid) + data
        path = self._spool.write([content], durable=self.durable)
        name = name or sop_instance_uid or path.name
        scanned: ScannedFile | IngestError | None = None
        if not self.deidentify:
            # De-identification keeps its pseudonym map open only while finish() reads.
            with self._scan_lock:
                try:
                    scanned = scan_file(
                        path, name, self.limits, self._headers, None, self._metas, content=content
                    )
                except IngestError as error:
                    scanned = error
        with self._lock:
            self._items.append(_Item(name, path, scanned))
        return path

    # -- finishing ---------------------------------------------------------------------------
    def _emit(self, progress: IngestProgress) -> None:
        if self.progress is not None:
            self.progress(progress)

    def _scan(self, items: list[_Item], report: IngestReport) -> list[ScannedFile]:
        deidentifier = Deidentifier(self.store.root / PSEUDONYM_MAP_NAME) if self.deidentify else None
        scanned: list[ScannedFile] = []
        try:
            for done, item in enumerate(items, 1):
                try:
                    if isinstance(item.scanned, IngestError):
                        raise item.scanned
                    scanned.append(
                        item.scanned
                        if item.scanned is not None
                        else scan_file(
                            item.path, item.name, self.limits, self._headers, deidentifier, self._metas
                        )
                    )
                except IngestError as error:
                    report.rejected.append(Rejection(item.name, error))
                self._emit(IngestProgress("reading", done, len(items), item.name))
        finally:
            if deidentifier is not None:
                deidentifier.close()
        return scanned

    def _stackable(self, files: list[ScannedFile], report: IngestReport) -> list[ScannedFile]:
        """Reject files whose image size cannot be stacked with their series."""
        series_uid = files[0].meta.series_uid
        try:
            info = self.store.series(series_uid)
            reference = (info.rows, info.cols) if info.n_slices else None
        except SeriesNotFound:
            reference = None
        shapes = Counter((f.rows, f.cols, f.samples) for f in files)
        majority = shapes.most_common(1)[0][0]
        kept = []
        for f in files:
            if reference is not None and (f.rows, f.cols) != reference:
                problem = f"its {f.rows}x{f.cols} image differs from the stored {reference[0]}x{reference[1]}"
            elif (f.rows, f.cols, f.samples) != majority:
                problem = f"its {f.rows}x{f.cols}x{f.samples} image differs from the series' {majority}"
            else:
                kept.append(f)
                continue
            report.rejected.append(
                Rejection(f.name, InconsistentSeries(f.name, f"{problem} (series {series_uid})"))
            )
        return kept

    def _write(self, files: list[ScannedFile], report: IngestReport) -> None:
        files = self._stackable(files, report)
        while files:
            sources = [s for f in files for s in f.sources]
            meta = files[0].meta

            def on_slice(done: int, total: int, uid: str = meta.series_uid) -> None:
                self._emit(IngestProgress("writing", done, total, series_uid=uid))

            try:
                outcome = self.store.write_series(meta, sources, on_slice)
            except SliceReadError as error:
                if not any(s is error.source for s in sources):
                    raise StoreError(
                        f"a stored slice of series {meta.series_uid} cannot be read ({error.cause}); "
                        "the series file is damaged: ingest its source files again"
                    ) from error
                bad = error.source.origin
                cause = error.cause
                reason = cause if isinstance(cause, IngestError) else DecodeFailed(bad, str(cause))
                report.rejected.append(Rejection(bad, reason))
                files = [f for f in files if f.name != bad]
                continue
            report.series_uids.append(meta.series_uid)
            report.n_instances += len(files)
            if not outcome.changed:
                report.unchanged.append(meta.series_uid)
            if outcome.warnings:
                report.warnings[meta.series_uid] = outcome.warnings
            return

    def finish(self) -> IngestReport:
        """Validate everything added, then store it; returns the report.

        Raises
        ------
        FileSetViolation
            The upload breaks the schema (every problem listed; nothing stored).
        StoreFull
            The disk filled up; series stored before stay, received data stays in the inbox.
        """
        with self._lock:
            self._check_open()
            self._closed = True
            items = list(self._items)
            report = IngestReport(rejected=list(self._rejected))
        keep_spool = False
        try:
            problems: list[str] = []
            if self.schema is not None:
                sizes = [UploadedFile(i.name, i.path.stat().st_size if i.path.exists() else 0) for i in items]
                problems = file_problems(self.schema, sizes)
            scanned = self._scan(items, report)
            if self.schema is not None:
                problems += set_problems(self.schema, scanned)
                if problems:
                    raise FileSetViolation("upload", problems)
            by_series: dict[str, list[ScannedFile]] = {}
            for f in scanned:
                by_series.setdefault(f.meta.series_uid, []).append(f)
            for files in by_series.values():
                self._write(files, report)
        except FileSetViolation:
            raise
        except BaseException:
            # Received data that did not reach the store stays in the inbox for recover_inbox().
            keep_spool = True
            raise
        finally:
            if keep_spool:
                self._spool.release()
            else:
                self._spool.remove()
        self.store.prune()
        self.report = report
        return report

    def abort(self) -> None:
        """Drop everything added; nothing is stored and the spooled bytes are deleted."""
        with self._lock:
            self._closed = True
        self._spool.remove()

    def close_unfinished(self) -> None:
        """Stop without storing, but keep spooled bytes in the inbox for :func:`recover_inbox`."""
        with self._lock:
            self._closed = True
        self._spool.release()

    def __enter__(self) -> Ingest:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            # Received instances may already be acknowledged to their sender: never drop them.
            self.close_unfinished()
        elif not self._closed:
            self.finish()


def ingest_paths(
    store: SliceStore,
    paths: Iterable[Path | str],
    *,
    schema: FileSetSchema | None = None,
    deidentify: bool = False,
    progress: ProgressCallback | None = None,
    limits: IngestLimits | None = None,
) -> IngestReport:
    """Ingest files, folders (recursively) and ``.zip`` archives; options as for :class:`Ingest`.

    Returns
    -------
    IngestReport
        Series stored, instances accepted, files rejected with their named errors.
    """
    ingest = Ingest(store, schema, deidentify, progress, limits=limits)
    try:
        for path in paths:
            ingest.add_path(path)
    except BaseException:
        ingest.abort()
        raise
    return ingest.finish()


def recover_inbox(
    store: SliceStore,
    *,
    deidentify: bool = False,
    progress: ProgressCallback | None = None,
    limits: IngestLimits | None = None,
) -> IngestReport:
    """Ingest what dead ingests left in the inbox (received but never stored), then remove it.

    Run it when a receiver or an upload service starts: instances acknowledged to a sender
    just before a crash are stored now.
    """
    ingest = Ingest(store, deidentify=deidentify, progress=progress, limits=limits)
    for folder in abandoned_spools(store.inbox_dir):
        claimed = ingest._spool.claim(folder)
        if claimed is None:
            continue
        for file in sorted(claimed.glob("*.dcm")):
            ingest.add_file(file)
    return ingest.finish()
