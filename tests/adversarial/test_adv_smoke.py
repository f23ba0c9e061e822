"""The harness itself: it passes what it should and catches what it must."""

from __future__ import annotations

import pytest
import torch
from harness import assert_unchanged, clear_error, correct, snapshot

from weightwise import regularizers


def test_clear_error_checks_message_and_state() -> None:
    linear = torch.nn.Linear(2, 2)
    clear_error(lambda: regularizers.L1(-1), "l1", "-1", state=[linear])
    with pytest.raises(AssertionError, match="lacks"):
        clear_error(lambda: regularizers.L1(-1), "not in the message")


def test_state_change_is_caught() -> None:
    linear = torch.nn.Linear(2, 2)
    before = snapshot(linear)
    with torch.no_grad():
        linear.weight.add_(1.0)
    with pytest.raises(AssertionError, match="weight"):
        assert_unchanged(before, snapshot(linear))


def test_correct_runs_the_check() -> None:
    correct(lambda: regularizers.L2(1.0)(torch.ones(2)), lambda r: float(r) == 2.0)
    with pytest.raises(AssertionError):
        correct(lambda: regularizers.L2(1.0)(torch.ones(2)), lambda r: float(r) == 3.0)
