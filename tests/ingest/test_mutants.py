"""Seeded mutants of pydicom's test files: each is stored or refused by name, none half-written."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from pacslab.ingest import IngestError, IngestLimits, ingest_paths
from pacslab.store import SliceStore

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
MUTANTS = 300


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Truncate, flip bits, overwrite a length-sized field, or zero a run of bytes."""
    out = bytearray(data)
    kind = rng.choice(("truncate", "flip", "length", "zero"))
    if kind == "truncate":
        return bytes(out[: rng.randrange(1, len(out))])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
    elif kind == "length":
        i = rng.randrange(128, len(out) - 4)
        out[i : i + 4] = rng.randbytes(4)
    else:
        i = rng.randrange(len(out))
        out[i : i + 64] = bytes(len(out[i : i + 64]))
    return bytes(out)


@pytest.mark.timeout(300)
def test_mutants_are_stored_or_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(20261122)
    seeds = sorted(p for p in TEST_FILES.glob("*.dcm") if p.stat().st_size > 200)
    store = SliceStore(tmp_path / "store")
    limits = IngestLimits(max_image_bytes=256 << 20, max_inflated_bytes=64 << 20)
    outcome: Counter[str] = Counter()
    folder = tmp_path / "mutants"
    folder.mkdir()
    for k in range(MUTANTS):
        path = folder / f"{k:04d}.dcm"
        path.write_bytes(mutate(rng.choice(seeds).read_bytes(), rng))
        report = ingest_paths(store, [path], limits=limits)  # any exception here fails the test
        assert report.n_instances + len(report.rejected) == 1
        for rejection in report.rejected:
            assert isinstance(rejection.error, IngestError)
            outcome[type(rejection.error).__name__] += 1
        outcome["stored"] += report.n_instances
    assert not list((store.root / "series").rglob("*.tmp")), "no half-written file"
    for info in store.list_series():
        assert info.complete
        assert store.read_slices(info.series_uid).shape[0] == info.n_slices
    with capsys.disabled():
        print(f"\n{MUTANTS} mutants: 0 crashes; {dict(sorted(outcome.items()))}")
