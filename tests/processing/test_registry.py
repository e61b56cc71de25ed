"""The registry: lookup errors, the decorator, entry-point plugins, output checks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from pacslab.processing import (
    Parameter,
    Processor,
    ProcessorError,
    ProcessorRegistry,
    UnknownProcessorError,
    processor,
    registry,
)


def test_unknown_name_is_named_with_what_exists() -> None:
    with pytest.raises(UnknownProcessorError, match=r"No processor named 'nope' \(registered: .*otsu_mask"):
        registry.get("nope")


def test_decorator_registers_a_notebook_function_and_it_stays_callable() -> None:
    local = ProcessorRegistry(group="pacslab.test.none")

    @processor(name="invert", version="2", params={"offset": Parameter(0.0)}, target=local)
    def invert(pixels: np.ndarray, offset: float) -> np.ndarray:
        """Offset minus the pixels."""
        return offset - pixels

    assert local.get("invert") is invert
    assert invert.version == "2"
    assert invert.description == "Offset minus the pixels."
    np.testing.assert_array_equal(invert(np.ones((2, 2)), offset=3), np.full((2, 2), 2.0))
    assert local.shippable() == [invert]


def test_rerunning_a_notebook_cell_replaces_the_processor() -> None:
    local = ProcessorRegistry(group="pacslab.test.none")
    for version in ("1", "2"):

        @processor(name="mine", version=version, target=local)
        def mine(pixels: np.ndarray) -> np.ndarray:
            return pixels

    assert local.get("mine").version == "2"
    assert local.names() == ["mine"]


def test_a_builtin_name_cannot_be_taken() -> None:
    with pytest.raises(ProcessorError, match="'otsu_mask' belongs to a builtin processor"):

        @processor(name="otsu_mask")
        def clash(pixels: np.ndarray) -> np.ndarray:
            return pixels


def test_listeners_hear_of_registrations() -> None:
    local = ProcessorRegistry(group="pacslab.test.none")
    heard: list[str] = []
    unsubscribe = local.subscribe(lambda p: heard.append(p.name))

    @processor(name="a", target=local)
    def a(pixels: np.ndarray) -> np.ndarray:
        return pixels

    unsubscribe()

    @processor(name="b", target=local)
    def b(pixels: np.ndarray) -> np.ndarray:
        return pixels

    assert heard == ["a"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "version": "1"}, "non-empty name"),
        ({"name": "x", "version": ""}, "needs a version"),
        ({"name": "x", "version": "1", "output": "movie"}, "output must be one of"),
        ({"name": "x", "version": "1", "input": "volume"}, "input must be one of"),
        ({"name": "x", "version": "1", "input": "neighbours"}, "needs neighbours >= 1"),
        ({"name": "x", "version": "1", "parameters": {"gain": Parameter(1.0)}}, "'gain' is not an argument"),
        (
            {"name": "x", "version": "1", "parameters": {"k": Parameter(5, maximum=3)}},
            "'k'.*above the maximum",
        ),
    ],
)
def test_badly_defined_processors_are_refused(kwargs: dict[str, object], message: str) -> None:
    def function(pixels: np.ndarray, k: int = 0) -> np.ndarray:
        return pixels

    with pytest.raises(ProcessorError, match=message):
        Processor(function=function, **kwargs)  # type: ignore[arg-type]


def test_outputs_are_checked_against_the_declared_kind() -> None:
    def wrong_shape(pixels: np.ndarray) -> np.ndarray:
        return np.zeros((3, 3), dtype=bool)

    def not_numbers(pixels: np.ndarray) -> dict[str, object]:
        return {"area": "big"}

    def grey_mask(pixels: np.ndarray) -> np.ndarray:
        return np.full(pixels.shape, 0.5)

    image = np.zeros((4, 4), dtype=np.float32)
    with pytest.raises(ProcessorError, match=r"mask of shape \(3, 3\), not \(4, 4\)"):
        Processor("m", "1", wrong_shape, output="mask")(image)
    with pytest.raises(ProcessorError, match="measurement 'area' must be a number"):
        Processor("m", "1", not_numbers, output="measurements")(image)
    with pytest.raises(ProcessorError, match="values other than 0 and 1"):
        Processor("m", "1", grey_mask, output="mask")(image)
    with pytest.raises(ProcessorError, match="must return a numpy array"):
        Processor("m", "1", not_numbers, output="image")(image)


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real installed distribution (dist-info on sys.path) publishing two entry points."""
    (tmp_path / "lab_plugin.py").write_text(
        textwrap.dedent(
            """
            from pacslab.processing import Processor

            def _double(pixels):
                return pixels * 2

            double = Processor(name="double", version="3.1", function=_double)
            """
        )
    )
    info = tmp_path / "lab_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[pacslab.test.plugins]\ndouble = lab_plugin:double\nbroken = lab_plugin:missing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_processors_are_loaded(plugin_path: Path) -> None:
    local = ProcessorRegistry(group="pacslab.test.plugins")
    double = local.get("double")
    assert double.origin == "entry point"
    assert double.version == "3.1"
    np.testing.assert_array_equal(double(np.ones((2, 2))), np.full((2, 2), 2.0))
    assert local.shippable() == []
    with pytest.raises(
        UnknownProcessorError, match="'broken' is unavailable: entry point 'lab_plugin:missing'"
    ):
        local.get("broken")
    assert local.names() == ["double"]


def test_a_notebook_function_using_the_registry_travels_to_workers_by_value() -> None:
    import cloudpickle

    local = ProcessorRegistry(group="pacslab.test.none")
    local.subscribe(lambda p: None)  # a listener holds the client; it must not travel

    @processor(name="edges_then_invert", target=local)
    def edges_then_invert(pixels: np.ndarray) -> np.ndarray:
        return -registry.get("sobel_edges")(pixels)

    copy = cloudpickle.loads(cloudpickle.dumps(edges_then_invert))
    assert copy.function.__globals__["registry"] is registry
    np.testing.assert_array_equal(
        copy(np.eye(4, dtype=np.float32)), edges_then_invert(np.eye(4, dtype=np.float32))
    )
