"""Runs every docstring example in the package as a doctest.

The seed documents' examples are kept exactly as Keras prints them (``50.0``,
``[0., 1.]``). Our results are torch tensors, which print as ``tensor(50.)``, so
the output checker also accepts a tensor whose values equal the expected literal.
Anything else must match as text, as in any doctest.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import re

import numpy as np
import pytest

import weightwise

_TENSOR_NOTES = re.compile(r",\s*(?:grad_fn=<\w+>|dtype=torch\.\w+|requires_grad=True)")
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _literal(text: str) -> np.ndarray | None:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return None
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array


class TensorValueChecker(doctest.OutputChecker):
    """Text match first; failing that, printed tensors equal in value to the expected literal.

    ``tensor(50.)`` matches ``50.0``; a one-element list of tensors matches its value,
    as Keras's documentation prints ``layer.losses`` (``0.25``).
    """

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        if super().check_output(want, got, optionflags):
            return True
        if "tensor(" not in got:
            return False
        expected = _literal(want)
        actual = _literal(_TENSOR_NOTES.sub("", got).replace("tensor(", "("))
        if expected is None or actual is None:
            return False
        if expected.shape != actual.shape and not (expected.size == actual.size == 1):
            return False
        # Torch prints 4 significant digits; the literal must agree to that precision.
        return bool(np.allclose(actual.reshape(expected.shape), expected, rtol=1e-4, atol=1e-6))


def _modules() -> list[str]:
    names = ["weightwise"]
    names += [m.name for m in pkgutil.walk_packages(weightwise.__path__, "weightwise.")]
    return sorted(n for n in names if not n.endswith(".demo"))


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder()
    tests = []
    for name in _modules():
        module = importlib.import_module(name)
        tests += [t for t in finder.find(module, name) if t.examples]
    return tests


_ALL = _doctests()


def test_doctests_were_collected() -> None:
    modules = {t.name.split(".")[1] for t in _ALL if t.name.count(".")}
    assert {"backend", "ops", "regularizers", "constraints", "serialization", "saving"} <= modules


@pytest.mark.parametrize("test", _ALL, ids=[t.name for t in _ALL])
def test_docstring_example(test: doctest.DocTest) -> None:
    report: list[str] = []
    runner = doctest.DocTestRunner(checker=TensorValueChecker(), optionflags=_FLAGS)
    test.globs = dict(test.globs)
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_checker_accepts_equal_values_and_rejects_others() -> None:
    checker = TensorValueChecker()
    assert checker.check_output("50.0\n", "tensor(50.)\n", _FLAGS)
    assert checker.check_output("[0., 1.]\n", "tensor([0., 1.])\n", _FLAGS)
    assert checker.check_output("5.25\n", "tensor(5.2500, dtype=torch.float64)\n", _FLAGS)
    assert not checker.check_output("50.0\n", "tensor(50.1000)\n", _FLAGS)
    assert not checker.check_output("[0., 1.]\n", "tensor([0., 1., 2.])\n", _FLAGS)
    assert not checker.check_output("[0., 1.]\n", "[0., 1.5]\n", _FLAGS)
    assert checker.check_output("0.25\n", "[tensor(0.2500, grad_fn=<MulBackward0>)]\n", _FLAGS)
    assert not checker.check_output("0.25\n", "[tensor(0.2500), tensor(1.)]\n", _FLAGS)
    assert not checker.check_output("0.25\n", "[tensor(0.3500, grad_fn=<MulBackward0>)]\n", _FLAGS)
    assert not checker.check_output("0.25\n", "0.2500\n", _FLAGS)
