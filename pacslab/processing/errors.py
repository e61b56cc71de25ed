"""Errors raised by the processor registry and by parameter checks."""

from __future__ import annotations

__all__ = ["ParameterError", "ProcessorError", "UnknownProcessorError"]


class ProcessorError(Exception):
    """A processor is badly defined, missing, or returned something it did not promise."""


class UnknownProcessorError(ProcessorError, KeyError):
    """No processor is registered under the requested name."""

    def __str__(self) -> str:
        # KeyError quotes its argument; show the message as written.
        return str(self.args[0]) if self.args else ""


class ParameterError(ProcessorError, ValueError):
    """A parameter value is missing, of the wrong type or out of range; names the parameter."""

    def __init__(self, processor: str, parameter: str, problem: str) -> None:
        self.processor = processor
        self.parameter = parameter
        self.problem = problem
        super().__init__(f"parameter {parameter!r} of processor {processor!r}: {problem}")
