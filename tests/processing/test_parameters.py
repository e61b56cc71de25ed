"""Parameter checks: every invalid value is refused with the parameter's name."""

from __future__ import annotations

import pytest

from pacslab.processing import Parameter, ParameterError, ProcessorError, registry


def test_defaults_fill_missing_values_and_numbers_are_converted() -> None:
    assert registry.get("gaussian_denoise").validate({}) == {"sigma": 1.0}
    assert registry.get("gaussian_denoise").validate({"sigma": 3}) == {"sigma": 3.0}
    assert registry.get("nl_means_denoise").validate({"patch_size": 7.0})["patch_size"] == 7


@pytest.mark.parametrize(
    ("name", "params", "parameter", "message"),
    [
        ("gaussian_denoise", {"sigma": -1.0}, "sigma", "below the minimum 0.0"),
        ("gaussian_denoise", {"sigma": 51}, "sigma", "above the maximum 50.0"),
        ("gaussian_denoise", {"sigma": "2"}, "sigma", "expected a number"),
        ("gaussian_denoise", {"sigma": float("nan")}, "sigma", "finite"),
        ("gaussian_denoise", {"sigma": True}, "sigma", "expected a number"),
        ("gaussian_denoise", {"sgima": 2.0}, "sgima", r"no such parameter \(parameters: sigma\)"),
        ("nl_means_denoise", {"patch_size": 2.5}, "patch_size", "whole number"),
        ("otsu_mask", {"fill_holes": 1}, "fill_holes", "true or false"),
        ("region_measurements", {"method": "kmeans"}, "method", "not one of 'otsu', 'manual'"),
        ("window", {"center": None}, "center", "expected a number"),
    ],
)
def test_invalid_values_name_the_parameter(
    name: str, params: dict[str, object], parameter: str, message: str
) -> None:
    with pytest.raises(ParameterError, match=message) as caught:
        registry.get(name).validate(params)
    assert caught.value.parameter == parameter
    assert f"parameter {parameter!r} of processor {name!r}" in str(caught.value)


def test_parameter_definitions_are_checked() -> None:
    with pytest.raises(ProcessorError, match="must be bool, int, float or str"):
        Parameter([1, 2])
    with pytest.raises(ProcessorError, match="range is empty"):
        Parameter(1.0, minimum=2.0, maximum=1.0)
    assert Parameter(1, kind=float).check("p", "x", 2) == 2.0
