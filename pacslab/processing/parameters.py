"""Typed processor parameters: a default, an optional range or set of choices, a description."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pacslab.processing.errors import ParameterError, ProcessorError

__all__ = ["Parameter", "validate_params"]

_KINDS: tuple[type, ...] = (bool, int, float, str)


@dataclass(frozen=True)
class Parameter:
    """One parameter of a processor.

    Parameters
    ----------
    default
        Value used when the caller gives none; its type is the parameter's type unless
        ``kind`` says otherwise (``bool``, ``int``, ``float`` or ``str``).
    minimum, maximum
        Inclusive bounds for numbers; ``None`` for no bound.
    choices
        Allowed values, for a parameter that takes one of a few settings.
    description
        One line shown next to the control in the widgets.
    kind
        The type, when ``default`` alone does not say it (an ``int`` default for a float).
    """

    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    description: str = ""
    kind: type = field(default=type(None))

    def __post_init__(self) -> None:
        kind = self.kind if self.kind is not type(None) else type(self.default)
        if kind not in _KINDS:
            raise ProcessorError(
                f"a parameter must be bool, int, float or str; default {self.default!r} is {kind.__name__}"
            )
        object.__setattr__(self, "kind", kind)
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ProcessorError(f"parameter range is empty: minimum {self.minimum} > maximum {self.maximum}")

    def check(self, processor: str, name: str, value: Any) -> Any:
        """Return ``value`` converted to the parameter's type, or raise :class:`ParameterError`."""
        kind = self.kind
        if kind is bool:
            if not isinstance(value, bool):
                raise ParameterError(processor, name, f"expected true or false, got {value!r}")
            converted: Any = value
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
                raise ParameterError(processor, name, f"expected a whole number, got {value!r}")
            converted = int(value)
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParameterError(processor, name, f"expected a number, got {value!r}")
            converted = float(value)
            if not math.isfinite(converted):
                raise ParameterError(processor, name, f"expected a finite number, got {value!r}")
        else:
            if not isinstance(value, str):
                raise ParameterError(processor, name, f"expected text, got {value!r}")
            converted = value
        if self.choices is not None and converted not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ParameterError(processor, name, f"{converted!r} is not one of {allowed}")
        if self.minimum is not None and converted < self.minimum:
            raise ParameterError(processor, name, f"{converted!r} is below the minimum {self.minimum}")
        if self.maximum is not None and converted > self.maximum:
            raise ParameterError(processor, name, f"{converted!r} is above the maximum {self.maximum}")
        return converted


def validate_params(
    processor: str, parameters: Mapping[str, Parameter], values: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Check ``values`` against ``parameters`` and fill in defaults.

    Parameters
    ----------
    processor
        Name used in error messages.
    parameters
        The processor's declared parameters.
    values
        What the caller asked for; may be ``None`` or partial.

    Returns
    -------
    dict
        Every declared parameter with a checked value, in declaration order.

    Raises
    ------
    ParameterError
        Naming the first unknown parameter or the first invalid value.
    """
    values = dict(values or {})
    unknown: Sequence[str] = [k for k in values if k not in parameters]
    if unknown:
        known = ", ".join(parameters) or "none"
        raise ParameterError(processor, unknown[0], f"no such parameter (parameters: {known})")
    return {
        name: param.check(processor, name, values.get(name, param.default))
        for name, param in parameters.items()
    }
