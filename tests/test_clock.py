"""The step that scheduled factors are read at, and how torch optimizers move it."""

from __future__ import annotations

import pytest
import torch

from weightwise import clock, factors


def _adam() -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
    w = torch.nn.Parameter(torch.ones(2))
    return w, torch.optim.Adam([w], lr=0.1)


def test_following_a_new_optimizer_starts_at_zero_whatever_an_earlier_loop_left() -> None:
    clock.set_step(41)
    _, opt = _adam()
    clock.follow(opt)
    assert clock.step() == 0


def test_following_an_optimizer_that_already_stepped_counts_on_from_its_state() -> None:
    w, opt = _adam()
    for _ in range(3):
        w.grad = torch.ones(2)
        opt.step()
    clock.set_step(0)
    clock.follow(opt)
    assert clock.step() == 3
    w.grad = torch.ones(2)
    opt.step()
    assert clock.step() == 4


def test_each_step_counts_once_however_often_the_optimizer_is_followed() -> None:
    w, opt = _adam()
    for _ in range(3):
        clock.follow(opt)
    for _ in range(5):
        w.grad = torch.ones(2)
        opt.step()
    assert clock.step() == 5


def test_at_step_restores_the_step_even_after_an_error() -> None:
    clock.set_step(2)
    with pytest.raises(RuntimeError), clock.at_step(9):
        assert clock.step() == 9
        raise RuntimeError("inside")
    assert clock.step() == 2


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_bad_steps_are_refused_naming_the_argument(bad) -> None:
    with pytest.raises(ValueError, match=r"argument `step`.*Received: step="):
        clock.set_step(bad)


def test_follow_refuses_what_is_not_a_torch_optimizer() -> None:
    with pytest.raises(TypeError, match=r"argument `optimizer`.*Received: optimizer="):
        clock.follow("adam")


def test_factors_are_read_at_the_step_and_numbers_pass_through() -> None:
    with clock.at_step(4):
        assert factors.factor_value(lambda step: 0.5 * step, "l2") == 2.0
        assert factors.factor_value(lambda step: torch.tensor(3.0), "l2") == 3.0
    assert factors.factor_value(0.25, "l2") == 0.25
    assert not clock.is_scheduled(torch.tensor(1.0)) and clock.is_scheduled(clock.step)
