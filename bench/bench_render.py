"""Render time per 512×512 CT slice: pacslab.render vs DCMTK ``dcm2pnm`` and matplotlib ``imsave``.

All three window the same phantom slices at the abdomen window (40/400 HU) and write a PNG
(pacslab also JPEG, what the viewer sends). DCMTK runs as the viewer of a PACS workstation
would call it, one process per slice; the ratio says how much faster pacslab shows a slice.
Target: at most 8 ms per slice for the viewer's path.
"""

from __future__ import annotations

import io
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

N_SLICES = 24
SIZE = 512
CENTER, WIDTH = 40.0, 400.0
TARGET_MS = 8.0


def _per_slice_ms(work: Callable[[int], object], n: int, repeats: int = 3) -> float:
    """Median over ``repeats`` runs of the mean time per slice, in milliseconds."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(n):
            work(i)
        runs.append((time.perf_counter() - started) / n * 1000.0)
    return statistics.median(runs)


def main() -> None:
    from matplotlib import pyplot as plt

    from pacslab.render import render_slice
    from pacslab.samples import phantom_ct_datasets

    datasets = list(phantom_ct_datasets(n_slices=N_SLICES, size=SIZE))
    stored = [ds.pixel_array for ds in datasets]
    slope, intercept = float(datasets[0].RescaleSlope), float(datasets[0].RescaleIntercept)
    hu = [(s * slope + intercept).astype(np.float32) for s in stored]
    # Warm the lookup table and the encoders once, as a viewer would after its first slice.
    render_slice(stored[0], CENTER, WIDTH, slope=slope, intercept=intercept)

    figures: dict[str, float] = {}
    figures["pacslab jpeg (stored int16, LUT)"] = _per_slice_ms(
        lambda i: render_slice(stored[i], CENTER, WIDTH, slope=slope, intercept=intercept, fmt="jpeg"),
        N_SLICES,
    )
    figures["pacslab jpeg (HU float32, viewer path)"] = _per_slice_ms(
        lambda i: render_slice(hu[i], CENTER, WIDTH, fmt="jpeg"), N_SLICES
    )
    figures["pacslab png (stored int16, LUT)"] = _per_slice_ms(
        lambda i: render_slice(stored[i], CENTER, WIDTH, slope=slope, intercept=intercept, fmt="png"),
        N_SLICES,
    )
    low, high = CENTER - WIDTH / 2, CENTER + WIDTH / 2
    figures["matplotlib imsave png"] = _per_slice_ms(
        lambda i: plt.imsave(io.BytesIO(), hu[i], cmap="gray", vmin=low, vmax=high, format="png"), N_SLICES
    )

    dcm2pnm = shutil.which("dcm2pnm")
    if dcm2pnm is not None:
        with tempfile.TemporaryDirectory(prefix="bench-render-") as scratch:
            folder = Path(scratch)
            paths = []
            for i, ds in enumerate(datasets):
                path = folder / f"{i:03d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                paths.append(path)

            def run_dcmtk(i: int) -> None:
                subprocess.run(
                    [
                        dcm2pnm,
                        "--write-png",
                        "+Ww",
                        str(CENTER),
                        str(WIDTH),
                        str(paths[i]),
                        str(folder / f"{i}.png"),
                    ],
                    check=True,
                    capture_output=True,
                )

            figures["DCMTK dcm2pnm png (process per slice)"] = _per_slice_ms(run_dcmtk, N_SLICES, repeats=1)
    else:
        print("dcm2pnm not installed (Debian package dcmtk): DCMTK figure skipped")

    viewer_ms = figures["pacslab jpeg (HU float32, viewer path)"]
    for name, ms in figures.items():
        print(f"render {SIZE}x{SIZE}: {name:<40} {ms:7.2f} ms/slice  ({ms / viewer_ms:5.1f}x pacslab viewer)")
    verdict = "meets" if viewer_ms <= TARGET_MS else "misses"
    print(f"render: pacslab viewer path {viewer_ms:.2f} ms/slice {verdict} the {TARGET_MS:g} ms target")
    for reference in ("DCMTK dcm2pnm png (process per slice)", "matplotlib imsave png"):
        if reference in figures:
            print(f"render: {reference} / pacslab viewer = {figures[reference] / viewer_ms:.1f}")


if __name__ == "__main__":
    main()
