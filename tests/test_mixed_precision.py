"""Mixed precision the Keras way: dtype policies, float32 weights under low-precision compute, and loss scaling.

Every number is checked against Keras 3.15.1 on its torch backend (run in this process) or NumPy.
Tolerances: the low-precision outputs are the same torch ops on the same casts as Keras's, so they
are compared exactly; weights after a few training steps to rtol 1e-5 (atol 1e-6). Weight
penalties are computed in float32 from the float32 weights and compared to NumPy's float32 values
to rtol 1e-6. Activity penalties are computed in float32 from the bfloat16 outputs (Keras computes
them in bfloat16, whose 8 significant bits give a relative step of 2**-8): they are compared to
NumPy to rtol 1e-6 and to Keras to rtol 1e-2, and the logged losses, which hold them, to rtol 1e-4.
Loss scaling runs on float32 arithmetic and is compared exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import weightwise as ww
from tests.helpers import keras_or_skip, to_numpy
from weightwise import config, dtype_policies, mixed_precision
from weightwise.optimizers import SGD, LossScaleOptimizer

RNG = np.random.default_rng(15)
X = RNG.normal(size=(32, 6)).astype(np.float32)
Y = RNG.normal(size=(32, 3)).astype(np.float32)
L2, L1, BIAS_L2 = 0.01, 0.003, 0.02
MAX_VALUE = 0.6


@pytest.fixture(autouse=True)
def float32_policy_after():
    """No test leaves a global policy behind, ours or Keras's."""
    yield
    dtype_policies.reset_dtype_policy()
    try:
        import keras
    except ImportError:
        return
    keras.config.set_dtype_policy("float32")


def build(lib, dtype=None):
    """The same small regularized and constrained model in Keras and in weightwise."""
    L, R, C = lib.layers, lib.regularizers, lib.constraints
    kwargs = {} if dtype is None else {"dtype": dtype}
    return lib.Sequential([
        lib.Input(shape=(6,)),
        L.Dense(5, activation="tanh", name="hidden", kernel_regularizer=R.L2(L2), bias_regularizer=R.L2(BIAS_L2),
                activity_regularizer=R.L1(L1), kernel_constraint=C.MaxNorm(MAX_VALUE), **kwargs),
        L.Dense(3, name="out", kernel_regularizer=R.L1L2(l1=L1, l2=L2), bias_constraint=C.NonNeg(), **kwargs),
    ], name="net")


def initial_weights():
    rng = np.random.default_rng(0)
    return [rng.normal(scale=0.5, size=(6, 5)).astype(np.float32), rng.uniform(-0.1, 0.1, 5).astype(np.float32),
            rng.normal(scale=0.5, size=(5, 3)).astype(np.float32), rng.uniform(0.0, 0.1, 3).astype(np.float32)]


def weight_penalty(weights):
    """The weight penalties of `build`, in float32 NumPy."""
    k1, b1, k2, _ = (np.asarray(w, dtype=np.float32) for w in weights)
    terms = [np.float32(L2) * np.sum(k1 * k1), np.float32(BIAS_L2) * np.sum(b1 * b1),
             np.float32(L1) * np.sum(np.abs(k2)), np.float32(L2) * np.sum(k2 * k2)]
    return float(np.sum(np.asarray(terms, dtype=np.float32)))


def assert_constraints_hold(weights):
    norms = np.sqrt(np.sum(np.square(weights[0]), axis=0))
    assert np.all(norms <= MAX_VALUE * (1 + 1e-6)), norms
    assert np.all(weights[3] >= 0), weights[3]


# -- policies ---------------------------------------------------------------------------------
POLICY_NAMES = ["float32", "float16", "bfloat16", "float64", "mixed_float16", "mixed_bfloat16", "int32"]


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_policies_match_keras(name) -> None:
    keras = keras_or_skip()
    ours, theirs = dtype_policies.DTypePolicy(name), keras.DTypePolicy(name)
    assert (ours.name, ours.compute_dtype, ours.variable_dtype) == \
        (theirs.name, theirs.compute_dtype, theirs.variable_dtype)
    assert repr(ours) == repr(theirs)
    assert dtype_policies.serialize(ours) == keras.dtype_policies.serialize(theirs)
    assert dtype_policies.deserialize(keras.dtype_policies.serialize(theirs)) == ours
    assert keras.dtype_policies.deserialize(dtype_policies.serialize(ours)) == theirs
    float_policy = dtype_policies.FloatDTypePolicy(name)
    assert float_policy == ours and repr(float_policy) == repr(theirs)
    assert dtype_policies.serialize(float_policy) == keras.dtype_policies.serialize(
        keras.dtype_policies.FloatDTypePolicy(name))


@pytest.mark.parametrize("bad", ["mixed_float32", "float", "int8_from_float32", 3, None])
def test_bad_policy_names_raise_what_keras_raises(bad) -> None:
    keras = keras_or_skip()
    if bad is None:
        with pytest.raises(ValueError, match="policy=None"):
            config.set_dtype_policy(bad)
        with pytest.raises(ValueError):
            keras.config.set_dtype_policy(bad)
        return
    with pytest.raises((TypeError, ValueError)) as theirs:
        keras.DTypePolicy(bad)
    with pytest.raises(theirs.type, match=repr(bad) if not isinstance(bad, int) else "name=3"):
        dtype_policies.DTypePolicy(bad)
    with pytest.raises(ValueError, match="dtype"):
        ww.layers.Dense(2, dtype=bad)


def test_the_global_policy_under_all_its_names() -> None:
    assert config.dtype_policy() == dtype_policies.DTypePolicy("float32")
    config.set_dtype_policy("mixed_bfloat16")
    assert mixed_precision.global_policy() is config.dtype_policy() is dtype_policies.get(None)
    mixed_precision.set_global_policy(mixed_precision.Policy("mixed_float16"))
    assert config.dtype_policy().name == "mixed_float16"
    layer = ww.layers.Dense(2)
    assert (layer.dtype_policy.name, layer.dtype, layer.compute_dtype, layer.variable_dtype, layer.input_dtype) == \
        ("mixed_float16", "float32", "float16", "float32", "float16")
    # A layer's own dtype wins; the policy can be set on a layer after construction, as in Keras.
    assert ww.layers.Dense(2, dtype="float32").dtype_policy.name == "float32"
    layer.dtype_policy = "mixed_bfloat16"
    assert layer.compute_dtype == "bfloat16"
    with pytest.raises(ValueError, match="policy=3"):
        config.set_dtype_policy(3)
    assert config.dtype_policy().name == "mixed_float16"  # a refused policy changes nothing


def test_layer_dtypes_and_configs_match_keras() -> None:
    keras = keras_or_skip()
    for lib, setter in ((keras, keras.config.set_dtype_policy), (ww, config.set_dtype_policy)):
        setter("mixed_bfloat16")
    pairs = [(keras.layers.Dense(3), ww.layers.Dense(3)),
             (keras.layers.Dense(3, dtype="mixed_float16"), ww.layers.Dense(3, dtype="mixed_float16")),
             (keras.layers.Dense(3, dtype="float64"), ww.layers.Dense(3, dtype="float64"))]
    for theirs, ours in pairs:
        theirs.build((None, 4))
        ours.build((None, 4))
        assert (ours.dtype, ours.compute_dtype, ours.variable_dtype) == \
            (theirs.dtype, theirs.compute_dtype, theirs.variable_dtype)
        assert ours.get_config()["dtype"] == theirs.get_config()["dtype"]
        assert str(ours.kernel.dtype).replace("torch.", "") == theirs.kernel.dtype
        x = np.ones((2, 4), np.float32)
        assert ours(x).dtype == theirs(x).dtype
        rebuilt = ww.layers.Dense.from_config(theirs.get_config())
        assert rebuilt.dtype_policy == ours.dtype_policy


# -- mixed_bfloat16 against Keras ------------------------------------------------------------------
def keras_model(keras, per_layer):
    if per_layer:
        model = build(keras, dtype="mixed_bfloat16")
    else:
        keras.config.set_dtype_policy("mixed_bfloat16")
        model = build(keras)
    model.set_weights(initial_weights())
    return model


def our_model(per_layer):
    if per_layer:
        model = build(ww, dtype="mixed_bfloat16")
    else:
        config.set_dtype_policy("mixed_bfloat16")
        model = build(ww)
    model.set_weights(initial_weights())
    return model


@pytest.mark.parametrize("per_layer", [False, True], ids=["global", "per_layer"])
def test_outputs_and_penalties_match_keras(per_layer) -> None:
    keras = keras_or_skip()
    theirs, ours = keras_model(keras, per_layer), our_model(per_layer)
    out_theirs, out_ours = theirs(X[:8]), ours(X[:8])
    assert out_ours.dtype == out_theirs.dtype == torch.bfloat16
    np.testing.assert_array_equal(to_numpy(out_ours), to_numpy(out_theirs))
    for layer in ours.layers:
        assert all(w.dtype == torch.float32 for w in layer.weights)
    # Weight penalties: float32, from the float32 weights, equal to NumPy's.
    weights = [w.detach().numpy() for w in ours.weights]
    penalties = [p.detach() for p in ww.binding.penalties(ours)]
    assert all(p.dtype == torch.float32 for p in penalties)
    np.testing.assert_allclose(float(sum(penalties)), weight_penalty(weights), rtol=1e-6)
    keras_weight_losses = [loss for loss in theirs.losses if loss.dtype == torch.float32]
    np.testing.assert_allclose(float(sum(penalties)), float(sum(to_numpy(v) for v in keras_weight_losses)), rtol=1e-6)
    # The activity penalty of the hidden layer's bfloat16 output: float32 arithmetic here, bfloat16 in Keras.
    hidden = ours.layers[0](torch.tensor(X[:8]))
    assert hidden.dtype == torch.bfloat16
    expected = np.float32(L1) * np.sum(np.abs(to_numpy(hidden)), dtype=np.float32) / np.float32(8)
    activity_ours = [float(v.detach()) for v in ww.binding.call_losses(ours.layers[0])]
    np.testing.assert_allclose(activity_ours, [expected], rtol=1e-6)
    activity_theirs = [float(to_numpy(v)) for v in theirs.losses if v.dtype == torch.bfloat16]
    np.testing.assert_allclose(activity_ours, activity_theirs, rtol=1e-2)


def fit_both(keras, per_layer, steps=4):
    theirs, ours = keras_model(keras, per_layer), our_model(per_layer)
    theirs.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.5), loss="mse")
    ours.compile(optimizer=SGD(0.1, momentum=0.5), loss="mse")
    seen = []
    record = ww.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(
        ([w.detach().clone() for w in ours.weights], logs["loss"])))
    h_theirs = theirs.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False, steps_per_epoch=steps)
    h_ours = ours.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False, steps_per_epoch=steps,
                      callbacks=[record])
    return theirs, ours, h_theirs, h_ours, seen


@pytest.mark.parametrize("per_layer", [False, True], ids=["global", "per_layer"])
def test_fit_matches_keras_and_keeps_float32_weights_within_their_constraints(per_layer) -> None:
    keras = keras_or_skip()
    theirs, ours, h_theirs, h_ours, seen = fit_both(keras, per_layer)
    assert len(seen) == 4
    for weights, _ in seen:
        assert all(w.dtype == torch.float32 for w in weights)
        assert_constraints_hold([w.numpy() for w in weights])
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, to_numpy(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_ours.history["loss"], h_theirs.history["loss"], rtol=1e-4)
    # The optimizer holds the float32 Parameters themselves, not copies.
    assert {id(p) for p in ours.optimizer._params} == {id(w) for w in ours.trainable_weights}


def test_a_hand_written_loop_under_mixed_bfloat16() -> None:
    config.set_dtype_policy("mixed_bfloat16")
    model = build(ww)
    model.set_weights(initial_weights())
    optimizer = SGD(0.1)
    loss_fn = ww.losses.MeanSquaredError()
    for start in range(0, 32, 8):
        x, y = torch.tensor(X[start:start + 8]), torch.tensor(Y[start:start + 8])
        before = [w.detach().numpy().copy() for w in model.weights]
        out = model(x)
        assert out.dtype == torch.bfloat16
        penalty = ww.regularization_loss(model)
        # The weight part of the penalty is NumPy's float32 value on the weights of this step.
        weight_part = float(sum(p.detach() for p in ww.binding.penalties(model)))
        np.testing.assert_allclose(weight_part, weight_penalty(before), rtol=1e-6)
        loss = loss_fn(y, out) + penalty
        assert loss.dtype == torch.float32
        grads = torch.autograd.grad(loss, model.trainable_weights)
        assert all(g.dtype == torch.float32 for g in grads)
        optimizer.apply(grads, model.trainable_weights)  # Keras's custom-loop call: update, then constraints
        after = [w.detach().numpy() for w in model.weights]
        assert all(w.dtype == torch.float32 for w in model.weights)
        assert_constraints_hold(after)
        assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_weights_a_layer_keeps_uncast_and_the_cast_leaves_nothing_behind() -> None:
    class Scale(ww.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")
            self.offset = self.add_weight(name="offset", shape=(input_shape[-1],), initializer="zeros",
                                          autocast=False)

        def call(self, inputs):
            self.seen = (self.scale.dtype, self.offset.dtype)
            return inputs * self.scale + self.offset.to(inputs.dtype)

    layer = Scale(dtype="mixed_bfloat16")
    out = layer(np.ones((2, 3), np.float32))
    assert layer.seen == (torch.bfloat16, torch.float32) and out.dtype == torch.bfloat16
    assert layer.scale.dtype == torch.float32 and isinstance(layer.scale, torch.nn.Parameter)
    assert "scale" not in layer.__dict__
    out.float().sum().backward()
    assert layer.scale.grad.dtype == torch.float32
    # autocast=False leaves the inputs as they are; outside any scope the mixed layer still
    # opens one for its weights, and inside another's it reads them uncast (Keras's rules).
    plain = Scale(dtype="mixed_bfloat16", autocast=False)
    assert plain(np.ones((2, 3), np.float64)).dtype == torch.float64
    assert plain.seen == (torch.bfloat16, torch.float32)
    outer = ww.Sequential([plain], name="outer")
    outer.dtype_policy = "mixed_bfloat16"
    outer(np.ones((2, 3), np.float32))
    assert plain.seen == (torch.float32, torch.float32)


# -- mixed_float16 and LossScaleOptimizer ------------------------------------------------------------
GRADIENTS = [1.0, 1.0, np.inf, 1.0, np.nan, 1.0, 1.0, 1.0, 1.0, -np.inf, 1.0, 1.0]


def test_the_dynamic_scale_follows_keras_step_by_step() -> None:
    keras = keras_or_skip()
    theirs = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1, momentum=0.9), initial_scale=8.0,
                                                 dynamic_growth_steps=2)
    ours = LossScaleOptimizer(SGD(0.1, momentum=0.9), initial_scale=8.0, dynamic_growth_steps=2)
    v_theirs = keras.Variable(np.ones(2, np.float32))
    v_ours = torch.nn.Parameter(torch.ones(2))
    for g in GRADIENTS:
        grad = np.array([g, 0.5], np.float32)
        theirs.apply([torch.tensor(grad)], [v_theirs])
        ours.apply([torch.tensor(grad)], [v_ours])
        assert ours.loss_scale_factor == float(to_numpy(theirs.dynamic_scale))
        assert ours.step_counter == int(to_numpy(theirs.step_counter))
        assert ours.iterations == int(to_numpy(theirs.iterations))
        np.testing.assert_allclose(v_ours.detach().numpy(), to_numpy(v_theirs), rtol=1e-6)
        loss = torch.tensor(3.0)
        assert float(ours.scale_loss(loss)) == float(to_numpy(theirs.scale_loss(loss)))
    # The saved state is Keras's, entry by entry.
    state = {}
    ours.save_own_variables(state)
    reference = [to_numpy(v) for v in theirs.variables]
    assert len(state) == len(reference)
    for index, value in enumerate(reference):
        np.testing.assert_allclose(state[str(index)], value, rtol=1e-6)


def test_step_skips_non_finite_gradients_in_a_plain_torch_loop() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = LossScaleOptimizer(SGD(0.5, momentum=0.9), initial_scale=4.0, dynamic_growth_steps=3)
    opt.build([w])
    w.grad = torch.tensor([8.0, 4.0])
    assert opt.step() is True  # unscaled: [2, 1]
    np.testing.assert_allclose(w.detach().numpy(), [0.0, 1.5])
    state = {k: v.clone() for k, v in opt.torch_optimizer.state[w].items()}
    w.grad = torch.tensor([float("nan"), 4.0])
    assert opt.step() is False
    np.testing.assert_allclose(w.detach().numpy(), [0.0, 1.5])
    assert opt.iterations == 1 and opt.loss_scale_factor == 2.0 and opt.step_counter == 0
    assert all(torch.equal(v, opt.torch_optimizer.state[w][k]) for k, v in state.items())


def test_arguments_as_keras_checks_them() -> None:
    keras = keras_or_skip()
    for kwargs in ({"dynamic": False}, {"clipnorm": 1.0}, {"foo": 1}):
        with pytest.raises(ValueError) as theirs:
            keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(), **kwargs)
        with pytest.raises(ValueError) as ours:
            LossScaleOptimizer(SGD(), **kwargs)
        assert str(ours.value) == str(theirs.value)
    LossScaleOptimizer(SGD(), clipnorm=None, use_ema=False)  # defaults, as old configs hold them
    with pytest.raises(TypeError, match="inner_optimizer"):
        LossScaleOptimizer("sgd")
    with pytest.raises(ValueError, match="initial_scale"):
        LossScaleOptimizer(SGD(), initial_scale=0.0)
    with pytest.raises(ValueError, match="dynamic_growth_steps"):
        LossScaleOptimizer(SGD(), dynamic_growth_steps=0)
    with pytest.raises(ValueError, match="loss_scale_factor"):
        LossScaleOptimizer(SGD()).loss_scale_factor = 2.0


def test_config_and_serialization_exchange_with_keras() -> None:
    keras = keras_or_skip()
    theirs = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01), initial_scale=64.0,
                                                 dynamic_growth_steps=7, name="lso")
    ours = ww.optimizers.deserialize(json.loads(json.dumps(keras.optimizers.serialize(theirs))))
    assert isinstance(ours, LossScaleOptimizer) and isinstance(ours.inner_optimizer, ww.optimizers.Adam)
    assert (ours.name, ours.initial_scale, ours.dynamic_growth_steps) == ("lso", 64.0, 7)
    assert ours.inner_optimizer.loss_scale_factor is None
    back = keras.optimizers.deserialize(json.loads(json.dumps(ww.optimizers.serialize(ours))))
    assert isinstance(back, keras.optimizers.LossScaleOptimizer)
    assert back.get_config()["initial_scale"] == 64.0 and back.get_config()["dynamic_growth_steps"] == 7
    assert back.inner_optimizer.get_config() == theirs.inner_optimizer.get_config()
    assert ours.get_config().keys() == theirs.get_config().keys()


def float16_model(lib, scale):
    """A mixed_float16 model with a MaxNorm its initial kernel violates."""
    L, C = lib.layers, lib.constraints
    model = lib.Sequential([lib.Input(shape=(6,)),
                            L.Dense(3, dtype="mixed_float16", kernel_regularizer=lib.regularizers.L2(L2),
                                    kernel_constraint=C.MaxNorm(0.1))])
    model.set_weights([np.full((6, 3), 0.5, np.float32), np.zeros(3, np.float32)])
    inner = lib.optimizers.SGD(0.01, momentum=0.9)
    model.compile(optimizer=lib.optimizers.LossScaleOptimizer(inner, initial_scale=scale, dynamic_growth_steps=2),
                  loss="mse")
    return model


def test_fit_skips_overflowing_steps_with_the_constraints_as_keras() -> None:
    keras = keras_or_skip()
    # 2**100 times the loss overflows float16 in the backward pass: every step is skipped.
    theirs, ours = float16_model(keras, 2.0**100), float16_model(ww, 2.0**100)
    theirs.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False, steps_per_epoch=3)
    ours.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False, steps_per_epoch=3)
    # Untouched: the weights (the violated MaxNorm was not applied), the step count, the momentum.
    np.testing.assert_array_equal(ours.get_weights()[0], np.full((6, 3), 0.5, np.float32))
    np.testing.assert_array_equal(to_numpy(theirs.get_weights()[0]), np.full((6, 3), 0.5, np.float32))
    assert ours.optimizer.iterations == int(to_numpy(theirs.optimizer.iterations)) == 0
    assert not ours.optimizer.torch_optimizer.state
    assert ours.optimizer.loss_scale_factor == float(to_numpy(theirs.optimizer.dynamic_scale)) == 2.0**97
    # A scale float16 holds: the steps run, and the constraint is applied after each.
    theirs, ours = float16_model(keras, 2.0**4), float16_model(ww, 2.0**4)
    theirs.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    ours.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert ours.optimizer.iterations == int(to_numpy(theirs.optimizer.iterations)) == 4
    assert ours.optimizer.loss_scale_factor == float(to_numpy(theirs.optimizer.dynamic_scale)) == 2.0**6
    kernel = ours.get_weights()[0]
    assert np.all(np.sqrt(np.sum(kernel**2, axis=0)) <= 0.1 * (1 + 1e-6))
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, to_numpy(b), rtol=1e-5, atol=1e-7)


# -- .keras files -----------------------------------------------------------------------------------------
def policy_model(lib):
    lib.config.set_dtype_policy("mixed_bfloat16")
    L = lib.layers
    model = lib.Sequential([lib.Input(shape=(6,)),
                            L.Dense(5, activation="relu", name="a", kernel_constraint=lib.constraints.NonNeg()),
                            L.Dense(4, name="b", dtype="float32"),
                            L.Dense(3, name="c", dtype="mixed_float16", kernel_regularizer="l2")], name="mixed")
    lib.config.set_dtype_policy("float32")
    rng = np.random.default_rng(1)
    model.set_weights([0.3 * rng.normal(size=tuple(w.shape)).astype(np.float32) for w in model.weights])
    return model


POLICIES = {"a": "mixed_bfloat16", "b": "float32", "c": "mixed_float16"}


def assert_policies(model):
    assert {layer.name: layer.dtype_policy.name for layer in model.layers} == POLICIES
    assert all(str(w.dtype).endswith("float32") for w in model.weights)


def test_keras_round_trip_keeps_the_policies(tmp_path) -> None:
    model = policy_model(ww)
    model.save(tmp_path / "m.keras")
    loaded = ww.models.load_model(tmp_path / "m.keras")
    assert_policies(loaded)
    x = torch.tensor(X[:4])
    assert torch.equal(loaded(x), model(x))


def test_files_exchanged_with_keras_keep_the_policies(tmp_path) -> None:
    keras = keras_or_skip()
    theirs = policy_model(keras)
    theirs.save(tmp_path / "keras.keras")
    ours = ww.models.load_model(tmp_path / "keras.keras")
    assert_policies(ours)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, to_numpy(b))
    out_ours, out_theirs = ours(X[:4]), theirs(X[:4])
    assert out_ours.dtype == out_theirs.dtype == torch.float16
    np.testing.assert_array_equal(to_numpy(out_ours), to_numpy(out_theirs))
    ours.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    assert_policies(back)
    # The whole config as Keras reads its own file (neither keeps a Sequential's own policy, only its layers').
    assert back.get_config() == keras.saving.load_model(tmp_path / "keras.keras").get_config()


def test_a_compiled_loss_scale_optimizer_travels_both_ways(tmp_path) -> None:
    keras = keras_or_skip()
    ours = float16_model(ww, 2.0**4)
    ours.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    ours.save(tmp_path / "ours.keras")
    theirs = keras.saving.load_model(tmp_path / "ours.keras")
    assert isinstance(theirs.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(to_numpy(theirs.optimizer.dynamic_scale)) == ours.optimizer.loss_scale_factor
    assert int(to_numpy(theirs.optimizer.iterations)) == ours.optimizer.iterations == 4
    theirs.save(tmp_path / "keras.keras")
    again = ww.models.load_model(tmp_path / "keras.keras")
    assert isinstance(again.optimizer, LossScaleOptimizer)
    assert again.optimizer.loss_scale_factor == ours.optimizer.loss_scale_factor
    assert again.optimizer.iterations == 4 and again.optimizer.step_counter == ours.optimizer.step_counter


def test_state_a_call_updates_in_place_reaches_the_weight() -> None:
    layer = ww.layers.BatchNormalization(dtype="mixed_bfloat16", momentum=0.5)
    x = torch.tensor(RNG.normal(loc=3.0, size=(16, 4)).astype(np.float32))
    out = layer(x, training=True)
    assert out.dtype == torch.bfloat16 and layer.moving_mean.dtype == torch.float32
    # The moving mean moved halfway to the batch mean (of the bfloat16 inputs, computed in float32).
    expected = 0.5 * x.to(torch.bfloat16).float().mean(dim=0)
    np.testing.assert_allclose(layer.moving_mean.detach().numpy(), expected.numpy(), rtol=1e-6)


def test_apply_skips_the_constraints_of_a_skipped_update() -> None:
    layer = ww.layers.Dense(2, kernel_constraint=ww.constraints.MaxNorm(0.1), bias_constraint=ww.constraints.NonNeg())
    layer.build((None, 3))
    layer.set_weights([np.full((3, 2), 1.0, np.float32), np.full(2, -1.0, np.float32)])
    opt = LossScaleOptimizer(SGD(0.1), initial_scale=2.0)
    grads = [torch.full((3, 2), float("inf")), torch.zeros(2)]
    opt.apply(grads, layer.trainable_weights)
    # Both constraints would change these weights; a skipped update applies neither.
    np.testing.assert_array_equal(layer.kernel.detach().numpy(), np.full((3, 2), 1.0, np.float32))
    np.testing.assert_array_equal(layer.bias.detach().numpy(), np.full(2, -1.0, np.float32))
    assert opt.iterations == 0 and opt.loss_scale_factor == 1.0
    opt.apply([torch.zeros(3, 2), torch.zeros(2)], layer.trainable_weights)
    assert opt.iterations == 1
    np.testing.assert_allclose(np.linalg.norm(layer.kernel.detach().numpy(), axis=0), 0.1, rtol=1e-6)
    np.testing.assert_array_equal(layer.bias.detach().numpy(), np.zeros(2, np.float32))


LAYERS = {
    "Conv2D": (lambda L: L.Conv2D(4, 3, kernel_regularizer="l2"), (2, 6, 6, 3)),
    "DepthwiseConv2D": (lambda L: L.DepthwiseConv2D(3), (2, 6, 6, 3)),
    "Embedding": (lambda L: L.Embedding(10, 4), None),
    "EinsumDense": (lambda L: L.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="c"), (2, 5)),
    # A recurrent layer's weights live in its cell, which the layer's scope reaches too.
    "LSTM": (lambda L: L.LSTM(3), (2, 4, 5)),
    "GRU": (lambda L: L.GRU(3), (2, 4, 5)),
    "SimpleRNN": (lambda L: L.SimpleRNN(3), (2, 4, 5)),
}


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_compute_in_the_policy_dtype_as_keras(name, policy) -> None:
    keras = keras_or_skip()
    make, shape = LAYERS[name]
    keras.config.set_dtype_policy(policy)
    config.set_dtype_policy(policy)
    theirs, ours = make(keras.layers), make(ww.layers)
    x = RNG.integers(0, 10, (2, 3)) if shape is None else RNG.normal(size=shape).astype(np.float32)
    out_theirs = theirs(x)
    ours.build(tuple(x.shape))
    ours.set_weights([to_numpy(w) for w in theirs.weights])
    out_ours = ours(torch.tensor(x))
    assert out_ours.dtype == out_theirs.dtype
    assert all(w.dtype == torch.float32 for w in ours.weights)
    # Recurrent steps round their state to the low precision at each step, where the two orders of
    # operations may differ by an ulp; everything else is the same ops on the same casts.
    tolerance = 1e-2 if name in ("LSTM", "GRU", "SimpleRNN") else 0
    np.testing.assert_allclose(to_numpy(out_ours), to_numpy(out_theirs), rtol=tolerance, atol=tolerance)
