"""Variable: Keras's ``keras.Variable`` API on weights that stay ``torch.nn.Parameter``s.

Keras 3 (torch backend) is the reference for names, paths, values and layer lists; torch's
own machinery (optimizers, compile, deepcopy, pickling, ``.to()``, DDP) must keep working.
"""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch

import weightwise
from tests.helpers import keras_or_skip, to_numpy
from tests.ranks import gloo, run_ranks
from weightwise import binding, constraints, layers, regularizers
from weightwise.variables import Variable, current_path, name_scope


def _dense(name: str, units: int = 3, inputs: int = 4, **kwargs) -> layers.Dense:
    layer = layers.Dense(units, name=name, **kwargs)
    layer.build((None, inputs))
    return layer


# -- identity against Keras -----------------------------------------------------------------

def test_dense_weights_have_keras_names_paths_shapes_and_flags() -> None:
    keras = keras_or_skip()
    theirs = keras.layers.Dense(3, name="vt_dense")
    theirs.build((None, 4))
    ours = _dense("vt_dense")
    assert [v.path for v in ours.variables] == [v.path for v in theirs.variables] == ["vt_dense/kernel", "vt_dense/bias"]
    assert [v.name for v in ours.variables] == [v.name for v in theirs.variables]
    assert [v.shape for v in ours.variables] == [v.shape for v in theirs.variables]
    assert [v.trainable for v in ours.variables] == [v.trainable for v in theirs.variables]
    assert [keras.backend.standardize_dtype(v.dtype) for v in ours.variables] == [v.dtype for v in theirs.variables]
    assert isinstance(ours.kernel, torch.nn.Parameter) and isinstance(ours.kernel, weightwise.Variable)
    assert ours.path == theirs.path == "vt_dense"


def _paths_of_models(lib):
    """Weight paths of the same models built the ways Keras scripts build them, in ``lib`` (keras or weightwise)."""
    dense = lib.layers.Dense
    first = lib.Sequential([dense(2, name="vp_a"), dense(2, name="vp_b")], name="vp_seq")
    first(np.ones((1, 3), dtype="float32"))
    second = lib.Sequential([lib.Input((3,)), dense(2, name="vp_c")], name="vp_seq_input")
    inputs = lib.Input((4,))
    functional = lib.Model(inputs, dense(2, name="vp_d")(inputs), name="vp_functional")

    class Sub(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = dense(2, name="vp_e")

        def call(self, x):
            return self.inner(x)

    subclassed = Sub(name="vp_sub")
    subclassed(np.ones((1, 3), dtype="float32"))

    class Nested(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.early = self.add_weight(shape=(2,), name="early")

        def build(self, input_shape):
            self.late = self.add_weight(shape=(2,), name="late")
            self.inner = dense(2, name="vp_f")
            self.inner.build((None, 3))

    nested = Nested(name="vp_nested")
    nested.build((None, 3))
    return [[v.path for v in model.variables] for model in (first, second, functional, subclassed, nested)]


def test_weight_paths_follow_the_model_that_builds_them_as_in_keras() -> None:
    keras = keras_or_skip()
    assert _paths_of_models(weightwise) == _paths_of_models(keras)


def test_standalone_variable_matches_keras_variable() -> None:
    keras = keras_or_skip()
    array = np.arange(6, dtype="float64").reshape(2, 3)
    cases = [((array,), {"name": "vs_array"}), ((2.5,), {"name": "vs_scalar"}),
             (("ones",), {"shape": (2, 2), "name": "vs_ones"}),
             ((array,), {"dtype": "float32", "trainable": False, "name": "vs_cast"})]
    for args, kwargs in cases:
        theirs, ours = keras.Variable(*args, **kwargs), Variable(*args, **kwargs)
        assert (ours.name, ours.path, ours.shape, ours.trainable) == (theirs.name, theirs.path, theirs.shape, theirs.trainable)
        assert keras.backend.standardize_dtype(ours.dtype) == theirs.dtype
        np.testing.assert_array_equal(ours.numpy(), to_numpy(theirs.value))
    with keras.name_scope("vs_block"), name_scope("vs_block"):
        assert Variable(1.0, name="w").path == keras.Variable(1.0, name="w").path == "vs_block/w"
    assert current_path() == ""


def test_initializer_needs_a_shape_and_names_are_checked() -> None:
    with pytest.raises(ValueError, match="`shape` argument should be specified"):
        Variable("ones")
    with pytest.raises(ValueError, match=r"argument `shape`.*Received: shape=\(2, None\)"):
        Variable("ones", shape=(2, None))
    with pytest.raises(ValueError, match="argument `name`.*Received: name='a/b'"):
        Variable(1.0, name="a/b")
    with pytest.raises(ValueError, match="argument `aggregation`.*Received: aggregation='max'"):
        Variable(1.0, aggregation="max")
    with pytest.raises(ValueError, match="argument `trainable`.*Received: trainable='yes'"):
        Variable(1.0, trainable="yes")
    with pytest.raises(TypeError, match="argument `initializer`"):
        Variable(object())


def test_a_value_is_copied_so_assign_never_writes_into_the_callers_array() -> None:
    array = np.zeros(3, dtype="float32")
    variable = Variable(array)
    variable.assign([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(array, np.zeros(3))


# -- assign ------------------------------------------------------------------------------------

def test_assign_add_sub_give_keras_values_in_place() -> None:
    keras = keras_or_skip()
    start = np.array([[1.0, 2.0], [3.0, 4.0]], dtype="float32")
    theirs, ours = keras.Variable(start), Variable(start)
    obj = id(ours)
    steps = [("assign", np.full((2, 2), 0.5, dtype="float64")), ("assign_add", 1.25), ("assign_sub", [0.5, 1.0]),
             ("assign_add", np.array([[1e-8], [2.0]], dtype="float64")), ("assign", [[1, 2], [3, 4]])]
    for method, value in steps:
        expected = getattr(theirs, method)(value)
        returned = getattr(ours, method)(value)
        np.testing.assert_allclose(ours.numpy(), to_numpy(theirs.value), rtol=0, atol=1e-7)
        np.testing.assert_allclose(to_numpy(returned), to_numpy(expected), rtol=0, atol=1e-7)
        assert ours.dtype == torch.float32 and id(ours) == obj and ours.requires_grad


def test_assign_to_an_int_variable_casts_like_keras() -> None:
    keras = keras_or_skip()
    theirs = keras.Variable(np.array([1, 2], dtype="int32"), trainable=False)
    ours = Variable(np.array([1, 2], dtype="int32"), trainable=False)
    for method, value in (("assign", [2.7, -1.2]), ("assign_add", 3), ("assign_add", 0.5)):
        getattr(theirs, method)(value)
        getattr(ours, method)(value)
        np.testing.assert_array_equal(ours.numpy(), to_numpy(theirs.value))
    assert ours.dtype == torch.int32


def test_bad_assignments_name_the_variable_and_change_nothing() -> None:
    layer = _dense("va_bad")
    before = layer.kernel.numpy()
    with pytest.raises(ValueError, match=r"variable\.shape=\(4, 3\), Received: value\.shape=\(3, 4\).*va_bad/kernel"):
        layer.kernel.assign(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"assign_add.*value\.shape=\(2, 4, 3\)"):
        layer.kernel.assign_add(np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"assign_sub.*value\.shape=\(5,\)"):
        layer.kernel.assign_sub(np.zeros(5))
    with pytest.raises(TypeError, match="'va_bad/kernel'.*Received: value='abc'"):
        layer.kernel.assign("abc")
    with pytest.raises(TypeError, match="complex"):
        layer.kernel.assign(np.ones((4, 3), dtype=complex))
    with pytest.raises(TypeError, match="Received: value=None"):
        layer.kernel.assign(None)
    np.testing.assert_array_equal(layer.kernel.numpy(), before)


def test_assign_keeps_the_parameter_so_optimizer_state_survives() -> None:
    layer = _dense("va_optim")
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    layer(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    state = optimizer.state[layer.kernel]
    layer.kernel.assign(np.ones((4, 3)))
    layer.bias.assign_sub(1.0)
    assert optimizer.state[layer.kernel] is state and state["step"].item() == 1
    optimizer.zero_grad()
    layer(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    assert optimizer.state[layer.kernel]["step"].item() == 2
    # Adam's second step moves each weight by about lr against the gradient's sign (ones).
    np.testing.assert_allclose(layer.kernel.numpy(), np.full((4, 3), 0.9), atol=1e-3)


def test_assign_works_under_grad_mode_and_value_carries_the_gradient() -> None:
    variable = Variable(np.ones(3, dtype="float32"))
    variable.assign_add([1.0, 1.0, 1.0])  # in place on a leaf that requires grad: needs no_grad inside
    value = variable.value
    assert value is variable  # as Keras's torch backend, so the guides' ``v.value.grad`` is the gradient
    (value * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(to_numpy(variable.grad), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(to_numpy(variable.value.grad), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(np.asarray(variable), [2.0, 2.0, 2.0])
    assert float(Variable(2.5)) == 2.5 and int(Variable(3)) == 3


def test_ops_on_a_variable_give_plain_tensors() -> None:
    variable = Variable(np.ones(2, dtype="float32"))
    for result in (variable * 2, variable + variable, torch.exp(variable), variable.detach(), variable.data):
        assert type(result) is torch.Tensor


# -- trainable ---------------------------------------------------------------------------------

def test_trainable_is_requires_grad_and_moves_weights_between_the_lists_as_keras() -> None:
    keras = keras_or_skip()
    theirs = keras.layers.Dense(2)
    theirs.build((None, 3))
    ours = _dense("vtr", units=2, inputs=3)

    def lists(layer):
        return ([v.name for v in layer.trainable_weights], [v.name for v in layer.non_trainable_weights],
                [v.name for v in layer.weights], [v.trainable for v in layer.weights])

    for change in (lambda lyr: setattr(lyr.kernel, "trainable", False), lambda lyr: setattr(lyr, "trainable", False),
                   lambda lyr: setattr(lyr, "trainable", True), lambda lyr: setattr(lyr.bias, "trainable", False),
                   lambda lyr: setattr(lyr.bias, "trainable", True)):
        change(theirs)
        change(ours)
        assert lists(ours) == lists(theirs)
        assert [v.requires_grad for v in ours.weights] == [v.trainable for v in ours.weights]


def test_an_untrainable_layer_lists_no_trainable_weight_even_if_one_is_set_trainable() -> None:
    layer = _dense("vtr_off")
    layer.trainable = False
    layer.kernel.trainable = True
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2


def test_integer_variables_cannot_be_trainable() -> None:
    variable = Variable(np.arange(3))
    assert variable.dtype == torch.int64 and not variable.trainable
    with pytest.raises(ValueError, match="'variable.*' of dtype int64 cannot be trainable.*Received: trainable=True"):
        variable.trainable = True
    with pytest.raises(ValueError, match="argument `trainable`.*Received: trainable=1"):
        Variable(1.0).trainable = 1


# -- regularizer and constraint ---------------------------------------------------------------

def test_keras_dense_and_conv_tests_read_the_constraint_on_the_weight() -> None:
    for make, shape in ((lambda **kw: layers.Dense(2, **kw), (None, 2)),
                        (lambda **kw: layers.Conv2D(4, 3, **kw), (None, 5, 5, 3))):
        layer = make(kernel_constraint="non_neg")
        layer.build(shape)
        assert isinstance(layer.kernel.constraint, constraints.NonNeg) and layer.bias.constraint is None
        layer = make(bias_constraint="non_neg", bias_regularizer="l1")
        layer.build(shape)
        assert isinstance(layer.bias.constraint, constraints.NonNeg)
        assert isinstance(layer.bias.regularizer, regularizers.L1) and layer.kernel.regularizer is None


def test_setting_the_weights_constraint_rebinds_it_like_the_layer_attribute() -> None:
    layer = _dense("vc_set", units=2, inputs=3)
    layer.kernel.constraint = constraints.MaxNorm(max_value=1.0, axis=0)
    assert layer.kernel_constraint is layer.kernel.constraint
    assert binding.rule_of(layer, "kernel").constraint is layer.kernel.constraint
    kernel = np.array([[3.0, 0.1], [4.0, 0.2], [0.0, 0.2]], dtype="float32")
    layer.kernel.assign(kernel)
    weightwise.apply_constraints(layer)
    norms = np.linalg.norm(kernel, axis=0)
    np.testing.assert_allclose(layer.kernel.numpy(), kernel * np.clip(norms, 0, 1) / (1e-7 + norms), rtol=1e-6)
    layer.kernel_constraint = "non_neg"
    assert isinstance(layer.kernel.constraint, constraints.NonNeg)
    layer.kernel.constraint = None
    assert layer.kernel_constraint is None and binding.rule_of(layer, "kernel") is None


def test_setting_the_weights_regularizer_changes_the_losses() -> None:
    layer = _dense("vr_set", units=2, inputs=3)
    layer.kernel.assign(np.full((3, 2), 2.0))
    assert layer.losses == []
    layer.kernel.regularizer = "l2"
    assert layer.kernel_regularizer == layer.kernel.regularizer
    np.testing.assert_allclose([float(loss.detach()) for loss in layer.losses], [0.01 * 6 * 4.0], rtol=1e-6)
    layer.kernel.trainable = False
    assert layer.losses == []


def test_bad_rules_on_a_weight_name_it_and_bind_nothing() -> None:
    layer = _dense("vr_bad", units=2, inputs=3, kernel_constraint="non_neg")
    with pytest.raises(ValueError, match="'vr_bad/kernel': invalid value for attribute `constraint`.*bogus"):
        layer.kernel.constraint = "bogus"
    with pytest.raises(ValueError, match="attribute `constraint`.*axis"):
        layer.kernel.constraint = constraints.MaxNorm(axis=3)
    with pytest.raises(ValueError, match="attribute `regularizer`"):
        layer.kernel.regularizer = 5
    assert isinstance(layer.kernel.constraint, constraints.NonNeg) and layer.kernel.regularizer is None


def test_a_standalone_variables_rules_bind_when_a_layer_takes_it() -> None:
    variable = Variable(np.array([1.0, -2.0], dtype="float32"), name="vr_free")
    variable.regularizer = regularizers.L1(0.5)
    variable.constraint = "non_neg"
    assert binding.rule_of(torch.nn.Linear(1, 1), "weight") is None

    class Holder(weightwise.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.scale = variable

        def call(self, inputs):
            return inputs * self.scale

    holder = Holder(name="vr_holder")
    assert holder.weights == [variable]
    assert binding.rule_of(holder, "scale").regularizer is variable.regularizer
    np.testing.assert_allclose([float(loss.detach()) for loss in holder.losses], [1.5])
    weightwise.apply_constraints(holder)
    np.testing.assert_array_equal(variable.numpy(), [1.0, 0.0])


# -- torch machinery -----------------------------------------------------------------------------

def _model() -> weightwise.Sequential:
    model = weightwise.Sequential([layers.Dense(4, activation="relu", kernel_constraint="non_neg",
                                                kernel_regularizer="l2", name="vm_a"),
                                   layers.Dense(2, name="vm_b")], name="vm")
    model.build((None, 3))
    return model


def _check_variables(model: torch.nn.Module, paths: list[str]) -> None:
    weights = [p for _, p in model.named_parameters()]
    assert all(type(p) is Variable for p in weights)
    assert [p.path for p in weights] == paths
    for module in model.modules():
        for name, param in module._parameters.items():
            assert param._owner is module and param._slot == name


PATHS = ["vm/vm_a/kernel", "vm/vm_a/bias", "vm/vm_b/kernel", "vm/vm_b/bias"]


def test_deepcopy_keeps_class_names_and_rules_and_is_independent() -> None:
    model = _model()
    clone = copy.deepcopy(model)
    _check_variables(clone, PATHS)
    first = clone.layers[0]
    assert isinstance(first.kernel.constraint, constraints.NonNeg)
    assert first.kernel.constraint is not model.layers[0].kernel.constraint
    first.kernel.constraint = None
    assert isinstance(model.layers[0].kernel.constraint, constraints.NonNeg)
    first.kernel.assign_add(1.0)
    assert not np.allclose(first.kernel.numpy(), model.layers[0].kernel.numpy())
    alone = copy.deepcopy(model.layers[0].kernel)
    assert type(alone) is Variable and alone._owner is None and isinstance(alone.constraint, constraints.NonNeg)


def test_pickling_the_model_and_the_state_dict_round_trip() -> None:
    model = _model()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    _check_variables(loaded, PATHS)
    assert isinstance(loaded.layers[0].kernel_constraint, constraints.NonNeg)
    state = model.state_dict()
    assert all(type(t) is torch.Tensor for t in state.values())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = _model()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    _check_variables(fresh, PATHS)
    for a, b in zip(fresh.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    alone = pickle.loads(pickle.dumps(model.layers[0].kernel))
    assert alone.path == "vm/vm_a/kernel" and isinstance(alone.constraint, constraints.NonNeg)


@pytest.mark.parametrize("convert", [
    lambda m: m.to(torch.float64), lambda m: m.half(), lambda m: m.to("meta").to_empty(device="cpu"),
    lambda m: m.load_state_dict({k: torch.zeros_like(v) for k, v in m.state_dict().items()}, assign=True),
], ids=["to_float64", "half", "meta_then_to_empty", "load_state_dict_assign"])
def test_torch_conversions_keep_variables(convert) -> None:
    model = _model()
    convert(model)
    _check_variables(model, PATHS)
    assert isinstance(model.layers[0].kernel.constraint, constraints.NonNeg)


def test_swap_module_params_on_conversion_keeps_variables() -> None:
    model = _model()
    kernel = model.layers[0].kernel
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        model.to(torch.float64)
    finally:
        torch.__future__.set_swap_module_params_on_conversion(False)
    assert model.layers[0].kernel is kernel and kernel.dtype == torch.float64
    _check_variables(model, PATHS)


def test_torch_optimizer_step_and_constraints() -> None:
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, foreach=True)
    loss = model(torch.randn(5, 3)).square().sum() + weightwise.regularization_loss(model)
    loss.backward()
    optimizer.step()
    weightwise.apply_constraints(model)
    assert (model.layers[0].kernel.numpy() >= 0).all()
    _check_variables(model, PATHS)


def test_torch_form_constructor_keeps_the_class() -> None:
    data = torch.ones(2, 2)
    rebuilt = Variable(data, False)
    assert type(rebuilt) is Variable and not rebuilt.requires_grad
    assert Variable(data, requires_grad=True).requires_grad


def test_torch_compile_fullgraph_matches_eager() -> None:
    model = _model()
    x = torch.randn(6, 3)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()
    assert model.layers[0].kernel.grad is not None


def _ddp_of_variables_worker(rank: int, world_size: int, port: int, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    with gloo(rank, world_size, port):
        model = _model()
        wrapped = DistributedDataParallel(model)
        names = [n for n, _ in wrapped.named_parameters()]
        wrapped(torch.randn(4, 3)).sum().backward()
        _check_variables(model, PATHS)
        torch.save({"names": names, "grads": [p.grad is not None for p in model.parameters()]}, out)


def test_ddp_wraps_a_model_of_variables(tmp_path) -> None:
    # In its own process, within a deadline: a process group in the test process could hang it.
    run_ranks(_ddp_of_variables_worker, str(tmp_path / "out.pt"), nprocs=1, timeout=90)
    result = torch.load(tmp_path / "out.pt")
    assert result["names"] == [f"module.{i}.{w}" for i in (0, 1) for w in ("kernel", "bias")]
    assert all(result["grads"])


def test_repr_is_kerass() -> None:
    variable = Variable(np.array([1.0, 2.0], dtype="float32"), name="vrepr")
    assert repr(variable) == "<Variable path=vrepr, shape=(2,), dtype=float32, value=[1. 2.]>"
