"""The processor registry: one instance, filled by the built-ins, entry points and a decorator.

A processor is a plain function from the pixels of one slice (float32, rescaled to physical
units such as HU) to an image, a mask or a dict of measurements, with a name, a version and
typed parameters. Plugins publish :class:`Processor` objects under the entry-point group
``pacslab.processors``; a notebook registers a function with :func:`processor`.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, get_args

import numpy as np

from pacslab.processing.errors import ProcessorError, UnknownProcessorError
from pacslab.processing.parameters import Parameter, validate_params

__all__ = [
    "ENTRY_POINT_GROUP",
    "InputKind",
    "OutputKind",
    "Processor",
    "ProcessorRegistry",
    "SliceContext",
    "processor",
    "registry",
]

ENTRY_POINT_GROUP = "pacslab.processors"

InputKind = Literal["slice", "neighbours", "channels"]
OutputKind = Literal["image", "mask", "measurements"]
Origin = Literal["builtin", "entry point", "decorator"]
INPUT_KINDS: tuple[str, ...] = get_args(InputKind)
OUTPUT_KINDS: tuple[str, ...] = get_args(OutputKind)


@dataclass(frozen=True)
class SliceContext:
    """What a processor may need to know about the slice besides its pixels."""

    index: int = 0
    pixel_spacing: tuple[float, float] = (1.0, 1.0)  # (row, column) spacing in mm
    series_uid: str = ""
    sop_instance_uid: str = ""


@dataclass(frozen=True)
class Processor:
    """A named, versioned per-slice function with typed parameters.

    Parameters
    ----------
    name, version
        Identify the processor in the registry and in every result's provenance.
    function
        ``function(pixels, **params)``; it also receives ``context=SliceContext(...)`` when
        it declares a ``context`` argument.
    parameters
        Name to :class:`Parameter`.
    input
        ``"slice"``: a (rows, cols) array; ``"neighbours"``: (2n+1, rows, cols) with the
        slice in the middle and edges repeated; ``"channels"``: (channels, rows, cols).
    neighbours
        ``n`` for ``input="neighbours"``.
    output
        ``"image"`` (an array), ``"mask"`` (a boolean array of the slice's shape) or
        ``"measurements"`` (a dict of numbers).
    description
        One line for the processor picker.
    """

    name: str
    version: str
    function: Callable[..., Any]
    parameters: Mapping[str, Parameter] = field(default_factory=dict)
    input: InputKind = "slice"
    neighbours: int = 0
    output: OutputKind = "image"
    description: str = ""
    origin: Origin = "decorator"

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ProcessorError(f"a processor needs a non-empty name, got {self.name!r}")
        if not self.version or not isinstance(self.version, str):
            raise ProcessorError(f"processor {self.name!r} needs a version string, got {self.version!r}")
        if self.input not in INPUT_KINDS:
            raise ProcessorError(
                f"processor {self.name!r}: input must be one of {INPUT_KINDS}, got {self.input!r}"
            )
        if self.output not in OUTPUT_KINDS:
            raise ProcessorError(
                f"processor {self.name!r}: output must be one of {OUTPUT_KINDS}, got {self.output!r}"
            )
        if self.input == "neighbours" and self.neighbours < 1:
            raise ProcessorError(f"processor {self.name!r}: input 'neighbours' needs neighbours >= 1")
        params = dict(self.parameters)
        for key, value in params.items():
            if not isinstance(value, Parameter):
                params[key] = Parameter(value)
        object.__setattr__(self, "parameters", params)
        accepted = inspect.signature(self.function).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        for key in params:
            if not takes_any and key not in accepted:
                raise ProcessorError(
                    f"processor {self.name!r}: parameter {key!r} is not an argument of the function"
                )
        # Defaults must satisfy their own ranges.
        validate_params(self.name, params, {})
        # Looked up once: apply() runs for every slice.
        object.__setattr__(self, "_takes_context", "context" in accepted)

    @property
    def takes_context(self) -> bool:
        """Whether the function wants a :class:`SliceContext` as ``context``."""
        return bool(self.__dict__["_takes_context"])

    def validate(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every parameter with a checked value; raises :class:`ParameterError` naming a bad one."""
        return validate_params(self.name, self.parameters, params)

    def apply(
        self, pixels: np.ndarray, params: Mapping[str, Any], context: SliceContext | None = None
    ) -> Any:
        """Run on one slice with already validated ``params`` and check what comes back."""
        kwargs = dict(params)
        if self.takes_context:
            kwargs["context"] = context or SliceContext()
        result = self.function(pixels, **kwargs)
        return self.check_output(result, pixels.shape[-2:])

    def __call__(self, pixels: np.ndarray, context: SliceContext | None = None, **params: Any) -> Any:
        """Validate ``params`` and run on one slice (handy for trying a processor in a notebook)."""
        return self.apply(np.asarray(pixels), self.validate(params), context)

    def check_output(self, result: Any, shape: tuple[int, ...]) -> Any:
        """Return ``result`` in the declared output kind, or raise :class:`ProcessorError`."""
        if self.output == "measurements":
            if not isinstance(result, Mapping) or not result:
                raise ProcessorError(
                    f"processor {self.name!r} must return a non-empty dict of measurements, "
                    f"got {type(result).__name__}"
                )
            checked: dict[str, float] = {}
            for key, value in result.items():
                if (
                    not isinstance(key, str)
                    or isinstance(value, bool)
                    or not isinstance(value, int | float | np.number)
                ):
                    raise ProcessorError(
                        f"processor {self.name!r}: measurement {key!r} must be a number, got {value!r}"
                    )
                checked[key] = float(value)
            return checked
        if not isinstance(result, np.ndarray):
            raise ProcessorError(
                f"processor {self.name!r} must return a numpy array, got {type(result).__name__}"
            )
        if self.output == "mask":
            if result.shape != tuple(shape):
                raise ProcessorError(
                    f"processor {self.name!r} returned a mask of shape {result.shape}, not {tuple(shape)}"
                )
            if result.dtype != np.bool_:
                if not np.isin(result, (0, 1)).all():
                    raise ProcessorError(
                        f"processor {self.name!r} returned a mask with values other than 0 and 1"
                    )
                result = result.astype(bool)
            return result
        if result.ndim < 2 or result.dtype.kind not in "biufc":
            raise ProcessorError(
                f"processor {self.name!r} must return a 2-D or 3-D numeric image, "
                f"got shape {result.shape} of {result.dtype}"
            )
        return result


class ProcessorRegistry:
    """Processors by name; entry points of ``group`` are loaded on first lookup.

    A lookup of an unknown name raises :class:`UnknownProcessorError` listing what exists.
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self._group = group
        self._processors: dict[str, Processor] = {}
        self._broken: dict[str, str] = {}
        self._entry_points_loaded = False
        self._listeners: list[Callable[[Processor], None]] = []
        self._lock = threading.RLock()

    def register(self, proc: Processor, *, notify: bool = True) -> Processor:
        """Add ``proc``; a notebook may re-register its own processor under the same name.

        ``notify=False`` skips the listeners (a worker plugin installing processors it was sent).

        Raises
        ------
        ProcessorError
            When the name belongs to a built-in or an entry-point processor.
        """
        with self._lock:
            existing = self._processors.get(proc.name)
            if existing is not None and existing.origin != "decorator" and proc.origin == "decorator":
                raise ProcessorError(
                    f"processor name {proc.name!r} belongs to a {existing.origin} processor; choose another"
                )
            self._processors[proc.name] = proc
            listeners = list(self._listeners) if notify else []
        for listener in listeners:
            listener(proc)
        return proc

    def _load_entry_points(self) -> None:
        with self._lock:
            if self._entry_points_loaded:
                return
            self._entry_points_loaded = True
            for ep in entry_points(group=self._group):
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plugin must not hide the others
                    self._broken[ep.name] = f"entry point {ep.value!r} failed to load: {exc!r}"
                    continue
                if not isinstance(obj, Processor):
                    self._broken[ep.name] = f"entry point {ep.value!r} is not a pacslab Processor"
                    continue
                if obj.name not in self._processors:
                    self._processors[obj.name] = dataclasses.replace(obj, origin="entry point")

    def get(self, name: str) -> Processor:
        """The processor called ``name``."""
        self._load_entry_points()
        with self._lock:
            if name in self._processors:
                return self._processors[name]
            if name in self._broken:
                raise UnknownProcessorError(f"processor {name!r} is unavailable: {self._broken[name]}")
            known = ", ".join(sorted(self._processors)) or "none"
            raise UnknownProcessorError(f"No processor named {name!r} (registered: {known})")

    def names(self) -> list[str]:
        """Sorted names of every registered processor."""
        self._load_entry_points()
        with self._lock:
            return sorted(self._processors)

    def shippable(self) -> list[Processor]:
        """Processors registered with the decorator, which a worker cannot import by itself."""
        with self._lock:
            return [p for p in self._processors.values() if p.origin == "decorator"]

    def subscribe(self, listener: Callable[[Processor], None]) -> Callable[[], None]:
        """Call ``listener(proc)`` after each registration; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def __reduce__(self) -> str | tuple[Any, ...]:
        # A notebook function sent to workers by value may refer to the registry: it must
        # arrive as the worker's own registry, not as a copy with the client's listeners.
        if self is registry:
            return "registry"
        return (ProcessorRegistry, (self._group,))

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        with self._lock:
            return name in self._processors

    def __iter__(self) -> Iterator[Processor]:
        self._load_entry_points()
        with self._lock:
            return iter(list(self._processors.values()))

    def __len__(self) -> int:
        return len(self.names())


registry = ProcessorRegistry()


def processor(
    name: str | None = None,
    version: str = "1",
    *,
    output: OutputKind = "image",
    input: InputKind = "slice",
    neighbours: int = 0,
    params: Mapping[str, Parameter | Any] | None = None,
    description: str = "",
    target: ProcessorRegistry | None = None,
    origin: Origin = "decorator",
) -> Callable[[Callable[..., Any]], Processor]:
    """Register the decorated function as a processor and return the :class:`Processor`.

    Examples
    --------
    >>> @processor(name="invert", version="1", params={"offset": Parameter(0.0)})
    ... def invert(pixels, offset):
    ...     return offset - pixels
    """

    def decorate(function: Callable[..., Any]) -> Processor:
        doc = (inspect.getdoc(function) or "").strip().splitlines()
        proc = Processor(
            name=name or function.__name__,
            version=version,
            function=function,
            parameters=dict(params or {}),
            input=input,
            neighbours=neighbours,
            output=output,
            description=description or (doc[0] if doc else ""),
            origin=origin,
        )
        return (target if target is not None else registry).register(proc)

    return decorate
