"""Keras's model idioms around building: ``build(input_shape)`` then ``count_params()``/``summary()``,
and subclassing a functional model (``super().__init__(inputs, outputs)`` in ``__init__``)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import weightwise
from tests.helpers import keras_or_skip, to_numpy
from weightwise import layers
from weightwise.models import Functional
from weightwise.models import model as model_module

RNG = np.random.default_rng(11)
X = RNG.standard_normal((8, 3)).astype(np.float32)
Y = RNG.standard_normal((8, 2)).astype(np.float32)


def guide_style(lib):
    """A functional subclass as Keras's guides write it, for either library."""

    class Residual(lib.Model):
        def __init__(self, units=5, **kwargs):
            self.units = units  # set before super().__init__, as scripts do with plain values
            inputs = lib.Input(shape=(3,), name="features")
            hidden = lib.layers.Dense(units, activation="relu", name="hidden",
                                      kernel_regularizer=lib.regularizers.L2(0.01))(inputs)
            hidden = lib.layers.Dropout(0.5, name="drop")(hidden)
            outputs = lib.layers.Dense(2, name="head")(hidden) + lib.ops.mean(inputs, axis=1, keepdims=True)
            super().__init__(inputs, outputs, **kwargs)
            self.note = "after"  # and after

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return Residual


def copy_weights(ours, theirs):
    for layer in ours.layers:
        if layer.weights:
            theirs.get_layer(layer.name).set_weights([to_numpy(w) for w in layer.get_weights()])


def test_subclassing_a_functional_model_matches_keras():
    keras = keras_or_skip()
    ours = guide_style(weightwise)(name="res")
    theirs = guide_style(keras)(name="res")
    assert isinstance(ours, Functional) and isinstance(ours, weightwise.Model)
    assert (ours.name, ours.units, ours.note) == ("res", 5, "after")
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    copy_weights(ours, theirs)
    np.testing.assert_allclose(to_numpy(ours.predict(X, verbose=0)), to_numpy(theirs.predict(X, verbose=0)),
                               rtol=1e-6, atol=1e-6)
    assert ours.count_params() == theirs.count_params()
    assert len(ours.losses) == 1  # the kernel regularizer of the graph's layer


def test_a_functional_subclass_trains_summarizes_and_saves(tmp_path):
    cls = guide_style(weightwise)
    model = cls(units=4)
    second = cls(units=3)  # the class is functional from now on; later instances are too
    assert isinstance(second, Functional) and second.count_params() != model.count_params()
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(X, Y, epochs=3, batch_size=4, verbose=0)
    assert len(history.history["loss"]) == 3
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "hidden (Dense)" in text and "(None, 4)" in text and "L2(l2=0.01)" in text
    path = str(tmp_path / "res.keras")
    model.save(path)
    loaded = weightwise.models.load_model(path, custom_objects={cls.__name__: cls})
    assert type(loaded) is cls and loaded.units == 4
    np.testing.assert_allclose(to_numpy(loaded.predict(X, verbose=0)), to_numpy(model.predict(X, verbose=0)), rtol=1e-6)


def test_a_functional_subclass_without_get_config_refuses_to_save_naming_the_fix(tmp_path):
    class Bare(weightwise.Model):
        def __init__(self):
            inputs = weightwise.Input(shape=(3,))
            super().__init__(inputs, layers.Dense(2)(inputs), name="bare")

    model = Bare()
    assert model.name == "bare" and model.predict(X, verbose=0).shape == (8, 2)
    with pytest.raises(NotImplementedError, match="Implement `get_config"):
        model.save(str(tmp_path / "bare.keras"))
    with pytest.raises(NotImplementedError, match="Implement `get_config"):
        weightwise.models.clone_model(model)


def test_a_subclass_of_a_subclass_and_keyword_spelling():
    class Base(weightwise.Model):
        pass

    class Net(Base):
        def __init__(self):
            inputs = weightwise.Input(shape=(3,))
            super().__init__(inputs=inputs, outputs=layers.Dense(2, name="o")(inputs) * 2.0)

    model = Net()
    assert isinstance(model, Base) and isinstance(model, Functional)
    assert model(torch.ones(1, 3)).shape == (1, 2)
    plain = Base()  # Base itself still makes subclassed models
    assert not isinstance(plain, Functional)


def test_model_does_not_import_the_functional_module():
    tree = ast.parse(Path(model_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any("functional" in name for name in imported)
    x = weightwise.Input(shape=(2,))
    assert type(weightwise.Model(x, layers.Dense(1)(x))) is Functional


# -- build -------------------------------------------------------------------------------------
class Two(weightwise.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(4, activation="relu")
        self.out = layers.Dense(2)

    def call(self, inputs):
        return self.out(self.hidden(inputs))


def test_build_then_count_params_and_summary_on_a_subclassed_model():
    model = Two()
    model.build((None, 3))
    assert model.built and model.hidden.built and model.out.built
    assert model.count_params() == 3 * 4 + 4 + 4 * 2 + 2
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 26" in lines
    assert model.get_build_config() == {"input_shape": [None, 3]}
    # The next call on data runs; it does not build again.
    assert model(torch.ones(5, 3)).shape == (5, 2)


def test_build_takes_several_inputs():
    class Pair(weightwise.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs[0]) + inputs[1]

    model = Pair()
    model.build([(None, 3), (None, 2)])
    assert model.count_params() == 8


def test_a_bad_build_shape_is_refused_and_leaves_the_model_unbuilt():
    model = Two()
    with pytest.raises(ValueError, match="input_shape"):
        model.build("abc")
    with pytest.raises(ValueError, match="needs the input shape"):
        model.build()
    assert not model.built and not model.hidden.built


def test_build_on_sequential_matches_keras_counts():
    keras = keras_or_skip()
    counts = []
    for lib in (weightwise, keras):
        model = lib.Sequential([lib.layers.Dense(4), lib.layers.Dense(1)])
        model.build((None, 6))
        counts.append(model.count_params())
    assert counts[0] == counts[1] == 6 * 4 + 4 + 4 + 1
    seq = weightwise.Sequential([weightwise.Input(shape=(6,)), layers.Dense(3)])
    seq.build()
    assert seq.count_params() == 21
    lines = []
    seq.summary(print_fn=lines.append)
    assert "Total params: 21" in lines
    with pytest.raises(ValueError, match="needs the input shape"):
        weightwise.Sequential([layers.Dense(3)]).build()


def test_functional_build_is_a_no_op():
    x = weightwise.Input(shape=(3,))
    model = weightwise.Model(x, layers.Dense(2)(x))
    model.build((None, 3))
    assert model.built and model.count_params() == 8


class WithOwnBuild(weightwise.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(2)

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return self.dense(inputs * self.scale)

    def get_config(self):
        return super().get_config()


def test_a_saved_subclassed_model_with_its_own_build_loads_every_weight(tmp_path):
    model = WithOwnBuild(name="own")
    model(torch.as_tensor(X))  # builds
    with torch.no_grad():
        model.scale.mul_(3.0)
    expected = model(torch.as_tensor(X))
    path = str(tmp_path / "own.keras")
    model.save(path)
    loaded = weightwise.models.load_model(path, custom_objects={"WithOwnBuild": WithOwnBuild})
    torch.testing.assert_close(loaded(torch.as_tensor(X)), expected)
    assert loaded.count_params() == model.count_params() == 3 + 3 * 2 + 2
