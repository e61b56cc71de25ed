"""Named ingest errors: each names the file and says what to do; none leaves a partial write."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BurnedInAnnotation",
    "DecodeFailed",
    "DecompressionBomb",
    "EmptyFile",
    "FileSetViolation",
    "ImageTooLarge",
    "InconsistentSeries",
    "IngestError",
    "MalformedDicom",
    "MissingPreamble",
    "NoPixelData",
    "NotDicom",
    "PixelDataMismatch",
    "SequenceTooDeep",
    "TruncatedFile",
    "UnreadableFile",
    "UnsupportedTransferSyntax",
    "ZipPathEscape",
]


class IngestError(Exception):
    """A file (or a whole upload) was refused; ``name`` says which, ``problem`` why."""

    advice = "check the file and send it again"

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}; {self.advice}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.name, self.problem))


class UnreadableFile(IngestError):
    """The file could not be opened or read (missing, a folder, no permission)."""

    advice = "check the path and its permissions"


class EmptyFile(IngestError):
    """The file has 0 bytes."""

    advice = "the transfer probably failed: copy or download the file again"


class NotDicom(IngestError):
    """The file is not DICOM at all."""

    advice = "only DICOM files (Part 10, with the 'DICM' marker) can be ingested"


class MissingPreamble(NotDicom):
    """DICOM data without the Part 10 preamble and file meta information."""

    advice = "re-export it as a DICOM Part 10 file (with preamble and file meta) from its source"


class TruncatedFile(IngestError):
    """The file ends before the data it declares."""

    advice = "the file is cut short: copy or retrieve it again"


class MalformedDicom(IngestError):
    """The DICOM encoding is broken (bad lengths, tags, VRs or values)."""

    advice = "the file is corrupt: retrieve it again from its source"


class SequenceTooDeep(MalformedDicom):
    """Sequences nested deeper than any real image needs."""

    advice = "the file is corrupt or hostile: retrieve it again from a trusted source"


class NoPixelData(IngestError):
    """No image in the file (a report, a DICOMDIR, a plan...)."""

    advice = "only images go in the slice store"


class PixelDataMismatch(IngestError):
    """Rows x Columns x frames x samples x bits does not match the pixel data length."""

    advice = "the header and the pixels disagree, so the image cannot be shown correctly; retrieve it again"


class UnsupportedTransferSyntax(IngestError):
    """Unknown transfer syntax, or no decoder installed for it."""

    advice = (
        "ask the sender for an uncompressed or a JPEG/JPEG-LS/JPEG 2000/RLE transfer syntax, or install a "
        "decoder plugin for it"
    )


class DecodeFailed(IngestError):
    """The decoder could not decode the compressed pixels."""

    advice = "the compressed image is corrupt: retrieve it again"


class InconsistentSeries(IngestError):
    """An image that cannot be stacked with the rest of its series (other size or samples)."""

    advice = "the series mixes image sizes; check it at its source (it was not stored)"


class ImageTooLarge(IngestError):
    """Declared dimensions larger than the configured cap (checked before decoding)."""

    advice = "raise IngestLimits.max_image_bytes if the image is genuine"


class DecompressionBomb(IngestError):
    """Deflated data (a deflated transfer syntax or a zip member) expands beyond the cap."""

    advice = "the file expands far beyond any real image; raise IngestLimits if it is genuine"


class ZipPathEscape(IngestError):
    """A zip member whose path leaves the archive's folder (absolute, ``..``, NUL)."""

    advice = "the archive is malformed or hostile; nothing from this member was read"


class BurnedInAnnotation(IngestError):
    """De-identification asked, but the image declares patient data burned into its pixels."""

    advice = "held back: de-identify its pixels first, or ingest without de-identification"


class FileSetViolation(IngestError):
    """An upload breaks its file-set schema; every problem is listed and nothing was stored."""

    advice = "nothing was stored; fix the upload and send it again"

    def __init__(self, name: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(name, f"{len(self.problems)} problem(s): " + "; ".join(self.problems))

    def __reduce__(self) -> tuple[type, tuple[str, tuple[str, ...]]]:  # type: ignore[override]
        return (type(self), (self.name, self.problems))
