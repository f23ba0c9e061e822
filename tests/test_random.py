"""weightwise.random against keras.random (Keras 3.15.1, torch backend): same numbers from the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import keras_or_skip

from weightwise import random, utils

X = torch.arange(24.0).reshape(4, 6)
LOGITS = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, -1.0]])

# (name, positional arguments, keyword arguments): each drawn by both libraries.
DRAWS = [
    ("normal", ((3, 4),), {"mean": 1.0, "stddev": 2.0}),
    ("uniform", ((3, 4),), {"minval": -1.0, "maxval": 3.0}),
    ("uniform", ((),), {}),
    ("truncated_normal", ((50, 4),), {"mean": 0.5, "stddev": 3.0}),
    ("randint", ((20,), 0, 7), {}),
    ("randint", ((5,), -3, 3), {"dtype": "int64"}),
    ("shuffle", (X,), {}),
    ("shuffle", (X,), {"axis": 1}),
    ("dropout", (torch.ones(6, 7), 0.3), {}),
    ("dropout", (torch.ones(6, 7), 0.5), {"noise_shape": (None, 1)}),
    ("categorical", (LOGITS, 8), {}),
    ("gamma", ((10,), 2.0), {}),
    ("binomial", ((10,), 5, 0.3), {}),
    ("beta", ((10,), 2.0, 3.0), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), DRAWS, ids=[f"{d[0]}-{i}" for i, d in enumerate(DRAWS)])
def test_an_int_seed_gives_kerass_numbers(name, args, kwargs) -> None:
    keras = keras_or_skip()
    ours = getattr(random, name)(*args, seed=42, **kwargs)
    theirs = getattr(keras.random, name)(*args, seed=42, **kwargs)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert torch.equal(ours, theirs.cpu())


@pytest.mark.parametrize(("name", "args", "kwargs"), DRAWS[:6] + DRAWS[9:11],
                         ids=[d[0] for d in DRAWS[:6] + DRAWS[9:11]])
def test_a_seed_generator_gives_kerass_sequence(name, args, kwargs) -> None:
    keras = keras_or_skip()
    ours, theirs = random.SeedGenerator(7), keras.random.SeedGenerator(7)
    draws = [getattr(random, name)(*args, seed=ours, **kwargs) for _ in range(3)]
    for value in draws:
        assert torch.equal(value, getattr(keras.random, name)(*args, seed=theirs, **kwargs).cpu())
    if name != "uniform" or args[0]:
        assert not torch.equal(draws[0], draws[1])


def test_set_random_seed_makes_unseeded_draws_kerass_and_reproducible() -> None:
    keras = keras_or_skip()
    keras.utils.set_random_seed(3)
    theirs = [keras.random.normal((4,)).cpu() for _ in range(2)]
    utils.set_random_seed(3)
    ours = [random.normal((4,)) for _ in range(2)]
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert not torch.equal(ours[0], ours[1])


def test_truncated_normal_redraws_what_keras_leaves_outside_two_stddevs() -> None:
    keras = keras_or_skip()
    shape, mean, stddev = (2_000_000,), 1.0, 0.5
    ours = random.truncated_normal(shape, mean=mean, stddev=stddev, seed=11)
    theirs = keras.random.truncated_normal(shape, mean=mean, stddev=stddev, seed=11).cpu()
    outside = ((theirs - mean).abs() >= 2 * stddev)
    assert int(outside.sum()) > 0  # the redraw path ran for this seed
    assert bool(((ours - mean).abs() < 2 * stddev).all())
    assert torch.equal(ours[~outside], theirs[~outside])
    # A normal truncated at +-2 has standard deviation 0.8796 * stddev.
    assert abs(float(ours.std()) - 0.8796 * stddev) < 2e-3 and abs(float(ours.mean()) - mean) < 2e-3


def test_statistics_of_the_distributions() -> None:
    x = random.normal((200_000,), mean=3.0, stddev=2.0, seed=1)
    assert abs(float(x.mean()) - 3.0) < 0.02 and abs(float(x.std()) - 2.0) < 0.02
    u = random.uniform((200_000,), minval=-2.0, maxval=4.0, seed=1)
    assert float(u.min()) >= -2.0 and float(u.max()) < 4.0 and abs(float(u.mean()) - 1.0) < 0.02
    r = random.randint((100_000,), 2, 6, seed=1)
    assert r.dtype == torch.int32 and sorted(r.unique().tolist()) == [2, 3, 4, 5]
    g = random.gamma((100_000,), alpha=4.0, seed=1)
    assert abs(float(g.mean()) - 4.0) < 0.05 and abs(float(g.var()) - 4.0) < 0.1
    d = random.dropout(torch.ones(100_000), 0.25, seed=1)
    assert set(d.unique().tolist()) == {0.0, float(np.float32(1 / 0.75))} and abs(float((d == 0).float().mean()) - 0.25) < 0.01


def test_dtypes_follow_the_argument_and_floatx() -> None:
    assert random.normal((2,), dtype="float64", seed=0).dtype == torch.float64
    assert random.uniform((2,), seed=0).dtype == torch.float32
    assert random.categorical(LOGITS, 2, dtype="int64", seed=0).dtype == torch.int64


def test_an_int_seed_is_stateless_and_the_global_generator_is_not() -> None:
    assert torch.equal(random.uniform((5,), seed=9), random.uniform((5,), seed=9))
    assert not torch.equal(random.uniform((5,)), random.uniform((5,)))


def test_seed_generator_state_and_config() -> None:
    keras = keras_or_skip()
    gen = random.SeedGenerator(5, name="gen")
    assert gen.get_config() == keras.random.SeedGenerator(5, name="gen").get_config() == {"seed": 5, "name": "gen"}
    assert gen.next().tolist() == [5, 0] and gen.state.tolist() == [5, 1]
    clone = random.SeedGenerator.from_config(gen.get_config())
    assert torch.equal(random.normal((3,), seed=clone), random.normal((3,), seed=random.SeedGenerator(5)))
    assert random.SeedGenerator().get_config()["seed"] is None


def test_the_shuffle_of_a_permutation_is_a_permutation() -> None:
    x = torch.arange(60).reshape(3, 4, 5)
    y = random.shuffle(x, axis=1, seed=2)
    assert torch.equal(y.sort(dim=1).values, x)
    assert torch.equal(random.shuffle(x, axis=-2, seed=2), y)


@pytest.mark.parametrize(("call", "error", "text"), [
    (lambda: random.normal((2,), seed="a"), TypeError, "seed='a'"),
    (lambda: random.normal((2,), seed=1.5), TypeError, "seed=1.5"),
    (lambda: random.SeedGenerator(seed="x"), TypeError, "seed='x'"),
    (lambda: random.SeedGenerator(seed=1, colour=2), ValueError, "colour"),
    (lambda: random.normal((2, -1)), ValueError, "shape=(2, -1)"),
    (lambda: random.normal("ab"), TypeError, "shape='ab'"),
    (lambda: random.normal((2,), stddev=-1.0), ValueError, "stddev=-1.0"),
    (lambda: random.normal((2,), dtype="int32"), ValueError, "dtype='int32'"),
    (lambda: random.uniform((2,), dtype="int32"), ValueError, "dtype='int32'"),
    (lambda: random.uniform((2,), minval=1.0, maxval=1.0), ValueError, "maxval=1.0"),
    (lambda: random.randint((2,), 0, 5, dtype="float32"), ValueError, "dtype='float32'"),
    (lambda: random.randint((2,), 3, 3), ValueError, "maxval=3"),
    (lambda: random.randint((2,), 0.5, 3), ValueError, "minval=0.5"),
    (lambda: random.dropout(torch.ones(3), 1.5), ValueError, "rate=1.5"),
    (lambda: random.dropout(torch.ones(3, 2), 0.5, noise_shape=(3,)), ValueError, "noise_shape=(3,)"),
    (lambda: random.shuffle(torch.ones(3), axis=1), ValueError, "axis=1"),
    (lambda: random.categorical(torch.ones(3), 2), ValueError, "logits="),
    (lambda: random.categorical(LOGITS, 0), ValueError, "num_samples=0"),
    (lambda: random.gamma((2,), alpha=0.0), ValueError, "alpha=0.0"),
    (lambda: random.binomial((2,), 5, 1.5), ValueError, "probabilities=1.5"),
    (lambda: random.beta((2,), 1.0, np.ones(3)), ValueError, "beta="),
])
def test_bad_arguments_are_named(call, error, text) -> None:
    with pytest.raises(error, match=__import__("re").escape(text)):
        call()
