"""Item 1: pydicom's bundled test files and 2,050 seeded mutants, uploaded and ingested one by one.

Each file goes through the upload path in a child process that checks the store after it
(see ``ingest_worker``); the parent counts crashes (the child died, or something other than a
named ingest error escaped), hangs (no answer for 30 s), partial writes (a rejected file left
something in the store, or an accepted one an incomplete series) and wrong answers (an
accepted file whose stored planes are not what pydicom decodes from it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from tests.reliability.children import ChildRun, run_sharded
from tests.reliability.conftest import Figures
from tests.reliability.corpus import TEST_FILES, bundled_files, mutants

ITEM = 1
N_MUTANTS = 2050
HANG_S = 30.0

pytestmark = pytest.mark.timeout(900)


@dataclass
class CorpusRun:
    entries: list[dict[str, Any]]
    run: ChildRun

    def named(self, index: int) -> str:
        return str(self.entries[index]["name"])

    def answered(self) -> dict[int, dict[str, Any]]:
        return {i: r for i, r in self.run.results.items() if r["outcome"] != "crash"}


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    """Every bundled file and mutant ingested once, by two child processes."""
    workdir = tmp_path_factory.mktemp("corpus")
    entries: list[dict[str, Any]] = [
        {"name": p.name, "path": str(p), "kind": "bundled"} for p in bundled_files()
    ]
    for mutant in mutants(N_MUTANTS):
        path = workdir / mutant.name
        path.write_bytes(mutant.data)
        original = str(TEST_FILES / mutant.base)
        entries.append({"name": mutant.name, "path": str(path), "kind": mutant.kind, "original": original})
    return CorpusRun(entries, run_sharded("tests.reliability.ingest_worker", entries, workdir, HANG_S))


def test_every_file_is_stored_whole_or_refused_by_name(corpus_run: CorpusRun, figures: Figures) -> None:
    run, entries = corpus_run.run, corpus_run.entries
    crashes = [f"{corpus_run.named(i)}: the process died (exit code {code})" for i, code in run.crashed]
    crashes += [
        f"{corpus_run.named(i)}: {r['error']}\n{r['traceback']}"
        for i, r in run.results.items()
        if r["outcome"] == "crash"
    ]
    hangs = [corpus_run.named(i) for i in run.hung]
    partial = {corpus_run.named(i): r["partial"] for i, r in run.results.items() if r.get("partial")}
    answered = corpus_run.answered()
    by_error = Counter(r["error"] for r in answered.values() if r["outcome"] == "rejected")
    accepted = sum(r["outcome"] == "accepted" for r in answered.values())

    n_bundled = sum(e["kind"] == "bundled" for e in entries)
    figures("files", f"{n_bundled} bundled pydicom test files + {N_MUTANTS} seeded mutants")
    figures("crashes", len(crashes))
    figures("hangs over 30 s", len(hangs))
    figures("partial writes", len(partial))
    figures("accepted", accepted)
    figures("rejected per named error", dict(sorted(by_error.items())))
    figures("slowest file (s)", round(max(r["seconds"] for r in run.results.values()), 2))

    assert crashes == []
    assert hangs == []
    assert partial == {}
    assert accepted + sum(by_error.values()) == len(entries)


def test_stored_files_hold_what_pydicom_decodes(corpus_run: CorpusRun, figures: Figures) -> None:
    answered = corpus_run.answered()
    mutant_results = [r for i, r in answered.items() if corpus_run.entries[i]["kind"] != "bundled"]
    refused_by_pydicom = Counter(
        r["pydicom"] for r in mutant_results if not r["pydicom"].startswith("decoded")
    )
    wrong = {corpus_run.named(i): r["wrong"] for i, r in answered.items() if r.get("wrong")}

    figures(
        "mutants pydicom decodes without an error but the ingest refuses",
        sum(r["pydicom"].startswith("decoded") and r["outcome"] == "rejected" for r in mutant_results),
    )
    figures("exception types pydicom alone raises on the mutants", len(refused_by_pydicom))
    figures(
        "accepted with a file meta pydicom cannot read (dataset checked behind the original meta)",
        sum(r.get("meta_repaired", False) for r in answered.values()),
    )
    figures("accepted although the pixels differ from pydicom's, or pydicom refuses the image", len(wrong))

    assert len(refused_by_pydicom) >= 6  # the corpus does reach pydicom's many failure types
    assert wrong == {}
