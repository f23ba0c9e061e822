"""The shared argument checks: one message form, one error type per kind of mistake."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from weightwise import arguments, ops
from weightwise.arguments import (
    INT64_MAX,
    count,
    echo,
    finite_float,
    flag,
    invalid,
    is_int,
    real,
)


def test_arguments_is_at_the_bottom_of_the_dependency_order() -> None:
    tree = ast.parse(Path(arguments.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "math", "numbers", "typing", "numpy", "torch"}


def test_invalid_builds_the_keras_message() -> None:
    error = invalid("units", "a positive int", -2)
    assert type(error) is ValueError
    assert str(error) == "Invalid value for argument `units`: expected a positive int. Received: units=-2"
    error = invalid("value", "a float", "x", owner="Dense layer 'd'", error=TypeError)
    assert type(error) is TypeError
    assert str(error) == "Dense layer 'd': invalid value for argument `value`: expected a float. Received: value='x'"


@pytest.mark.parametrize("value, expected", [
    ("abc", "'abc'"),
    (10**400, "1" + "0" * 116 + "..."),
    (torch.tensor(1), "tensor(1) of shape () and dtype int64"),
    (np.array(["a"]), "array(['a'], dtype='<U1') of shape (1,) and dtype <U1"),
])
def test_echo(value, expected: str) -> None:
    assert echo(value) == expected


def test_echo_of_a_large_tensor_is_cut_and_keeps_shape_and_dtype() -> None:
    text = echo(torch.zeros(1000, 7, dtype=torch.float16))
    assert text.startswith("tensor([[0., 0.,") and "\n" not in text
    assert text.endswith("... of shape (1000, 7) and dtype float16")
    assert echo(torch.zeros(2, device="meta")).endswith("of shape (2,) and dtype float32 on meta")


@pytest.mark.parametrize("value, expected", [
    (2, 2.0), (np.float32(0.5), 0.5), (np.int64(3), 3.0), (-0.0, -0.0),
    (10**400, None), (math.inf, None), (math.nan, None), (True, None), (np.True_, None), ("1", None), (None, None),
    (1j, None),
])
def test_finite_float(value, expected) -> None:
    assert finite_float(value) == expected


def test_is_int() -> None:
    assert [is_int(v) for v in (3, np.uint8(3), True, np.True_, 3.0, "3")] == [True, True, False, False, False, False]


@pytest.mark.parametrize("kwargs, good, bad, rule", [
    ({}, [0, -1.5, np.float16(2)], [math.nan, math.inf, 10**400, True, "1", None, [1]], "a finite float"),
    ({"low": 0}, [0, 3], [-1e-300], "a finite float >= 0"),
    ({"low": 0, "low_open": True}, [1e-300], [0, -1], "a positive finite float"),
    ({"low": 1, "low_open": True}, [1.5], [1], "a finite float > 1"),
    ({"high": 1}, [1, -5], [1.5], "a finite float <= 1"),
    ({"low": 0, "high": 1, "high_open": True}, [0, 0.5], [1, -0.1], "a float in [0, 1)"),
    ({"low": 0, "allow_none": True}, [None, 2], [-2], "a finite float >= 0 or None"),
    ({"low": 0, "allow_inf": True}, [math.inf, 0], [math.nan, -math.inf, 10**400], "a float >= 0"),
])
def test_real(kwargs, good, bad, rule: str) -> None:
    for value in good:
        result = real(value, "x", **kwargs)
        assert result is None if value is None else type(result) is float and result == value
    for value in bad:
        with pytest.raises(ValueError, match=re.escape(f"`x`: expected {rule}. Received: x=")) as info:
            real(value, "x", **kwargs)
        assert echo(value)[:20] in str(info.value)


def test_real_keep_int() -> None:
    assert type(real(2, "x", keep_int=True)) is int
    assert type(real(np.int32(2), "x", keep_int=True)) is int
    assert type(real(2.0, "x", keep_int=True)) is float


def test_flag() -> None:
    assert flag(True, "f") is True and flag(np.False_, "f") is False
    for value in (1, 0, "yes", None, torch.tensor(True), np.array(True)):
        with pytest.raises(ValueError, match="`f`: expected a bool"):
            flag(value, "f")


@pytest.mark.parametrize("kwargs, good, bad, rule", [
    ({}, [0, np.int8(5)], [-1, 1.0, True, "1", None], "an int >= 0"),
    ({"low": 1}, [1], [0], "a positive int"),
    ({"low": None}, [-(10**30)], [1.5], "an int"),
    ({"low": 1, "high": INT64_MAX}, [INT64_MAX], [INT64_MAX + 1, 0], f"an int in [1, {INT64_MAX}]"),
    ({"low": None, "high": 3}, [-7, 3], [4], "an int <= 3"),
    ({"low": 1, "allow_none": True}, [None, 2], [0], "a positive int or None"),
])
def test_count(kwargs, good, bad, rule: str) -> None:
    for value in good:
        result = count(value, "n", **kwargs)
        assert result is None if value is None else type(result) is int and result == value
    for value in bad:
        with pytest.raises(ValueError, match=re.escape(f"`n`: expected {rule}. Received: n=")):
            count(value, "n", **kwargs)


def test_owner_names_the_object_first() -> None:
    with pytest.raises(ValueError, match=r"^Dense layer 'd': invalid value for argument `units`"):
        count(0, "units", low=1, owner="Dense layer 'd'")


# -- the one tensor conversion that names its argument ----------------------------------
@pytest.mark.parametrize("value", ["abc", None, object(), [[1.0], [1.0, 2.0]], [torch.ones(2), torch.ones(3)],
                                   np.array(["a"]), 10**400])
def test_argument_tensor_refuses_what_is_no_tensor_with_a_type_error(value) -> None:
    with pytest.raises(TypeError, match="argument `y_true`"):
        ops.argument_tensor(value, "y_true")


def test_argument_tensor_real_refuses_complex_values() -> None:
    for value in (torch.ones(2, dtype=torch.complex64), np.ones(2, dtype=np.complex128), [1j]):
        assert ops.argument_tensor(value, "x").is_complex()
        with pytest.raises(TypeError, match="argument `y_pred`: expected real numbers, not complex"):
            ops.argument_tensor(value, "y_pred", real=True)
    tensor = torch.ones(2)
    assert ops.argument_tensor(tensor, "x", real=True) is tensor
