"""``pacslab run NOTEBOOK -p name value ...``: execute a notebook headless with papermill.

The executed notebook is the record of the run: it is written beside the run's other
outputs, with the parameters in ``metadata.papermill.parameters``. A notebook named without
a folder is looked up in the project's ``notebooks/`` (``pacslab run batch_pipeline``).
Parameters the notebook does not declare in its ``parameters`` cell are refused before
anything runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "NOTEBOOKS_DIR",
    "NotebookRunError",
    "add_run_command",
    "declared_parameters",
    "parse_value",
    "resolve_notebook",
    "run_notebook",
]

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "pacslab"


class NotebookRunError(ValueError):
    """The notebook or a parameter given for it is wrong; the message says what to pass."""


def resolve_notebook(name: str | Path) -> Path:
    """The notebook file for a path, or for a name in the project's ``notebooks/`` folder.

    Raises
    ------
    NotebookRunError
        No such notebook; the message lists the ones there are.
    """
    given = Path(name).expanduser()
    candidates = [given, given.with_suffix(".ipynb")]
    if given.parent == Path():
        candidates += [NOTEBOOKS_DIR / given.name, NOTEBOOKS_DIR / f"{given.stem}.ipynb"]
    for path in candidates:
        if path.is_file() and path.suffix == ".ipynb":
            return path.resolve()
    known = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    raise NotebookRunError(f"no notebook {str(name)!r}; give a path or one of: {', '.join(known)}")


def parse_value(text: str) -> Any:
    """A command-line value as papermill's ``-p`` reads it, plus JSON lists and objects.

    ``True``/``False``/``None``, integers and floats become those; text starting with ``[``
    or ``{`` is read as JSON (``-p study_uids '["1.2.3", "1.2.4"]'``); anything else stays
    a string (so UIDs and wildcards like ``Doe*`` pass unchanged).
    """
    stripped = text.strip()
    if stripped[:1] in {"[", "{"}:
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise NotebookRunError(f"{text!r} looks like JSON but is not valid: {exc.msg}") from None
    if stripped in {"True", "true"}:
        return True
    if stripped in {"False", "false"}:
        return False
    if stripped in {"None", "null"}:
        return None
    for kind in (int, float):
        try:
            return kind(stripped)
        except ValueError:
            pass
    return text


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """The parameters a notebook declares in its ``parameters`` cell, with their defaults."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    return {name: info.get("default") for name, info in declared.items()}


def run_notebook(
    name: str | Path,
    parameters: Mapping[str, Any],
    output_dir: str | Path | None = None,
    *,
    kernel: str = KERNEL,
    log_output: bool = True,
) -> Path:
    """Execute a notebook with papermill and return the executed notebook's path.

    Parameters
    ----------
    name : str or Path
        A notebook path, or a name in ``notebooks/`` (``"batch_pipeline"``).
    parameters : mapping
        Values for names of the notebook's ``parameters`` cell.
    output_dir : str or Path, optional
        Where the executed notebook goes. Default: the ``output_dir`` parameter when the
        notebook has one and it is given, else ``./pacslab-runs/<notebook>-<time>``. A
        notebook with an ``output_dir`` parameter gets this folder as its value, so all its
        outputs land together.
    kernel : str
        Jupyter kernel to run it on.
    log_output : bool
        Stream the cells' output (progress bars included) to stderr while it runs.

    Raises
    ------
    NotebookRunError
        Unknown notebook or parameter, before anything runs.
    papermill.PapermillExecutionError
        A cell raised; the executed notebook (written anyway) shows where.
    """
    import papermill

    notebook = resolve_notebook(name)
    declared = declared_parameters(notebook)
    unknown = [p for p in parameters if p not in declared]
    if unknown:
        raise NotebookRunError(
            f"{notebook.name} has no parameter {unknown[0]!r}; "
            f"its parameters: {', '.join(declared) or 'none'}"
        )
    values = dict(parameters)
    if output_dir is None:
        if values.get("output_dir"):
            output_dir = str(values["output_dir"])
        else:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            output_dir = Path.cwd() / "pacslab-runs" / f"{notebook.stem}-{stamp}"
    folder = Path(output_dir).expanduser().resolve()
    if "output_dir" in declared:
        # The kernel runs in the notebook's folder: hand it an absolute path.
        values["output_dir"] = str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    executed = folder / notebook.name
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            parameters=values,
            kernel_name=kernel,
            cwd=str(notebook.parent),
            log_output=log_output,
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as exc:
        exc.add_note(f"the executed notebook shows where: {executed}")
        raise
    return executed


def _run(args: argparse.Namespace) -> int:
    from papermill.exceptions import PapermillExecutionError

    try:
        parameters = {name: parse_value(value) for name, value in args.parameter or []}
        executed = run_notebook(args.notebook, parameters, args.output_dir, kernel=args.kernel)
    except NotebookRunError as exc:
        print(f"pacslab run: {exc}", file=sys.stderr)
        return 2
    except PapermillExecutionError as exc:
        notes = "".join(f"\n{note}" for note in getattr(exc, "__notes__", []))
        print(f"pacslab run: cell {exc.exec_count} raised {exc.ename}: {exc.evalue}{notes}", file=sys.stderr)
        return 1
    print(f"executed notebook: {executed}")
    return 0


def add_run_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``run`` to the ``pacslab`` command's subparsers."""
    run = subparsers.add_parser(
        "run",
        help="execute a notebook headless with papermill (e.g. batch_pipeline)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("notebook", help="a notebook path, or a name in notebooks/ (batch_pipeline)")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="a parameter of the notebook; repeat for more (lists and mappings as JSON)",
    )
    run.add_argument("-o", "--output-dir", help="folder for the executed notebook (and the run's outputs)")
    run.add_argument("--kernel", default=KERNEL, help=f"Jupyter kernel (default {KERNEL})")
    run.set_defaults(func=_run)
    return run
