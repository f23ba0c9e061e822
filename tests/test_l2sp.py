"""L2-SP, decay toward reference weights: ``l2 * sum((w - w0) ** 2)`` with ``w0`` kept per weight.

Numbers are checked against NumPy; saving round trips check that the reference comes back
exactly (not re-captured from the loaded weights or a fresh initialization).
"""

from __future__ import annotations

import copy
import pickle

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import weightwise
from tests.helpers import keras_or_skip, to_numpy
from weightwise import binding, layers, regularization_loss, regularize
from weightwise.regularizers import L2, L2SP, deserialize, get, serialize
from weightwise.saving.weights_h5 import weight_entries

RNG = np.random.default_rng(14)


def numpy_l2sp(l2: float, w: np.ndarray, w0: np.ndarray) -> float:
    return float(l2 * np.sum((w.astype(np.float64) - w0.astype(np.float64)) ** 2))


def penalty_of(model: nn.Module) -> float:
    return float(regularization_loss(model).detach())


def shift(param: torch.Tensor, amount: np.ndarray | float) -> None:
    with torch.no_grad():
        param.add_(torch.as_tensor(amount, dtype=param.dtype))


# -- the penalty and its gradient -------------------------------------------------------------
def test_penalty_and_gradient_match_numpy_with_an_explicit_reference() -> None:
    w0 = RNG.normal(size=(4, 3)).astype(np.float32)
    w = RNG.normal(size=(4, 3)).astype(np.float32)
    x = torch.tensor(w, requires_grad=True)
    penalty = L2SP(0.3, reference=w0)(x)
    np.testing.assert_allclose(float(penalty.detach()), numpy_l2sp(0.3, w, w0), rtol=1e-6)
    penalty.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * 0.3 * (w - w0), rtol=1e-6, atol=1e-7)


def test_the_reference_is_captured_at_bind_time() -> None:
    linear = nn.Linear(3, 2)
    w0 = linear.weight.detach().numpy().copy()
    binding.bind(linear, "weight", regularizer=L2SP(0.5))
    assert penalty_of(linear) == 0.0
    delta = RNG.normal(size=(2, 3)).astype(np.float32)
    shift(linear.weight, delta)
    # The buffer is a copy: moving the weight did not move the reference.
    np.testing.assert_array_equal(linear.weight_l2sp_reference.numpy(), w0)
    loss = regularization_loss(linear)
    np.testing.assert_allclose(float(loss.detach()), numpy_l2sp(0.5, linear.weight.detach().numpy(), w0), rtol=1e-6)
    assert float(loss.detach()) > 0
    loss.backward()
    np.testing.assert_allclose(linear.weight.grad.numpy(), 2 * 0.5 * (linear.weight.detach().numpy() - w0),
                               rtol=1e-5, atol=1e-7)


def test_an_explicit_reference_is_used_in_the_weights_dtype_and_device() -> None:
    linear = nn.Linear(3, 2).double()
    w0 = RNG.normal(size=(2, 3))
    binding.bind(linear, "weight", regularizer=L2SP(0.1, reference=w0.tolist()))
    buffer = linear.weight_l2sp_reference
    assert buffer.dtype == torch.float64 and not buffer.requires_grad
    np.testing.assert_array_equal(buffer.numpy(), w0)
    np.testing.assert_allclose(penalty_of(linear),
                               numpy_l2sp(0.1, linear.weight.detach().numpy(), w0), rtol=1e-12)


def test_a_reference_of_the_wrong_shape_binds_nothing_and_names_the_parameter() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    rule = L2SP(0.1, reference=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"parameter '0\.weight'.*reference has shape \(2, 2\).*\(2, 3\)"):
        regularize(model, {"*.weight": rule})
    assert list(binding.bound(model)) == []
    assert sorted(model.state_dict()) == ["0.bias", "0.weight", "1.bias", "1.weight"]
    with pytest.raises(ValueError, match="parameter 'weight' of Linear"):
        binding.bind(model[0], "weight", regularizer=rule)
    # A layer built with it adds no weight.
    with pytest.raises(ValueError, match="reference has shape"):
        layers.Dense(3, kernel_regularizer=rule, input_dim=3)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="`l2`.*Received: l2=-1"):
        L2SP(-1)
    with pytest.raises(TypeError, match="`reference`"):
        L2SP(reference=np.array([True, False]))
    with pytest.raises(TypeError, match="`reference`"):
        L2SP(reference="weights")
    with pytest.raises(ValueError, match="no reference weights"):
        L2SP()(torch.ones(2))
    with pytest.raises(ValueError, match=r"shape \(2,\).*shape \(3,\)"):
        L2SP(reference=[1.0, 2.0])(torch.ones(3))


# -- one instance, a reference per weight ------------------------------------------------------
def test_one_instance_gives_each_weight_its_own_reference() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    rule = L2SP(0.2)
    handle = regularize(model, {"*.weight": rule})
    assert handle.matched == ["0.weight", "2.weight"]
    assert rule.reference is None  # the instance given is not bound itself
    stored = [binding.rule_of(model[i], "weight").regularizer for i in (0, 2)]
    assert stored[0] is not stored[1] and all(isinstance(s, L2SP) and s.l2 == 0.2 for s in stored)
    references = []
    for i in (0, 2):
        references.append(model[i].weight.detach().numpy().copy())
        np.testing.assert_array_equal(model[i].weight_l2sp_reference.numpy(), references[-1])
    shift(model[0].weight, 1.0)
    shift(model[2].weight, -0.5)
    expected = sum(numpy_l2sp(0.2, model[i].weight.detach().numpy(), r) for i, r in zip((0, 2), references))
    np.testing.assert_allclose(penalty_of(model), expected, rtol=1e-6)


def test_one_instance_given_to_two_keras_layers() -> None:
    rule = L2SP(0.1)
    model = weightwise.Sequential([layers.Input(shape=(3,)), layers.Dense(3, kernel_regularizer=rule),
                                   layers.Dense(3, kernel_regularizer=rule)])
    first, second = model.layers
    assert first.kernel.regularizer is not second.kernel.regularizer
    assert first.kernel.regularizer.reference is first.kernel_l2sp_reference
    np.testing.assert_array_equal(second.kernel_l2sp_reference.numpy(), second.kernel.detach().numpy())
    assert first.get_config()["kernel_regularizer"]["config"] == {"l2": 0.1}


# -- config ------------------------------------------------------------------------------------
def test_the_config_holds_the_factor_and_never_the_reference() -> None:
    rule = L2SP(0.05, reference=np.ones((2, 2)))
    assert rule.get_config() == {"l2": 0.05}
    config = serialize(rule)
    assert config["class_name"] == "L2SP"
    rebuilt = deserialize(config)
    assert isinstance(rebuilt, L2SP) and rebuilt.l2 == 0.05 and rebuilt.reference is None
    assert get("L2SP").l2 == 0.01 and get("l2sp").l2 == 0.01
    assert repr(L2SP()) == "L2SP(l2=0.01)"


def test_the_factor_may_be_a_schedule_evaluated_at_the_clocks_step() -> None:
    from weightwise import clock, schedules

    schedule = schedules.ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5)
    rule = L2SP(schedule, reference=np.zeros(3))
    w = torch.tensor([1.0, 2.0, 3.0])
    for step in (0, 10, 20):
        with clock.at_step(step):
            np.testing.assert_allclose(float(rule(w)), 14.0 * 0.5 ** (step / 10), rtol=1e-6)
    rebuilt = deserialize(serialize(rule))
    assert type(rebuilt.l2).__name__ == "ExponentialDecay" and rebuilt.l2.get_config() == schedule.get_config()


# -- where the reference lives -----------------------------------------------------------------
def test_state_dict_round_trip_into_a_fresh_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    regularize(model, {"*.weight": L2SP(0.3)})
    shift(model[0].weight, 0.25)
    state = model.state_dict()
    assert "0.weight_l2sp_reference" in state and "1.weight_l2sp_reference" in state

    fresh = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    regularize(fresh, {"*.weight": L2SP(0.3)})  # captures its own (different) initial weights
    fresh.load_state_dict(state)
    for i in (0, 1):
        assert torch.equal(fresh[i].weight_l2sp_reference, model[i].weight_l2sp_reference)
    assert penalty_of(fresh) == pytest.approx(penalty_of(model), rel=1e-6)
    assert penalty_of(fresh) > 0


def test_a_state_dict_without_references_sets_them_to_the_loaded_weights() -> None:
    pretrained = nn.Linear(3, 2)
    model = nn.Linear(3, 2)
    regularize(model, {"weight": L2SP(0.1)})
    model.load_state_dict(pretrained.state_dict())  # strict: the missing reference is filled in
    assert torch.equal(model.weight_l2sp_reference, pretrained.weight)
    assert model.weight_l2sp_reference.data_ptr() != model.weight.data_ptr()
    assert penalty_of(model) == 0.0


def test_deepcopy_to_and_pickle_keep_the_reference_in_step() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    regularize(model, {"0.weight": L2SP(0.5)})
    shift(model[0].weight, 1.0)
    before = penalty_of(model)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        rule = binding.rule_of(twin[0], "weight").regularizer
        assert rule.reference is twin[0].weight_l2sp_reference
        assert twin[0].weight_l2sp_reference is not model[0].weight_l2sp_reference
        assert penalty_of(twin) == pytest.approx(before)
        shift(twin[0].weight, 1.0)  # the copy moves on its own
        assert penalty_of(model) == pytest.approx(before)
        # The copy's hook fills the copy's reference.
        twin.load_state_dict({"0.weight": torch.zeros(2, 3), "0.bias": torch.zeros(2)})
        assert float(twin[0].weight_l2sp_reference.abs().sum()) == 0.0
        assert float(model[0].weight_l2sp_reference.abs().sum()) > 0.0
    model.double()
    assert model[0].weight_l2sp_reference.dtype == torch.float64
    assert binding.rule_of(model[0], "weight").regularizer.reference.dtype == torch.float64
    assert penalty_of(model) == pytest.approx(before, rel=1e-6)


def test_remove_and_unbind_drop_the_buffer() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    handle = regularize(model, {"0.weight": L2SP()})
    assert hasattr(model[0], "weight_l2sp_reference")
    handle.remove()
    assert not hasattr(model[0], "weight_l2sp_reference")
    assert sorted(model.state_dict()) == ["0.bias", "0.weight"]
    assert not model[0]._load_state_dict_pre_hooks
    binding.bind(model[0], "weight", regularizer=L2SP())
    binding.unbind(model[0], "weight")
    assert "weight_l2sp_reference" not in model[0]._buffers
    binding.bind(model[0], "weight", regularizer=L2SP())
    binding.bind(model[0], "weight", regularizer=L2(0.1))  # rebinding drops it too
    assert "weight_l2sp_reference" not in model[0]._buffers


def test_a_handle_removed_over_an_l2sp_puts_its_reference_back() -> None:
    linear = nn.Linear(3, 2)
    binding.bind(linear, "weight", regularizer=L2SP(0.1))
    w0 = linear.weight_l2sp_reference.clone()
    handle = regularize(linear, {"weight": L2(0.5)})
    assert "weight_l2sp_reference" not in linear._buffers
    shift(linear.weight, 2.0)
    handle.remove()
    assert torch.equal(linear.weight_l2sp_reference, w0)  # not re-captured from the moved weights
    np.testing.assert_allclose(penalty_of(linear),
                               numpy_l2sp(0.1, linear.weight.detach().numpy(), w0.numpy()), rtol=1e-6)


# -- Keras-style files -------------------------------------------------------------------------
def keras_style(rule_factor: float = 0.05, with_l2sp: bool = True) -> weightwise.Sequential:
    def rule() -> L2SP | None:
        return L2SP(rule_factor) if with_l2sp else None

    return weightwise.Sequential([
        layers.Input(shape=(6, 6, 2)),
        layers.Conv2D(3, 3, kernel_regularizer=rule()),
        layers.Flatten(),
        layers.Dense(4, kernel_regularizer=rule(), bias_regularizer=rule()),
        layers.Dense(1),
    ])


def references(model: weightwise.Sequential) -> list[np.ndarray]:
    return [b.detach().numpy().copy() for _, b in model.named_buffers() if _.endswith("_l2sp_reference")]


def moved(model: weightwise.Sequential) -> weightwise.Sequential:
    for weight in model.trainable_weights:
        shift(weight, RNG.normal(size=tuple(weight.shape)).astype(np.float32))
    return model


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5", ".h5", ".pt"])
def test_saved_files_restore_the_reference_exactly(tmp_path, suffix) -> None:
    model = moved(keras_style())
    saved = references(model)
    assert len(saved) == 3
    penalty = penalty_of(model)
    assert penalty > 0
    path = tmp_path / f"model{suffix}"
    if suffix in (".keras", ".h5"):
        model.save(path)
        loaded = weightwise.saving.load_model(path)
    else:
        model.save_weights(path)
        loaded = keras_style()
        loaded.load_weights(path)
    for a, b in zip(references(loaded), saved):
        np.testing.assert_array_equal(a, b)
    assert penalty_of(loaded) == pytest.approx(penalty, rel=1e-6)
    assert float(sum(loaded.losses).detach()) == pytest.approx(penalty, rel=1e-6)


def test_the_weights_file_stores_the_reference_after_the_layers_weights(tmp_path) -> None:
    model = keras_style()
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5") as handle:
        assert sorted(handle["layers/dense/vars"]) == ["0", "1", "2", "3"]  # kernel, bias, their references
        np.testing.assert_array_equal(handle["layers/dense/vars/2"][()], model.layers[2].kernel_l2sp_reference.numpy())
        np.testing.assert_array_equal(handle["layers/dense/vars/3"][()], model.layers[2].bias_l2sp_reference.numpy())
        assert handle["layers/dense/vars"].attrs["rule_state"] == 2
        assert sorted(handle["layers/dense_1/vars"]) == ["0", "1"]
        assert "rule_state" not in handle["layers/dense_1/vars"].attrs


def test_weights_saved_with_references_load_into_a_model_without_l2sp(tmp_path) -> None:
    model = moved(keras_style())
    model.save_weights(tmp_path / "tuned.weights.h5")
    plain = keras_style(with_l2sp=False)
    plain.load_weights(tmp_path / "tuned.weights.h5")  # the references are left unread
    for ours, theirs in zip(plain.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_a_damaged_rule_state_count_is_refused(tmp_path) -> None:
    model = keras_style()
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5", "a") as handle:
        handle["layers/dense/vars"].attrs["rule_state"] = 7
    before = [w.detach().clone() for w in model.weights]
    with pytest.raises(ValueError, match=r"damaged.*says 7 of its 4 datasets hold rule state"):
        model.load_weights(tmp_path / "m.weights.h5")
    assert all(torch.equal(a, b) for a, b in zip(model.weights, before))


def test_models_without_l2sp_keep_their_files(tmp_path) -> None:
    model = weightwise.Sequential([layers.Input(shape=(3,)), layers.Dense(2, kernel_regularizer=L2(0.1))])
    assert [len(tensors) for _, _, tensors in weight_entries(model)] == [0, 2]
    assert not list(model.buffers())


@pytest.mark.parametrize("suffix", [".weights.h5", ".pt"])
def test_pretrained_weights_without_references_become_the_references(tmp_path, suffix) -> None:
    pretrained = moved(keras_style(with_l2sp=False))
    pretrained.save_weights(tmp_path / f"pretrained{suffix}")
    model = keras_style()
    model.load_weights(tmp_path / f"pretrained{suffix}")
    for ours, theirs in zip(model.get_weights(), pretrained.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(model.layers[0].kernel_l2sp_reference.numpy(), pretrained.layers[0].kernel.numpy())
    np.testing.assert_array_equal(model.layers[2].bias_l2sp_reference.numpy(), pretrained.layers[2].bias.numpy())
    assert penalty_of(model) == 0.0


def test_a_file_that_fits_neither_way_is_refused_and_changes_nothing(tmp_path) -> None:
    other = weightwise.Sequential([layers.Input(shape=(6, 6, 2)), layers.Conv2D(3, 3), layers.Flatten(),
                                   layers.Dense(5), layers.Dense(1)])
    other.save_weights(tmp_path / "other.weights.h5")
    model = keras_style()
    before = references(model)
    with pytest.raises(ValueError, match="no weight was changed"):
        model.load_weights(tmp_path / "other.weights.h5")
    for a, b in zip(references(model), before):
        np.testing.assert_array_equal(a, b)


# -- fine-tuning -------------------------------------------------------------------------------
def regression(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    x = RNG.normal(size=(n, 8)).astype(np.float32)
    y = (x @ RNG.normal(size=(8, 1)) + 0.1 * RNG.normal(size=(n, 1))).astype(np.float32)
    return x, y


def distance(model: nn.Module, reference: list[torch.Tensor], params: list[torch.Tensor]) -> float:
    return float(sum(((p.detach() - r) ** 2).sum() for p, r in zip(params, reference)))


def test_fine_tuning_in_fit_stays_closer_to_the_pretrained_weights() -> None:
    x, y = regression()
    distances = []
    for rule in (None, L2SP(3.0)):
        weightwise.utils.set_random_seed(3)
        model = weightwise.Sequential([layers.Input(shape=(8,)), layers.Dense(16, activation="tanh"), layers.Dense(1)])
        kernels = [layer.kernel for layer in model.layers]
        pretrained = [w.detach().clone() for w in kernels]
        if rule is not None:
            for kernel in kernels:
                kernel.regularizer = rule
        model.compile(optimizer=weightwise.optimizers.SGD(0.05), loss="mse")
        history = model.fit(x, y, epochs=20, batch_size=16, verbose=0, shuffle=False)
        distances.append(distance(model, pretrained, kernels))
        assert np.isfinite(history.history["loss"]).all()
    assert distances[1] < 0.5 * distances[0]


def test_fine_tuning_in_a_hand_torch_loop_stays_closer_and_has_numpys_gradient() -> None:
    x, y = map(torch.from_numpy, regression())
    distances = []
    for l2 in (None, 3.0):
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        pretrained = [p.detach().clone() for p in model.parameters()]
        if l2 is not None:
            regularize(model, {"*.weight": L2SP(l2)})
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for step in range(100):
            optimizer.zero_grad()
            penalty = regularization_loss(model)
            loss = nn.functional.mse_loss(model(x), y) + penalty
            loss.backward()
            if l2 is not None and step == 50:
                # The penalty's share of the gradient is 2 * l2 * (w - w0), as NumPy computes it.
                w = model[2].weight.detach()
                data_grad = torch.autograd.grad(nn.functional.mse_loss(model(x), y), model[2].weight)[0]
                np.testing.assert_allclose((model[2].weight.grad - data_grad).numpy(),
                                           2 * l2 * (w.numpy() - pretrained[2].numpy()), rtol=1e-4, atol=1e-6)
            optimizer.step()
        distances.append(distance(model, pretrained, list(model.parameters())))
    assert distances[1] < 0.5 * distances[0]


def test_keras_pretrained_weights_load_into_a_model_with_l2sp_as_its_references(tmp_path) -> None:
    keras = keras_or_skip()
    keras.utils.set_random_seed(1)
    theirs = keras.Sequential([keras.Input(shape=(6, 6, 2)), keras.layers.Conv2D(3, 3), keras.layers.Flatten(),
                               keras.layers.Dense(4), keras.layers.Dense(1)])
    theirs.save_weights(tmp_path / "keras.weights.h5")
    model = keras_style()
    model.load_weights(tmp_path / "keras.weights.h5")
    kernels = [to_numpy(theirs.layers[i].kernel) for i in (0, 2)]
    np.testing.assert_array_equal(model.layers[0].kernel_l2sp_reference.numpy(), kernels[0])
    np.testing.assert_array_equal(model.layers[2].kernel_l2sp_reference.numpy(), kernels[1])
    np.testing.assert_array_equal(model.layers[2].bias_l2sp_reference.numpy(), to_numpy(theirs.layers[2].bias))
    # Fine-tuning then moves the weights away from Keras's, and the penalty measures how far.
    moved(model)
    expected = sum(numpy_l2sp(0.05, w.detach().numpy(), r) for w, r in
                   ((model.layers[0].kernel, kernels[0]), (model.layers[2].kernel, kernels[1]),
                    (model.layers[2].bias, to_numpy(theirs.layers[2].bias))))
    np.testing.assert_allclose(penalty_of(model), expected, rtol=1e-5)
