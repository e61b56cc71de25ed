"""A sortable, paged picker table made of core ipywidgets (works in Voilà without extensions).

Rows are dicts; one column is the key (a UID) that selection reports. The page shows as a
``Select``/``SelectMultiple`` whose option labels are fixed-width text rows, so cell values
reach the page as text, never as HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as w
import traitlets

__all__ = ["Column", "PagedTable", "format_cell"]

Column = tuple[str, str, int]  # (field, header, width in characters)


def format_cell(value: object, width: int) -> str:
    """A cell as exactly ``width`` characters (cut with an ellipsis when longer)."""
    if value is None:
        text = ""
    elif isinstance(value, tuple | list):
        text = "/".join(str(v) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split())  # newlines or tabs would break the row
    if len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return text.ljust(width)


def _sort_key(value: object) -> tuple[int, Any]:
    # Missing values sort last; numbers before text so counts sort numerically.
    if value is None or value == "":
        return (2, "")
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, tuple | list):
        return (1, "/".join(map(str, value)).lower())
    return (1, str(value).lower())


class PagedTable(traitlets.HasTraits):
    """Rows to pick from, sorted by a column and shown a page at a time.

    Traits
    ------
    rows : list of dict
    sort_by : str
        Field the rows are sorted by ("" keeps their order).
    descending : bool
    page : int
        0-based page shown.
    page_size : int
    selected : tuple of str
        Keys of the selected rows (kept across pages and re-sorting).
    """

    rows = traitlets.List(traitlets.Dict())
    sort_by = traitlets.Unicode("")
    descending = traitlets.Bool(False)
    page = traitlets.Int(0)
    page_size = traitlets.Int(25)
    selected = traitlets.Tuple()

    def __init__(
        self, columns: Sequence[Column], key: str, *, multiple: bool = False, page_size: int = 25
    ) -> None:
        super().__init__(page_size=page_size)
        self.columns = list(columns)
        self.key = key
        self.multiple = multiple
        self._updating = False
        header = " ".join(format_cell(title, width) for _, title, width in self.columns)
        self.header = w.HTML(f"<pre style='margin:0;font-size:12px'>{_escape(header)}</pre>")
        picker_cls = w.SelectMultiple if multiple else w.Select
        self.picker = picker_cls(options=[], rows=min(page_size, 12), layout=w.Layout(width="100%"))
        self.picker.add_class("pacslab-table")
        self.sort_picker = w.Dropdown(
            options=[("(as found)", "")] + [(title, field) for field, title, _ in self.columns],
            description="Sort by",
            layout=w.Layout(width="220px"),
        )
        self.order = w.ToggleButton(value=False, description="descending", layout=w.Layout(width="110px"))
        self.previous = w.Button(description="◀", layout=w.Layout(width="40px"), tooltip="previous page")
        self.next = w.Button(description="▶", layout=w.Layout(width="40px"), tooltip="next page")
        self.page_label = w.Label()
        self.previous.on_click(lambda _: self._turn(-1))
        self.next.on_click(lambda _: self._turn(1))
        traitlets.link((self.sort_picker, "value"), (self, "sort_by"))
        traitlets.link((self.order, "value"), (self, "descending"))
        self.picker.observe(self._picked, "value")
        self.observe(self._resort, ["rows", "sort_by", "descending"])
        self.observe(self._show_page, ["page", "page_size"])
        self._ordered: list[dict[str, Any]] = []
        self.widget = w.VBox(
            [
                w.HBox([self.sort_picker, self.order, self.previous, self.page_label, self.next]),
                self.header,
                self.picker,
            ]
        )

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self._ordered) // self.page_size))

    @property
    def ordered_rows(self) -> list[dict[str, Any]]:
        """Every row in the current sort order."""
        return list(self._ordered)

    def row(self, key: str) -> dict[str, Any]:
        """The row whose key is ``key``."""
        for row in self.rows:
            if row.get(self.key) == key:
                return row
        raise KeyError(key)

    def _turn(self, step: int) -> None:
        self.page = min(max(self.page + step, 0), self.n_pages - 1)

    def _resort(self, _: object = None) -> None:
        rows = list(self.rows)
        if self.sort_by:
            rows.sort(key=lambda r: _sort_key(r.get(self.sort_by)), reverse=self.descending)
        self._ordered = rows
        keys = {r.get(self.key) for r in rows}
        kept = tuple(k for k in self.selected if k in keys)
        if kept != self.selected:
            self.selected = kept
        if self.page != 0:
            self.page = 0
        else:
            self._show_page()

    def _label(self, row: dict[str, Any]) -> str:
        return " ".join(format_cell(row.get(field), width) for field, _, width in self.columns)

    def _show_page(self, _: object = None) -> None:
        start = self.page * self.page_size
        page_rows = self._ordered[start : start + self.page_size]
        self._updating = True
        try:
            self.picker.options = [(self._label(r), r.get(self.key)) for r in page_rows]
            on_page = [r.get(self.key) for r in page_rows]
            if self.multiple:
                self.picker.value = tuple(k for k in self.selected if k in on_page)
            else:
                current = self.selected[0] if self.selected else None
                self.picker.value = current if current in on_page else None
        finally:
            self._updating = False
        total = len(self._ordered)
        self.page_label.value = f"page {self.page + 1}/{self.n_pages} ({total} rows)"

    def _picked(self, change: dict[str, Any]) -> None:
        if self._updating:
            return
        value = change["new"]
        if self.multiple:
            on_page = {o[1] for o in self.picker.options}
            others = tuple(k for k in self.selected if k not in on_page)
            self.selected = others + tuple(value)
        else:
            self.selected = () if value is None else (value,)

    def select(self, keys: Sequence[str]) -> None:
        """Select rows by key (as a click on them would)."""
        known = {r.get(self.key) for r in self.rows}
        missing = [k for k in keys if k not in known]
        if missing:
            raise KeyError(f"no row with key {missing[0]!r}")
        self.selected = tuple(keys) if self.multiple else tuple(keys[-1:])
        self._show_page()


def _escape(text: str) -> str:
    import html

    return html.escape(text)
