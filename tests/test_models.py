"""Models: Sequential, functional and subclassed, their layers, weights and summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import keras_or_skip, to_numpy

from weightwise import Model, Sequential, binding, layers, regularizers

RNG = np.random.default_rng(5)


def rand(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def test_sequential_builds_from_input_and_omits_the_input_layer() -> None:
    model = Sequential([layers.Input(shape=(4,)), layers.Dense(3, name="a"), layers.Dense(1, name="b")])
    assert model.built
    assert [layer.name for layer in model.layers] == ["a", "b"]
    assert model.count_params() == 4 * 3 + 3 + 3 + 1
    out = model(rand(5, 4))
    assert out.shape == (5, 1)
    kernel_a, bias_a, kernel_b, bias_b = model.get_weights()
    x = rand(2, 4)
    np.testing.assert_allclose(to_numpy(model(x)), (x @ kernel_a + bias_a) @ kernel_b + bias_b, rtol=1e-5, atol=1e-6)


def test_sequential_builds_lazily_and_from_input_dim() -> None:
    lazy = Sequential([layers.Dense(3), layers.Dense(1)])
    assert not lazy.built
    lazy(rand(2, 5))
    assert lazy.built and lazy.layers[0].kernel.shape == (5, 3)
    eager = Sequential([layers.Dense(3, input_dim=6), layers.Dense(1)])
    assert eager.built and eager.layers[1].kernel.shape == (3, 1)


def test_sequential_add_pop_and_bad_input() -> None:
    model = Sequential()
    model.add(layers.Input(shape=(2,)))
    model.add(layers.Dense(2, name="x"))
    with pytest.raises(ValueError, match="unique names"):
        model.add(layers.Dense(2, name="x"))
    with pytest.raises(TypeError, match="Only instances"):
        model.add("dense")
    with pytest.raises(ValueError, match="first layer"):
        model.add(layers.InputLayer(shape=(2,)))
    assert model.pop().name == "x"
    assert model.layers == []


def test_sequential_holds_plain_torch_modules() -> None:
    model = Sequential([layers.Input(shape=(3,)), layers.Dense(4), torch.nn.ReLU(), layers.Dense(1)])
    assert model(rand(2, 3)).shape == (2, 1)
    assert model.count_params() == 3 * 4 + 4 + 4 + 1


def test_functional_multi_input_multi_output_and_shared_layers() -> None:
    a, b = layers.Input(shape=(3,), name="a"), layers.Input(shape=(2,), name="b")
    shared = layers.Dense(4, name="shared", kernel_regularizer=regularizers.L2(0.1))
    ha = shared(layers.Dense(4, name="pa")(a))
    hb = shared(layers.Dense(4, name="pb")(b))
    merged = layers.Concatenate(name="merge")([ha, hb])
    out1, out2 = layers.Dense(1, name="o1")(merged), layers.Dense(2, name="o2")(ha)
    model = Model([a, b], [out1, out2])
    xa, xb = rand(5, 3), rand(5, 2)
    y1, y2 = model([xa, xb])
    assert y1.shape == (5, 1) and y2.shape == (5, 2)
    by_name = model({"a": xa, "b": xb})
    np.testing.assert_allclose(to_numpy(by_name[0]), to_numpy(y1))
    assert model.output_names == ["o1", "o2"]
    # The shared kernel is regularized once.
    assert len(model.losses) == 1
    assert model.get_layer("shared") is shared


def test_functional_graph_errors() -> None:
    a, b = layers.Input(shape=(3,)), layers.Input(shape=(3,))
    out = layers.Add()([a, b])
    with pytest.raises(ValueError, match="Graph disconnected"):
        Model(a, out)
    with pytest.raises(ValueError, match="symbolic tensors"):
        Model(a, torch.ones(2))
    x = layers.Input(shape=(3,))
    with pytest.raises(ValueError, match="expects 1 inputs|unique"):
        Model(x, layers.Dense(1)(x))([rand(2, 3), rand(2, 3)])


def test_symbolic_tensors_have_no_truth_value() -> None:
    with pytest.raises(TypeError, match="no value"):
        bool(layers.Input(shape=(2,)))


def test_subclassed_model_tracks_layers_and_losses() -> None:
    class Net(Model):
        def __init__(self):
            super().__init__(name="net")
            self.hidden = layers.Dense(4, activation="relu", kernel_regularizer="l2", activity_regularizer="l1")
            self.out = layers.Dense(1)

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    net = Net()
    net(rand(3, 2))
    assert [layer.name for layer in net.layers] == [net.hidden.name, net.out.name]
    assert len(net.losses) == 2
    assert binding.regularization_loss(net).item() == pytest.approx(sum(v.item() for v in net.losses))
    class Bare(Model):
        pass

    with pytest.raises(TypeError, match="keyword arguments only"):
        Bare(3)
    with pytest.raises(TypeError, match="outputs"):
        Model(layers.Input(shape=(2,)))


def test_get_layer_by_index_and_errors() -> None:
    model = Sequential([layers.Dense(2, name="p"), layers.Dense(1, name="q")])
    assert model.get_layer(index=1).name == "q"
    with pytest.raises(ValueError, match="No such layer: r"):
        model.get_layer("r")
    with pytest.raises(ValueError, match="exactly one"):
        model.get_layer()


def test_summary_shows_shapes_params_and_rules(capsys) -> None:
    model = Sequential([
        layers.Input(shape=(8,)),
        layers.Dense(4, name="hidden", kernel_regularizer=regularizers.L2(1e-4), kernel_constraint="max_norm",
                     activity_regularizer=regularizers.L1(1e-6)),
        layers.Dense(1, name="out"),
    ], name="small")
    model.summary()
    text = capsys.readouterr().out
    assert 'Model: "small"' in text
    hidden = next(line for line in text.splitlines() if line.startswith("hidden"))
    assert "(None, 4)" in hidden and "36" in hidden
    assert "kernel: L2(l2=0.0001), MaxNorm(max_value=2, axis=0)" in hidden and "activity: L1(l1=1e-06)" in hidden
    assert "Total params: 41" in text and "Trainable params: 41" in text


def test_models_are_torch_modules_and_move_with_to() -> None:
    model = Sequential([layers.Dense(2, input_dim=3)])
    assert isinstance(model, torch.nn.Module)
    model.to(torch.float64)
    assert model.layers[0].kernel.dtype == torch.float64
    assert set(model.state_dict()) == {"0.kernel", "0.bias"}


def test_state_dicts_load_into_identically_built_models() -> None:
    def build():
        inputs = layers.Input(shape=(3,))
        return Model(inputs, layers.Dense(1)(layers.Dense(4)(inputs)))

    for make in (build, lambda: Sequential([layers.Input(shape=(3,)), layers.Dense(4), layers.Dense(1)])):
        first, second = make(), make()
        second.load_state_dict(first.state_dict())
        for a, b in zip(first.get_weights(), second.get_weights()):
            np.testing.assert_array_equal(a, b)


# -- Keras 3 conformance -------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    return keras_or_skip()


def _branching(lib):
    a = lib.Input(shape=(3,), name="a")
    b = lib.Input(shape=(2,), name="b")
    x = lib.layers.Dense(4, name="d1")(a)
    y = lib.layers.Dense(4, name="d2")(b)
    z = lib.layers.Concatenate(name="c")([y, x])
    return lib.Model([a, b], [lib.layers.Dense(1, name="o")(z), lib.layers.Dense(2, name="o2")(x)])


def test_functional_layer_and_weight_order_match_keras(keras) -> None:
    import weightwise

    theirs, ours = _branching(keras), _branching(weightwise)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    ours.set_weights(theirs.get_weights())
    xa, xb = rand(4, 3), rand(4, 2)
    for mine, reference in zip(ours([xa, xb]), theirs([xa, xb])):
        np.testing.assert_allclose(to_numpy(mine), to_numpy(reference), rtol=1e-5, atol=1e-6)


def test_sequential_layers_and_weights_match_keras(keras) -> None:
    import weightwise

    def build(lib):
        return lib.Sequential([lib.Input(shape=(5,)), lib.layers.Dense(4, activation="relu"),
                               lib.layers.Dropout(0.5), lib.layers.Dense(2)])

    theirs, ours = build(keras), build(weightwise)
    assert len(ours.layers) == len(theirs.layers) == 3
    ours.set_weights(theirs.get_weights())
    x = rand(6, 5)
    np.testing.assert_allclose(to_numpy(ours.predict(x, verbose=0)), to_numpy(theirs.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-6)


def test_sequential_and_functional_inputs_outputs_and_shapes_as_keras() -> None:
    from helpers import keras_or_skip

    import weightwise

    keras = keras_or_skip()
    for lib in (keras, weightwise):
        seq = lib.Sequential([lib.Input(shape=(3,)), lib.layers.Dense(5), lib.layers.Dense(2)])
        assert [tuple(t.shape) for t in seq.inputs] == [(None, 3)]
        assert [tuple(t.shape) for t in seq.outputs] == [(None, 2)]
        assert tuple(seq.input_shape) == (None, 3) and tuple(seq.output_shape) == (None, 2)
        func = lib.Model(inputs=seq.inputs, outputs=seq.outputs)
        assert len(func.layers) == 3 and tuple(func.output_shape) == (None, 2)
        a, b = lib.Input(shape=(3,)), lib.Input(shape=(4,))
        two = lib.Model([a, b], [lib.layers.Dense(1)(a), lib.layers.Dense(6)(b)])
        assert [tuple(s) for s in two.input_shape] == [(None, 3), (None, 4)]
        assert [tuple(s) for s in two.output_shape] == [(None, 1), (None, 6)]
        unbuilt = lib.Sequential([lib.layers.Dense(2)])
        with pytest.raises(AttributeError):
            unbuilt.inputs  # noqa: B018
        unbuilt.build((None, 7))
        assert tuple(unbuilt.input_shape) == (None, 7)
    popped = weightwise.Sequential([weightwise.Input(shape=(3,)), weightwise.layers.Dense(5), weightwise.layers.Dense(2)])
    popped.pop()
    with pytest.raises(AttributeError):  # the stack changed since it was built
        popped.outputs  # noqa: B018
