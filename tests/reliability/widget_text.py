"""What a widget tree shows: every text value, label, option and description in it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ipywidgets as w

__all__ = ["text_inputs", "visible_text", "walk"]


def walk(widget: Any) -> Iterator[w.Widget]:
    """The widget and everything under it (children, and the panes of tabs and accordions)."""
    seen: set[int] = set()
    pending = [widget]
    while pending:
        current = pending.pop()
        if id(current) in seen or not isinstance(current, w.Widget):
            continue
        seen.add(id(current))
        yield current
        pending.extend(getattr(current, "children", ()) or ())


def visible_text(widget: Any) -> str:
    """Every string the page would show for ``widget`` (HTML values unrendered), one per line."""
    parts: list[str] = []
    for item in walk(widget):
        for name in ("value", "description", "placeholder", "tooltip"):
            value = getattr(item, name, None)
            if isinstance(value, str) and value:
                parts.append(value)
        options = getattr(item, "options", None)
        if isinstance(options, tuple | list):
            parts += [str(o[0]) if isinstance(o, tuple) else str(o) for o in options]
        titles = getattr(item, "titles", None)
        if isinstance(titles, tuple | list):
            parts += [str(t) for t in titles if t]
    return "\n".join(parts)


def text_inputs(widget: Any) -> list[w.Widget]:
    """The widgets a user types free text into."""
    kinds = (w.Text, w.Textarea, w.Combobox, w.Password)
    return [item for item in walk(widget) if isinstance(item, kinds)]
