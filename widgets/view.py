"""What every pacslab widget shares: traits, an escaped error area, and work off the UI thread.

A view is a :class:`traitlets.HasTraits` holding its ipywidgets in ``self.widget``; it
displays as that widget in JupyterLab and Voilà. Long work runs in a daemon thread so the
page keeps answering; ``busy`` is True while any runs, and :meth:`View.wait` blocks until
all have ended (tests and scripts use it instead of sleeping). An error from pacslab ends
up as text in the view's error area (escaped: messages can quote what a user typed), never
as a traceback.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import ipywidgets as w
import traitlets

__all__ = ["KNOWN_ERRORS", "STYLE", "View", "describe_error", "escape", "html_table", "series_label"]

LOGGER = logging.getLogger("pacslab.widgets")
T = TypeVar("T")

# Monospace rows for the table pickers, and the error colour; one style element per view.
STYLE = """<style>
.pacslab-table select { font-family: monospace; font-size: 12px; }
.pacslab-error { color: #b00020; white-space: pre-wrap; }
.pacslab-grid table { border-collapse: collapse; font-size: 12px; }
.pacslab-grid th, .pacslab-grid td { border-bottom: 1px solid #ddd; padding: 1px 6px; text-align: left; }
</style>"""


def _known_errors() -> tuple[type[BaseException], ...]:
    from pacslab.config import ConfigError
    from pacslab.export import ExportError
    from pacslab.ingest import IngestError
    from pacslab.jobs import JobError
    from pacslab.pacs import PacsError
    from pacslab.processing import ProcessorError
    from pacslab.render import RenderError
    from pacslab.store import StoreError
    from pacslab.store.results import ResultFileError

    return (
        ConfigError,
        ExportError,
        IngestError,
        JobError,
        PacsError,
        ProcessorError,
        RenderError,
        StoreError,
        ResultFileError,
    )


KNOWN_ERRORS: tuple[type[BaseException], ...] = _known_errors()


def escape(value: object) -> str:
    """Text made safe to put inside HTML (quotes included)."""
    return html.escape(str(value), quote=True)


def describe_error(exc: BaseException) -> str:
    """The message a user sees for an exception: pacslab's own, or a short unexpected-error line."""
    if isinstance(exc, (*KNOWN_ERRORS, ValueError, KeyError)):
        # pacslab's ValueErrors are written for users; a KeyError's str() quotes its message.
        return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}" if str(exc) else "timed out"
    return f"unexpected error ({type(exc).__name__}): {exc}"


def html_table(columns: Sequence[str], rows: Iterable[Sequence[object]], limit: int | None = None) -> str:
    """An HTML table of escaped cells (only our tags reach the page)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        if limit is not None and i >= limit:
            break
        body.append("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>")
    return f'<div class="pacslab-grid"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def series_label(info: Any) -> str:
    """How a stored series is named in pickers: patient, modality, description, slices."""
    what = info.series_description or (
        f"series {info.series_number}" if info.series_number is not None else ""
    )
    return f"{info.patient_name} · {info.modality} · {what} ({info.n_slices})"


class View(traitlets.HasTraits):
    """Base of the pacslab widgets.

    Traits
    ------
    busy : bool
        True while background work runs.
    error : str
        The last error message (plain text); empty when the last action worked.
    status : str
        One line saying what the view is doing or did.
    """

    busy = traitlets.Bool(False, read_only=True)
    error = traitlets.Unicode("")
    status = traitlets.Unicode("")

    widget: w.Widget

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error_area = w.HTML(layout=w.Layout(margin="2px 0"))
        self.status_line = w.HTML()
        self._style = w.HTML(STYLE)
        self._running = 0
        self._running_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self.observe(self._show_error, "error")
        self.observe(self._show_status, "status")

    # -- display -------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _show_error(self, change: dict[str, Any]) -> None:
        text = change["new"]
        self.error_area.value = f'<div class="pacslab-error">{escape(text)}</div>' if text else ""

    def _show_status(self, change: dict[str, Any]) -> None:
        self.status_line.value = escape(change["new"])

    def fail(self, exc: BaseException) -> None:
        """Show ``exc`` in the error area (and log unexpected ones with their traceback)."""
        if not isinstance(exc, KNOWN_ERRORS):
            LOGGER.error("%s: unexpected error", type(self).__name__, exc_info=exc)
        self.error = describe_error(exc)

    # -- background work -------------------------------------------------------------------------
    def _enter(self) -> None:
        with self._running_lock:
            self._running += 1
            self._idle.clear()
            self.set_trait("busy", True)

    def _leave(self) -> None:
        with self._running_lock:
            self._running -= 1
            if self._running == 0:
                self.set_trait("busy", False)
                self._idle.set()

    def run_in_background(
        self,
        name: str,
        work: Callable[[], T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> threading.Thread:
        """Run ``work`` in a daemon thread; ``on_done(result)`` or the error area after it.

        The error area is cleared when the work starts. ``on_error`` runs after the error is
        shown (e.g. to mark a transfer failed).
        """
        self.error = ""
        self._enter()

        def target() -> None:
            try:
                result = work()
                if on_done is not None:
                    on_done(result)
            except Exception as exc:
                self.fail(exc)
                if on_error is not None:
                    try:
                        on_error(exc)
                    except Exception as inner:  # the error is shown already; keep the first
                        LOGGER.error("error handler of %s failed", name, exc_info=inner)
            finally:
                self._leave()

        thread = threading.Thread(target=target, name=f"pacslab-{name}", daemon=True)
        thread.start()
        return thread

    def guarded(self, action: Callable[[], None]) -> None:
        """Run a quick UI action now, showing a pacslab error instead of raising it."""
        try:
            action()
        except Exception as exc:
            self.fail(exc)

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until no background work runs; False if ``timeout`` passed first."""
        return self._idle.wait(timeout)
