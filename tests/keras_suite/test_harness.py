"""The harness itself: the swap is scoped, stand-ins fail loudly, the assertions can fail, the tables are current."""

from __future__ import annotations

import sys
import unittest
from fnmatch import fnmatchcase

import numpy as np
import pytest
import torch

import weightwise
from keras_suite import selection, swap, test_keras_own
from keras_suite.testing import TestCase, dtype_name


def _keras_test_ids() -> list[str]:
    loader = unittest.TestLoader()
    return [f"{name}::{method}" for name, cls in vars(test_keras_own).items()
            if isinstance(cls, type) and issubclass(cls, TestCase) and cls is not TestCase
            for method in loader.getTestCaseNames(cls)]


def test_swap_gives_weightwise_inside_and_keras_outside() -> None:
    import keras

    with swap.swapped():
        from keras.src import layers

        assert layers.Dense is weightwise.layers.Dense
        assert sys.modules["keras"] is not keras
    assert sys.modules["keras"] is keras
    assert keras.layers.Dense is not weightwise.layers.Dense


def test_swap_writes_nothing_onto_weightwise() -> None:
    before = set(vars(weightwise.layers))
    with swap.swapped():
        import keras.src.quantizers.awq_config  # noqa: F401
        from keras.src.layers import Wrapper  # noqa: F401 - a stand-in: weightwise has none
    assert set(vars(weightwise.layers)) == before
    assert not hasattr(weightwise, "src")


def test_a_missing_keras_name_fails_when_used_naming_it() -> None:
    with swap.swapped():
        from keras.src.quantizers.quantizers import AbsMaxQuantizer
    with pytest.raises(NotImplementedError, match=r"keras\.src\.quantizers\.quantizers\.AbsMaxQuantizer"):
        AbsMaxQuantizer(axis=-1)


def test_outside_the_swap_a_missing_attribute_is_an_attribute_error() -> None:
    with swap.swapped():
        from keras.src import ops
    with pytest.raises(AttributeError, match=r"keras\.src\.ops\.no_such_op"):
        ops.no_such_op  # noqa: B018


class _Assertions(TestCase):
    __test__ = False  # an instance to call the assertions on, not a test

    def runTest(self) -> None:
        pass


def test_assertions_fail_on_a_difference() -> None:
    case = _Assertions()
    case.assertAllClose(torch.tensor([1.0, 2.0]), np.array([1.0, 2.0]))
    with pytest.raises(AssertionError):
        case.assertAllClose(torch.tensor([1.0, 2.0]), [1.0, 2.001])
    with pytest.raises(AssertionError):
        case.assertAllEqual([1, 2], [1, 3])
    with pytest.raises(AssertionError):
        case.assertLen([1, 2], 3)
    with pytest.raises(AssertionError):
        case.assertDType(torch.ones(2, dtype=torch.float64), "float32")
    case.assertDType(1.0, "float32")
    assert dtype_name(torch.int64) == "int64"


def test_serialization_check_catches_a_config_that_does_not_round_trip() -> None:
    class Forgetful(weightwise.layers.Dense):
        def get_config(self) -> dict:
            config = super().get_config()
            config["units"] = config["units"] + 1
            return config

    with pytest.raises(AssertionError):
        _Assertions().run_class_serialization_test(Forgetful(3), custom_objects={"Forgetful": Forgetful})


def test_every_table_entry_matches_a_keras_test() -> None:
    ids = _keras_test_ids()
    assert len(ids) > 250
    for table in (selection.EXCLUDED, selection.FAILING):
        stale = [pattern for pattern in table if not any(fnmatchcase(test_id, pattern) for test_id in ids)]
        assert not stale


def test_listed_keras_files_are_installed() -> None:
    for path in (*selection.KERAS_TEST_FILES, *selection.PENDING_FILES):
        assert (swap.KERAS_SOURCE / path).is_file(), path
