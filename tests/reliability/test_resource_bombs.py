"""Item 2: resource bombs are refused by name, in seconds, without the memory they ask for.

Each bomb is ingested in a child process whose peak resident memory (VmHWM) is reset before
it; the figure is that peak against the cap this test sets (pydicom alone needs about 1 GiB
for the deflate bomb: see ``bench/bench_soak.py``).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest

from tests.reliability.children import run_module_over
from tests.reliability.conftest import Figures
from tests.reliability.dicom_bytes import deeply_nested_file, deflate_bomb, huge_dimensions_file

ITEM = 2
# Peak resident memory allowed above the child's resting size while it refuses a bomb.
MEMORY_CAP_MIB = 200
HANG_S = 60.0

pytestmark = pytest.mark.timeout(300)


def _zip_bombs(folder: Path) -> dict[str, Path]:
    """A zip whose member declares 128 MiB (cap 64 MiB), and one whose member lies about its size."""
    honest = folder / "honest-bomb.zip"
    with zipfile.ZipFile(honest, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.dcm", "w") as member:
        for _ in range(128):
            member.write(b"\0" * (1 << 20))
    liar = folder / "lying-bomb.zip"
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\0" * (1 << 20))
    data = bytearray(liar.read_bytes())
    # Claim 1,000 bytes uncompressed in the local header (offset 22) and the central directory (24).
    struct.pack_into("<L", data, 22, 1000)
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<L", data, central + 24, 1000)
    liar.write_bytes(bytes(data))
    return {"zip member declaring 128 MiB": honest, "zip member lying about its size": liar}


def test_bombs_are_refused_in_seconds_within_the_memory_cap(tmp_path: Path, figures: Figures) -> None:
    files = {
        "deflate bomb (1 GiB inflated)": ("deflate-bomb.dcm", deflate_bomb(1 << 30)),
        "65535 x 65535 x 1000 frames header": ("huge.dcm", huge_dimensions_file(1000)),
        "sequence nested 20,000 deep": ("nested.dcm", deeply_nested_file(20000)),
    }
    entries = []
    for label, (name, data) in files.items():
        (tmp_path / name).write_bytes(data)
        entries.append({"name": name, "path": str(tmp_path / name), "label": label})
    entries += [{"name": p.name, "path": str(p), "label": label} for label, p in _zip_bombs(tmp_path).items()]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(entries))

    run = run_module_over("tests.reliability.bomb_worker", manifest, len(entries), tmp_path, HANG_S)

    assert run.crashed == []
    assert run.hung == []
    summary = {}
    for i, entry in enumerate(entries):
        result = run.results[i]
        growth = max(0.0, result["peak_mib"] - result["rss_before_mib"])
        summary[entry["label"]] = {
            "file KiB": round(Path(entry["path"]).stat().st_size / 1024),
            "refused as": ", ".join(result["errors"]) or "accepted",
            "seconds": round(result["seconds"], 2),
            "peak memory above rest (MiB)": round(growth, 1),
        }
    for label, row in summary.items():
        figures(label, row)
    figures("memory cap (MiB above rest)", MEMORY_CAP_MIB)

    expected = {
        "deflate bomb (1 GiB inflated)": "DecompressionBomb",
        "65535 x 65535 x 1000 frames header": "ImageTooLarge",
        "sequence nested 20,000 deep": "SequenceTooDeep",
        "zip member declaring 128 MiB": "DecompressionBomb",
        "zip member lying about its size": "NotDicom",
    }
    assert {label: row["refused as"] for label, row in summary.items()} == expected
    assert all(run.results[i]["stored_series"] == 0 for i in range(len(entries)))
    assert all(row["peak memory above rest (MiB)"] < MEMORY_CAP_MIB for row in summary.values())
