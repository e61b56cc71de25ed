"""Per-slice processors: the registry, typed parameters and the built-ins.

>>> from pacslab.processing import registry
>>> registry.get("gaussian_denoise").validate({"sigma": 2})
{'sigma': 2.0}
"""

from pacslab.processing import builtins as _builtins
from pacslab.processing.errors import ParameterError, ProcessorError, UnknownProcessorError
from pacslab.processing.parameters import Parameter, validate_params
from pacslab.processing.registry import (
    ENTRY_POINT_GROUP,
    InputKind,
    OutputKind,
    Processor,
    ProcessorRegistry,
    SliceContext,
    processor,
    registry,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "InputKind",
    "OutputKind",
    "Parameter",
    "ParameterError",
    "Processor",
    "ProcessorError",
    "ProcessorRegistry",
    "SliceContext",
    "UnknownProcessorError",
    "processor",
    "registry",
    "validate_params",
]

del _builtins
