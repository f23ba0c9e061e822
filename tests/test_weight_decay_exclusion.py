"""``optimizer.exclude_from_weight_decay``: Keras's rule, checked against Keras 3 itself.

A fine-tuning script written for Keras (a model with LayerNormalization and
BatchNormalization, an optimizer with ``weight_decay`` that leaves out the biases and the
normalization weights) runs unchanged on weightwise, and ``fit`` ends at Keras's weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

import weightwise
from weightwise import optimizers
from weightwise.variables import Variable

# Weights after several fit steps, float32 on both sides: the updates are the same formulas
# in a different order of float32 operations, so they agree to a few float32 roundings.
ATOL = RTOL = 1e-6


@pytest.fixture(scope="module")
def keras() -> Any:
    return keras_or_skip()


def build_model(lib: Any) -> Any:
    lay = lib.layers
    return lib.Sequential([
        lay.Input(shape=(6,)),
        lay.Dense(8, activation="tanh"),
        lay.LayerNormalization(),
        lay.Dense(8, activation="relu"),
        lay.BatchNormalization(),
        lay.Dense(2),
    ])


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = np.stack([x[:, :3].sum(1), np.tanh(x[:, 3:]).prod(1)], axis=1).astype("float32")
    return x, y


def fine_tune(lib: Any, model: Any, optimizer_name: str, exclude: str, epochs: int = 3, **kwargs: Any) -> Any:
    """A Keras fine-tuning script's lines, the same for Keras and weightwise (``lib``)."""
    optimizer = getattr(lib.optimizers, optimizer_name)(**kwargs)
    if exclude == "var_names":
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    elif exclude == "var_list":
        # The first Dense layer's bias and the last layer's kernel, by identity.
        optimizer.exclude_from_weight_decay(var_list=[model.layers[0].bias, model.layers[-1].kernel])
    model.compile(optimizer=optimizer, loss="mse")
    x, y = data()
    model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    return model


def twin_models(keras: Any) -> tuple[Any, Any]:
    keras.utils.set_random_seed(1)
    theirs = build_model(keras)
    ours = build_model(weightwise)
    ours.set_weights([to_numpy(w) for w in theirs.get_weights()])
    return ours, theirs


CASES = [
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.2}),
    ("Adam", {"learning_rate": 0.01, "weight_decay": 0.2}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 0.3}),
    ("RMSprop", {"learning_rate": 0.005, "weight_decay": 0.3}),
    ("Adagrad", {"learning_rate": 0.05, "weight_decay": 0.3}),
]


@pytest.mark.parametrize("exclude", ["var_names", "var_list"])
@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_fit_with_exclusions_ends_at_keras_weights(keras: Any, name: str, kwargs: dict[str, Any], exclude: str) -> None:
    ours, theirs = twin_models(keras)
    initial = [to_numpy(w) for w in theirs.weights]
    fine_tune(keras, theirs, name, exclude, **kwargs)
    fine_tune(weightwise, ours, name, exclude, **kwargs)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    for mine, reference, start in zip(ours.weights, theirs.weights, initial):
        reference = to_numpy(reference)
        if mine.requires_grad:
            assert np.abs(reference - start).max() > 1e-3, f"{mine.path} did not train: the check would prove nothing"
        np.testing.assert_allclose(to_numpy(mine), reference, atol=ATOL, rtol=RTOL, err_msg=mine.path)


@pytest.mark.parametrize("exclude", ["var_names", "var_list"])
def test_the_exclusion_changes_the_result(keras: Any, exclude: str) -> None:
    """Without the exclusion the excluded weights end elsewhere: the comparison above can fail."""
    name, kwargs = CASES[0]
    ours, _ = twin_models(keras)
    plain, _ = twin_models(keras)
    fine_tune(weightwise, ours, name, exclude, **kwargs)
    fine_tune(weightwise, plain, name, "none", **kwargs)
    # Keras's weight order: kernel, bias of each Dense; gamma, beta (and BatchNormalization's moving statistics).
    excluded = {"var_names": [1, 2, 3, 5, 6, 7, 11], "var_list": [1, 10]}[exclude]
    for index in excluded:
        a, b = to_numpy(ours.weights[index]), to_numpy(plain.weights[index])
        assert np.abs(a - b).max() > 1e-4, ours.weights[index].path


def _three_variables(lib: Any, name: str, make: Any) -> list[np.ndarray]:
    """Keras's ``test_weight_decay`` of its optimizer tests: one decayed, one excluded by name, one by list.

    The gradients are zero, as there, so each variable moves by its decay alone.
    """
    var1, var2, var3 = make("var1"), make("exclude"), make("var3")
    kind = getattr(lib.optimizers, name)
    kind(learning_rate=1.0, weight_decay=0.004).apply_gradients(zip([torch.zeros(())], [var1]))
    opt2 = kind(learning_rate=1.0, weight_decay=0.004)
    opt2.exclude_from_weight_decay(var_names=["exclude"])
    opt2.apply_gradients(zip([torch.zeros(()), torch.zeros(())], [var1, var2]))
    opt3 = kind(learning_rate=1.0, weight_decay=0.004)
    opt3.exclude_from_weight_decay(var_list=[var3])
    opt3.apply_gradients(zip([torch.zeros(()), torch.zeros(())], [var1, var3]))
    return [to_numpy(v) for v in (var1, var2, var3)]


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD", "RMSprop", "Adagrad"])
def test_keras_unit_test_matches_keras(keras: Any, name: str) -> None:
    ours = _three_variables(weightwise, name, lambda n: Variable(torch.tensor(2.0), name=n))
    theirs = _three_variables(keras, name, lambda n: keras.Variable(2.0, name=n))
    # Keras's asserted values (adam_test.py and the others): 0.996 ** 3 * 2, and 2 twice.
    np.testing.assert_allclose(ours, [1.9760959, 2.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(ours, theirs, atol=1e-7, rtol=0)


def test_adamw_state_matches_keras_layout_and_values(keras: Any) -> None:
    """AdamW's excluded variables sit in torch groups with weight_decay=0; the saved state is Keras's."""
    ours, theirs = twin_models(keras)
    kwargs = {"learning_rate": 0.01, "weight_decay": 0.2}
    fine_tune(keras, theirs, "AdamW", "var_names", epochs=1, **kwargs)
    fine_tune(weightwise, ours, "AdamW", "var_names", epochs=1, **kwargs)
    opt = ours.optimizer
    groups = opt.torch_optimizer.param_groups
    # One group per run, in the order built: torch's parameter order is the variables' order.
    assert [id(p) for g in groups for p in g["params"]] == [id(p) for p in opt.variables]
    for group in groups:
        names = {p.name for p in group["params"]}
        assert group["weight_decay"] == (0.0 if names <= {"bias", "gamma", "beta"} else 0.2), names
    mine: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    opt.save_own_variables(mine)
    theirs.optimizer.save_own_variables(reference)
    assert sorted(mine, key=int) == sorted(reference, key=int)
    for key, value in reference.items():
        np.testing.assert_allclose(np.asarray(mine[key]), to_numpy(value), atol=1e-6, rtol=1e-5,
                                   err_msg=f"store[{key!r}]")


def test_adamw_without_exclusions_keeps_one_group() -> None:
    opt = optimizers.AdamW()
    opt.build([torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))])
    assert len(opt.torch_optimizer.param_groups) == 1
    opt = optimizers.AdamW()
    opt.exclude_from_weight_decay(var_names=["nothing-has-this-name"])
    opt.build([torch.nn.Parameter(torch.ones(2, 2))])
    assert [g["weight_decay"] for g in opt.torch_optimizer.param_groups] == [0.004]


def test_after_build_is_keras_error_and_nothing_changes() -> None:
    kernel = Variable(torch.ones(2, 2), name="kernel")
    opt = optimizers.SGD(weight_decay=0.1)
    opt.exclude_from_weight_decay(var_list=[kernel])
    opt.build([kernel])
    with pytest.raises(ValueError, match=r"^`exclude_from_weight_decay\(\)` can only be configured before the optimizer "
                                         r"is built\.$"):
        opt.exclude_from_weight_decay(var_names=["bias"])
    assert not opt._use_weight_decay(kernel)


def test_a_wrapped_torch_optimizer_says_how_to_exclude() -> None:
    opt = optimizers.get(torch.optim.AdamW([torch.nn.Parameter(torch.ones(1))]))
    with pytest.raises(ValueError, match="parameter group with weight_decay=0.*weightwise.decay"):
        opt.exclude_from_weight_decay(var_names=["bias"])


@pytest.mark.parametrize(("kwargs", "error", "pattern"), [
    ({"var_names": "bias"}, TypeError, r"`var_names`: expected a list of strings.*Received: var_names='bias'"),
    ({"var_names": ["bias", 3]}, TypeError, r"`var_names`: every item must be a string.*int"),
    ({"var_names": ["bias("]}, ValueError, r"`var_names`: 'bias\(' is not a regular expression"),
    ({"var_list": torch.ones(2)}, TypeError, r"`var_list`: expected a list of variables"),
    ({"var_list": [torch.ones(2), "kernel"]}, TypeError, r"`var_list`: every item must be a variable.*str"),
    ({"var_list": 3}, TypeError, r"`var_list`: expected a list of variables.*Received: var_list=3"),
])
def test_bad_arguments_are_named_and_change_nothing(kwargs: dict[str, Any], error: type, pattern: str) -> None:
    bias = Variable(torch.ones(2), name="bias")
    opt = optimizers.Adam(weight_decay=0.1)
    opt.exclude_from_weight_decay(var_list=[bias])
    with pytest.raises(error, match=pattern):
        opt.exclude_from_weight_decay(**kwargs)
    assert not opt._use_weight_decay(bias)
    assert opt._use_weight_decay(Variable(torch.ones(2), name="kernel"))


def test_keras_semantics_of_names_and_lists(keras: Any) -> None:
    """Patterns are searched in the name (not the path), any of them; each call replaces the last one."""
    names = ["kernel", "bias", "gamma", "recurrent_kernel", "embeddings", "dense_bias_1", "moving_mean"]
    patterns = [["bias"], ["^kernel$"], ["kern", "gam"], ["ma$"], [".*"], [], ["dense"]]
    for pattern in patterns:
        opt_k = keras.optimizers.Adam(weight_decay=0.1)
        opt_k.exclude_from_weight_decay(var_names=pattern)
        opt_w = optimizers.Adam(weight_decay=0.1)
        opt_w.exclude_from_weight_decay(var_names=pattern)
        # Kept alive: Keras caches its answer by id(variable), and a freed variable's id comes back.
        pairs = [(keras.Variable(np.ones(2), name=name), Variable(torch.ones(2), name=name)) for name in names]
        for theirs, ours in pairs:
            assert opt_w._use_weight_decay(ours) == opt_k._use_weight_decay(theirs), (pattern, ours.name)
    # The path is not searched: a Dense layer's bias inside "sequential/dense" has the name "bias".
    model = build_model(weightwise)
    opt = optimizers.Adam(weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["dense"])
    assert all(opt._use_weight_decay(w) for w in model.weights)
    # A second call replaces the first: the var_list set before is gone.
    first = Variable(torch.ones(2), name="w")
    opt.exclude_from_weight_decay(var_list=[first])
    assert not opt._use_weight_decay(first)
    opt.exclude_from_weight_decay()
    assert opt._use_weight_decay(first)


def test_a_plain_parameter_has_no_name_to_match() -> None:
    plain = torch.nn.Parameter(torch.ones(2))
    opt = optimizers.SGD(learning_rate=1.0, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias", "weight"])
    assert opt._use_weight_decay(plain)
    opt = optimizers.SGD(learning_rate=1.0, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_list=[plain])
    opt.build([plain])
    plain.grad = torch.zeros(2)
    opt.step()
    np.testing.assert_array_equal(to_numpy(plain), [1.0, 1.0])


def test_config_does_not_carry_the_exclusions(keras: Any) -> None:
    opt = optimizers.AdamW(weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    config = opt.get_config()
    reference = keras.optimizers.AdamW(weight_decay=0.1)
    reference.exclude_from_weight_decay(var_names=["bias"])
    assert sorted(config) == sorted(reference.get_config())
    rebuilt = optimizers.AdamW.from_config(config)
    assert rebuilt._use_weight_decay(Variable(torch.ones(1), name="bias"))
