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
from typing import Any

import pytest

from tests.reliability.children import run_module_over
from tests.reliability.conftest import Figures
from tests.reliability.dicom_bytes import deeply_nested_file, deflate_bomb, huge_dimensions_file

ITEM = 2
# Peak resident memory allowed above the child's resting size while it refuses a bomb
# (the child runs with a 64 MiB inflate cap and a 64 MiB zip member cap).
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


BOMBS = {
    "deflate bomb (1 GiB inflated)": "DecompressionBomb",
    "65535 x 65535 x 1000 frames header": "ImageTooLarge",
    "sequence nested 20,000 deep": "SequenceTooDeep",
    "zip member declaring 128 MiB": "DecompressionBomb",
    "zip member lying about its size": "NotDicom",
}
UNDER_CAP = "deflated dataset of 60 MiB, under the 64 MiB inflate cap"


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each hostile file ingested in a child process: label -> what the child measured."""
    folder = tmp_path_factory.mktemp("bombs")
    files = {
        "deflate bomb (1 GiB inflated)": ("deflate-bomb.dcm", deflate_bomb(1 << 30)),
        "65535 x 65535 x 1000 frames header": ("huge.dcm", huge_dimensions_file(1000)),
        "sequence nested 20,000 deep": ("nested.dcm", deeply_nested_file(20000)),
        UNDER_CAP: ("under-cap.dcm", deflate_bomb(60 << 20)),
    }
    entries = []
    for label, (name, data) in files.items():
        (folder / name).write_bytes(data)
        entries.append({"name": name, "path": str(folder / name), "label": label})
    entries += [{"name": p.name, "path": str(p), "label": label} for label, p in _zip_bombs(folder).items()]
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(entries))
    run = run_module_over("tests.reliability.bomb_worker", manifest, len(entries), folder, HANG_S)
    assert run.crashed == []
    assert run.hung == []
    summary = {}
    for i, entry in enumerate(entries):
        result = run.results[i]
        summary[entry["label"]] = {
            "file KiB": round(Path(entry["path"]).stat().st_size / 1024),
            "refused as": ", ".join(result["errors"]) or "accepted",
            "seconds": round(result["seconds"], 2),
            "peak memory above rest (MiB)": round(max(0.0, result["peak_mib"] - result["rss_before_mib"]), 1),
            "stored series": result["stored_series"],
        }
    return summary


def test_bombs_are_refused_in_seconds_within_the_memory_cap(
    refused: dict[str, dict[str, Any]], figures: Figures
) -> None:
    for label in BOMBS:
        figures(label, refused[label])
    figures("memory cap (MiB above rest)", MEMORY_CAP_MIB)
    assert {label: refused[label]["refused as"] for label in BOMBS} == BOMBS
    assert all(refused[label]["stored series"] == 0 for label in BOMBS)
    assert all(refused[label]["peak memory above rest (MiB)"] < MEMORY_CAP_MIB for label in BOMBS)


def test_a_deflated_file_under_the_cap_costs_at_most_twice_its_inflated_size(
    refused: dict[str, dict[str, Any]], figures: Figures
) -> None:
    row = refused[UNDER_CAP]
    figures(UNDER_CAP, row)
    assert row["stored series"] == 0
    assert row["peak memory above rest (MiB)"] <= 2 * 64
