"""``weightwise.distribution``: Keras's ``keras.distribution`` API, mapped onto DDP and FSDP2.

Keras 3.15.1 runs in-process as the reference for the API surface (names, argument names and
defaults), the configurations, the validation Keras does itself, and the ``LayoutMap`` lookup on
the same keys and the same variable paths. The torch mapping (``torch_mesh``,
``shard_placement_fn``, ``distribute_tensor``, ``initialize``) runs on 2 gloo ranks.
"""

from __future__ import annotations

import inspect
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import keras_or_skip
from ranks import run_ranks

import weightwise
from weightwise import distribution as D
from weightwise.distribution.distribution_lib import Distribution

CPUS = [f"cpu:{i}" for i in range(8)]


@pytest.fixture(autouse=True)
def _no_distribution_left_behind():
    yield
    D.set_distribution(None)


# --- the API surface, against Keras -----------------------------------------------------------------


def _public_names(module: Any) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


def _parameters(obj: Any) -> list[tuple[str, Any, Any]]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    return [(p.name, p.kind, p.default) for p in inspect.signature(target).parameters.values() if p.name != "self"]


def test_the_package_has_keras_names_and_arguments() -> None:
    keras = keras_or_skip()
    assert weightwise.distribution is D
    assert _public_names(keras.distribution) == set(D.__all__)
    for name in D.__all__:
        assert _parameters(getattr(D, name)) == _parameters(getattr(keras.distribution, name)), name


@pytest.mark.parametrize("name", ["DeviceMesh", "TensorLayout", "LayoutMap", "DataParallel", "ModelParallel"])
def test_the_classes_have_the_keras_members(name: str) -> None:
    keras = keras_or_skip()
    # Keras's dataset sharding works on tf.data only; fit shards the data itself on torch.
    left_out = {"distribute_dataset", "distribute_tf_dataset"}
    theirs = _public_names(getattr(keras.distribution, name)) - left_out
    assert theirs <= _public_names(getattr(D, name))


def test_the_distributions_say_how_torch_runs_them() -> None:
    mesh = D.DeviceMesh((2,), ["model"], devices=["cpu:0", "cpu:1"])
    layout_map = D.LayoutMap(mesh)
    data_parallel, model_parallel = D.DataParallel(devices=["cpu:0", "cpu:1"]), D.ModelParallel(layout_map=layout_map)
    assert isinstance(data_parallel, Distribution) and isinstance(model_parallel, Distribution)
    assert (data_parallel.torch_strategy, model_parallel.torch_strategy) == ("ddp", "fsdp")
    # One process, no process group: nothing to build a torch mesh on.
    assert data_parallel.torch_mesh() is None and model_parallel.torch_mesh() is None
    assert data_parallel.shard_placement_fn(torch.nn.Linear(2, 2)) is None


# --- LayoutMap lookups and variable paths, against Keras ---------------------------------------------

KEYS = ["dense/kernel", "dense/bias", ".*dense.*kernel", ".*dense.*bias", ".*bias", ".*conv2d.*kernel",
        "my_model/conv2d_123/bias", "(enc|dec)oder/.*/kernel", "lstm/lstm_cell/.*"]
PATHS = ["dense/kernel", "dense/bias", "dense_2/kernel", "dense_2/bias", "conv2d/kernel", "conv2d/bias",
         "my_model/conv2d_123/kernel", "my_model/conv2d_123/bias", "my_model/conv3d_1/kernel", "encoder/a/kernel",
         "decoder/b/c/kernel", "encoder/kernel", "lstm/lstm_cell/kernel", "lstm/lstm_cell/bias", "dense", "",
         "xdense/kernel", "dense/kernel/extra"]


def _lookup(layout_map: Any, path: str) -> Any:
    try:
        layout = layout_map[path]
    except ValueError as error:
        return ("error", re.sub(r"\s+", " ", str(error)))
    return None if layout is None else layout.axes


def _layout_maps(keras: Any) -> tuple[Any, Any]:
    ours = D.LayoutMap(D.DeviceMesh((2, 4), ["batch", "model"], CPUS))
    theirs = keras.distribution.LayoutMap(keras.distribution.DeviceMesh((2, 4), ["batch", "model"], CPUS))
    for index, key in enumerate(KEYS):
        axes = ((None, "model"), ("model",), ("batch", None), (None,))[index % 4]
        ours[key], theirs[key] = axes, axes
    return ours, theirs


def test_layout_map_lookups_equal_keras() -> None:
    keras = keras_or_skip()
    ours, theirs = _layout_maps(keras)
    assert list(ours) == list(theirs) == KEYS and len(ours) == len(theirs)
    outcomes = [_lookup(ours, path) for path in PATHS]
    assert outcomes == [_lookup(theirs, path) for path in PATHS]
    assert {kind for kind in outcomes if isinstance(kind, tuple) and kind[0] == "error"} and None in outcomes
    assert ours.get("my_model/conv3d_1/kernel") is None is theirs.get("my_model/conv3d_1/kernel")
    del ours["dense/bias"], theirs["dense/bias"]
    assert [_lookup(ours, path) for path in PATHS] == [_lookup(theirs, path) for path in PATHS]
    with pytest.raises(KeyError):
        del ours["nothing"]


def _paths_of_a_model(lib: Any) -> list[str]:
    layers = lib.layers
    inputs = lib.Input((6, 4))
    y = layers.LSTM(4, return_sequences=True)(inputs)
    y = layers.Bidirectional(layers.GRU(2, return_sequences=True))(y)
    y = layers.TimeDistributed(layers.Dense(4))(y)
    y = layers.LayerNormalization()(y)
    y = layers.MultiHeadAttention(2, 2)(y, y)
    y = layers.BatchNormalization()(y)
    y = layers.Conv1D(3, 2)(y)
    y = layers.SeparableConv1D(3, 2)(y)
    y = layers.GlobalAveragePooling1D()(y)
    functional = lib.Model(inputs, layers.Dense(3)(y), name="net")
    sequential = lib.Sequential([lib.Input((3,)), layers.Embedding(5, 2), layers.Flatten(), layers.Dense(2)],
                                name="seq")

    class Block(layers.Layer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.first, self.second = layers.Dense(3), layers.Dense(3, name="second")

        def call(self, x: Any) -> Any:
            return self.second(self.first(x))

    inputs = lib.Input((3,))
    inner = lib.Sequential([lib.Input((3,)), layers.Dense(3, name="in_dense")], name="inner")
    nested = lib.Model(inputs, inner(Block(name="block")(inputs)), name="outer")
    return [v.path for model in (functional, sequential, nested) for v in model.weights]


def test_variable_paths_and_their_layouts_equal_keras() -> None:
    keras = keras_or_skip()
    keras.utils.clear_session()
    weightwise.backend.clear_session()
    paths = _paths_of_a_model(weightwise)
    assert paths == _paths_of_a_model(keras)
    ours, theirs = D.LayoutMap(D.DeviceMesh((2,), ["model"], CPUS[:2])), keras.distribution.LayoutMap(
        keras.distribution.DeviceMesh((2,), ["model"], CPUS[:2]))
    for key, axes in [(".*dense.*kernel", (None, "model")), (".*cell/kernel", ("model", None)),
                      ("seq/embedding/embeddings", (None, "model")), (".*/(query|key|value)/kernel", (None, "model", None)),
                      (".*_normalization/(gamma|beta)", ("model",)), (".*conv1d.*", (None, None, "model")),
                      ("block/.*/kernel", (None, "model")), ("inner/.*", ("model",))]:
        ours[key], theirs[key] = axes, axes
    outcomes = [_lookup(ours, path) for path in paths]
    assert outcomes == [_lookup(theirs, path) for path in paths]
    assert sum(outcome is not None for outcome in outcomes) >= 10


# --- configurations, against Keras ---------------------------------------------------------------------


def _config(distribution: Any, variable: Any) -> dict[str, Any]:
    mesh = distribution.device_mesh
    return {"type": type(distribution).__name__, "shape": tuple(mesh.shape), "names": list(mesh.axis_names),
            "devices": np.asarray(mesh.devices).tolist(), "batch": distribution.batch_dim_name,
            "replicas": distribution.num_model_replicas, "processes": distribution.num_processes,
            "shard": distribution.data_shard_id, "auto_shard": distribution.auto_shard_dataset,
            "data": distribution.get_data_layout((16, 3, 2)).axes,
            "variable": distribution.get_variable_layout(variable).axes,
            "tensor": getattr(distribution.get_tensor_layout("dense/kernel"), "axes", None)}


def _distributions(lib: Any) -> list[Any]:
    dist_lib = lib.distribution
    mesh_2d = dist_lib.DeviceMesh((2, 4), ["data", "model"], CPUS)
    layout_map = dist_lib.LayoutMap(mesh_2d)
    layout_map[".*kernel"] = dist_lib.TensorLayout([None, "model"])
    layout_map[".*bias"] = ("model",)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [dist_lib.DataParallel(devices=CPUS),
                dist_lib.DataParallel(device_mesh=dist_lib.DeviceMesh((8,), ["x"], CPUS), auto_shard_dataset=False),
                dist_lib.ModelParallel(layout_map=layout_map),
                dist_lib.ModelParallel(layout_map=layout_map, batch_dim_name="model", device_mesh=mesh_2d)]


def _kernel(lib: Any) -> Any:
    layer = lib.layers.Dense(4, name="dense")
    layer.build((None, 3))
    return layer.kernel


def test_configurations_equal_keras() -> None:
    keras = keras_or_skip()
    ours = [_config(d, _kernel(weightwise)) for d in _distributions(weightwise)]
    theirs = [_config(d, _kernel(keras)) for d in _distributions(keras)]
    assert ours == theirs
    assert {c["replicas"] for c in ours} == {8, 2, 4} and ours[2]["variable"] == (None, "model")


def test_a_2d_mesh_given_to_data_parallel_warns_as_keras_means_to() -> None:
    keras = keras_or_skip()
    with pytest.warns(UserWarning, match="Expect the input mesh to be 1D, but received mesh.devices.ndim=2"):
        data_parallel = D.DataParallel(device_mesh=D.DeviceMesh((2, 4), ["a", "b"], CPUS))
    assert (data_parallel.batch_dim_name, data_parallel.num_model_replicas) == ("a", 8)
    # Keras 3.15.1 passes the warning's argument where warnings.warn expects a category.
    with pytest.raises(TypeError, match="category must be a Warning subclass"):
        keras.distribution.DataParallel(device_mesh=keras.distribution.DeviceMesh((2, 4), ["a", "b"], CPUS))


def test_tensor_layouts_and_meshes_equal_keras() -> None:
    keras = keras_or_skip()
    for lib in (weightwise, keras):
        mesh = lib.distribution.DeviceMesh((4, 2), ["batch", "model"], CPUS)
        layout = lib.distribution.TensorLayout(["model", None])
        assert layout.axes == ("model", None) and layout.device_mesh is None
        layout.device_mesh = mesh
        assert layout.device_mesh is mesh and mesh.devices.shape == (4, 2) and mesh.devices[3, 1] == "cpu:7"
        assert repr(mesh) == "<DeviceMesh shape=(4, 2), axis_names=['batch', 'model']>"


# --- validation: Keras's own checks give Keras's errors; ours name the argument -----------------------


KERAS_ERRORS = [
    (lambda d: d.DeviceMesh((4,), "", CPUS[:4]), "Shape and axis_names cannot be empty"),
    (lambda d: d.DeviceMesh((4, 2), ["batch"], CPUS[:4]), "Shape and axis_names should have same size"),
    (lambda d: d.DeviceMesh((4, 2), ["batch", "model"], CPUS[:4]), "Shape does not match the number of devices"),
    (lambda d: d.TensorLayout(["data", None], d.DeviceMesh((4, 2), ["batch", "model"], CPUS)),
     "Invalid axis names for Layout"),
    (lambda d: setattr(d.TensorLayout(["data"]), "device_mesh", d.DeviceMesh((8,), ["batch"], CPUS)),
     "Invalid axis names for Layout"),
    (lambda d: setattr(d.TensorLayout(["batch"], d.DeviceMesh((8,), ["batch"], CPUS)), "device_mesh",
                       d.DeviceMesh((8,), ["batch"], CPUS)), "Cannot override device mesh value"),
    (lambda d: d.LayoutMap(d.DeviceMesh((8,), ["m"], CPUS)).__setitem__("conv.kernel", ["a", "b"]),
     "should be a TensorLayout"),
    (lambda d: d.ModelParallel(), "You must specify a layout_map argument"),
    (lambda d: d.ModelParallel(layout_map={"a": ("b",)}), "must be a `LayoutMap` instance"),
    (lambda d: d.DataParallel(device_mesh="mesh"), "Expect `mesh` to be an instance of `DeviceMesh`"),
]


@pytest.mark.parametrize(("make", "message"), KERAS_ERRORS, ids=[m for _, m in KERAS_ERRORS])
def test_keras_checks_give_keras_errors(make: Any, message: str) -> None:
    keras = keras_or_skip()
    for lib in (D, keras.distribution):
        with pytest.raises(ValueError, match=re.escape(message)):
            make(lib)


def test_a_key_set_twice_is_refused_as_in_keras() -> None:
    keras = keras_or_skip()
    for lib in (D, keras.distribution):
        layout_map = lib.LayoutMap(lib.DeviceMesh((8,), ["model"], CPUS))
        layout_map["dense/kernel"] = (None, "model")
        with pytest.raises(ValueError, match="dense/kernel already exist"):
            layout_map["dense/kernel"] = (None, "model")


OUR_ERRORS = [
    (lambda: D.DeviceMesh((0, 2), ["a", "b"], []), ValueError, "`shape`: expected a tuple of positive ints"),
    (lambda: D.DeviceMesh((2,), [3], CPUS[:2]), ValueError, "`axis_names`: expected a list of non-empty strings"),
    (lambda: D.DeviceMesh((2, 1), ["a", "a"], CPUS[:2]), ValueError, "`axis_names`: expected distinct names"),
    (lambda: D.DeviceMesh((2,), ["a"], ["cpu:0", "cpu0"]), ValueError, "Received: device='cpu0'"),
    (lambda: D.DeviceMesh((2,), ["a"], ["cpu:0", 1]), TypeError, "Received: device=1"),
    (lambda: D.DeviceMesh((2,), ["a"], ["cpu:0", "gpu:1"]), ValueError, "expected devices of one type"),
    (lambda: D.DeviceMesh((2,), ["a"], ["cpu:1", "cpu:1"]), ValueError, "expected each device once"),
    (lambda: D.TensorLayout("model"), TypeError, "Received: axes='model'"),
    (lambda: D.TensorLayout((None, 1)), ValueError, "Received: axes=(None, 1)"),
    (lambda: D.TensorLayout(("m", "m")), ValueError, "each mesh axis named at most once"),
    (lambda: D.TensorLayout(("m",), device_mesh="mesh"), TypeError, "Received: device_mesh='mesh'"),
    (lambda: D.LayoutMap("mesh"), TypeError, "Received: device_mesh='mesh'"),
    (lambda: D.LayoutMap(None).__setitem__("dense/(kernel", ("m",)), ValueError, "not a valid regular expression"),
    (lambda: D.LayoutMap(None).__setitem__(3, ("m",)), TypeError, "Received: key=3"),
    (lambda: D.LayoutMap(None)[3], TypeError, "Received: key=3"),
    (lambda: D.DataParallel(device_mesh=D.DeviceMesh((1,), ["b"], ["cpu:0"]), devices=["cpu:0"]), ValueError,
     "`device_mesh` or `devices`, not both"),
    (lambda: D.DataParallel(devices=[]), ValueError, "expected a non-empty list of devices"),
    (lambda: D.DataParallel(devices=["cpu:0"], auto_shard_dataset="yes"), ValueError, "auto_shard_dataset='yes'"),
    (lambda: D.ModelParallel(layout_map=D.LayoutMap(None)), ValueError, "must have a device mesh"),
    (lambda: D.ModelParallel(layout_map=D.LayoutMap(D.DeviceMesh((2, 2, 2), ["a", "b", "c"], CPUS))), ValueError,
     "has 3 axes"),
    (lambda: D.ModelParallel(layout_map=D.LayoutMap(D.DeviceMesh((8,), ["m"], CPUS)), batch_dim_name="batch"),
     ValueError, "Received: batch_dim_name='batch'"),
    (lambda: D.ModelParallel(layout_map=D.LayoutMap(D.DeviceMesh((8,), ["m"], CPUS)), mesh=1), TypeError,
     "unexpected keyword arguments: ['mesh']"),
    (lambda: D.set_distribution("data_parallel"), TypeError, "Received: value='data_parallel'"),
    (lambda: D.list_devices("npu"), ValueError, "Received: device_type='npu'"),
    (lambda: D.initialize(num_processes=0), ValueError, "Received: num_processes=0"),
    (lambda: D.initialize(num_processes=2, process_id=2), ValueError, "Received: process_id=2"),
    (lambda: D.initialize(job_addresses="10.0.0.1:port", num_processes=2, process_id=0), ValueError,
     "Received: job_addresses='10.0.0.1:port'"),
    (lambda: D.initialize(num_processes=2, process_id=1), ValueError, "needs the address of process 0"),
    (lambda: D.initialize(), ValueError, "needs the number of processes"),
    (lambda: D.distribute_tensor(torch.ones(2), ("batch",)), TypeError, "Received: layout=('batch',)"),
    (lambda: D.distribute_tensor(torch.ones(2), D.TensorLayout(("batch",))), ValueError, "needs a device mesh"),
    (lambda: D.distribute_tensor([1.0], D.TensorLayout(("b",), D.DeviceMesh((1,), ["b"], ["cpu:0"]))), TypeError,
     "Received: tensor=[1.0]"),
    (lambda: D.distribute_tensor(torch.ones(2, 2), D.TensorLayout(("b",), D.DeviceMesh((1,), ["b"], ["cpu:0"]))),
     ValueError, "names 1 dimensions, but the tensor has 2"),
]


@pytest.mark.parametrize(("make", "error", "message"), OUR_ERRORS, ids=[m for _, _, m in OUR_ERRORS])
def test_bad_arguments_are_refused_clearly(make: Any, error: type[Exception], message: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "KERAS_DISTRIBUTION_JOB_ADDRESSES",
                 "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(error, match=re.escape(message)):
        make()
    assert not torch.distributed.is_initialized()


# --- the current distribution --------------------------------------------------------------------------


def test_scopes_nest_and_set_distribution_is_per_thread() -> None:
    outer, inner = D.DataParallel(devices=["cpu:0"]), D.DataParallel(devices=["cpu:0"])
    assert D.distribution() is None
    D.set_distribution(outer)
    with inner.scope():
        assert D.distribution() is inner
        with pytest.raises(RuntimeError), outer.scope():
            assert D.distribution() is outer
            raise RuntimeError
        assert D.distribution() is inner
        seen = []
        thread = threading.Thread(target=lambda: seen.append(D.distribution()))
        thread.start()
        thread.join()
        assert seen == [None]
    assert D.distribution() is outer
    D.set_distribution(None)
    assert D.distribution() is None


def test_devices_of_one_process() -> None:
    assert D.list_devices("cpu") == ["cpu:0"] and D.get_device_count("CPU") == 1
    assert D.list_devices("tpu") == [] and D.get_device_count("tpu") == 0
    assert D.list_devices() == (D.list_devices("gpu") if torch.cuda.is_available() else ["cpu:0"])
    assert D.DataParallel().device_mesh.shape == (D.get_device_count(),)


def test_devices_announced_by_torchrun_before_the_group_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert D.list_devices("cpu") == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    data_parallel = D.DataParallel(devices=D.list_devices("cpu"))
    assert (data_parallel.num_processes, data_parallel.data_shard_id, data_parallel.num_model_replicas) == (4, 3, 4)
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(ValueError, match="WORLD_SIZE must hold an int"):
        D.list_devices("cpu")


def test_initialize_starts_a_group_of_one_process_and_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")
    D.initialize()
    try:
        assert torch.distributed.get_world_size() == 1 and D.list_devices("cpu") == ["cpu:0"]
        D.initialize(num_processes=1, process_id=0)  # already up: nothing to do
        with pytest.raises(ValueError, match="already initialized with process_id=0"):
            D.initialize(process_id=1)
        mesh = D.DataParallel(devices=["cpu:0"]).torch_mesh()
        assert mesh.mesh.tolist() == [0] and mesh.mesh_dim_names == ("batch",)
    finally:
        torch.distributed.destroy_process_group()


def test_distribute_tensor_of_one_process_keeps_the_tensor() -> None:
    layout = D.TensorLayout(("batch", None), D.DeviceMesh((1,), ["batch"], ["cpu:0"]))
    tensor = torch.ones(2, 3)
    assert D.distribute_tensor(tensor, layout) is tensor
    symbolic = weightwise.Input((3,))
    assert D.distribute_tensor(symbolic, layout) is symbolic


# --- shard_placement_fn on weightwise models -------------------------------------------------------------


class _Mixed(weightwise.Model):
    """A subclassed model holding a weightwise layer and a plain torch module."""

    def __init__(self) -> None:
        super().__init__(name="mixed")
        self.dense = weightwise.layers.Dense(4, name="proj")
        self.linear = torch.nn.Linear(4, 6)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dense(x))


def _model_parallel(shape: tuple[int, ...], names: list[str], layouts: dict[str, Any], **kwargs: Any) -> Any:
    mesh = D.DeviceMesh(shape, names, devices=CPUS[: int(np.prod(shape))])
    layout_map = D.LayoutMap(mesh)
    for key, layout in layouts.items():
        layout_map[key] = layout
    return D.ModelParallel(layout_map=layout_map, **kwargs)


def _conv_model() -> Any:
    layers = weightwise.layers
    return weightwise.Sequential([weightwise.Input((8, 8, 3)), layers.Conv2D(4, 3, name="conv"), layers.Flatten(),
                                  layers.Dense(6, name="head"), layers.Embedding(10, 4, name="emb")])


def test_shard_placement_fn_shards_the_dimension_each_layout_names() -> None:
    from torch.distributed.tensor import Shard

    model = _conv_model()
    mp = _model_parallel((2,), ["model"], {".*head/kernel": (None, "model"), ".*head/bias": ("model",),
                                           ".*conv/kernel": (None, None, None, "model"), ".*emb.*": (None, None)})
    fn = mp.shard_placement_fn(model)
    conv, head, emb = model.layers[0], model.layers[2], model.layers[3]
    assert tuple(head.kernel.shape) == (6 * 6 * 4, 6)  # Keras's (in, out)
    assert fn(head.kernel) == Shard(1) and fn(head.bias) == Shard(0) and fn(conv.kernel) == Shard(3)
    assert fn(conv.bias) is None and fn(emb.embeddings) is None and fn(torch.nn.Parameter(torch.ones(2))) is None
    mixed = _Mixed()
    mixed(torch.ones(2, 4))
    on_2d = _model_parallel((1, 2), ["batch", "model"], {"mixed/proj/kernel": ("model", None), "linear/weight":
                                                           (None, "model")})
    fn = on_2d.shard_placement_fn(mixed)
    assert fn(mixed.dense.kernel) == Shard(0) and fn(mixed.linear.weight) == Shard(1) and fn(mixed.linear.bias) is None


FSDP_REFUSALS = [
    ({".*head/kernel": ("batch", "model")}, (2, 2), ["batch", "model"], "shards 2 dimensions"),
    ({".*head/kernel": D.TensorLayout((None, "x"), D.DeviceMesh((2,), ["x"], CPUS[:2]))}, (2,), ["model"],
     "names ['x'], which are not axes"),
    ({".*head/kernel": ("model",)}, (2,), ["model"], "one mesh axis or None for each of its 2 dimensions"),
    ({".*head/kernel": ("batch", None)}, (2, 2), ["batch", "model"], "shards over the batch axis 'batch'"),
    ({".*head/kernel": (None, "model")}, (4,), ["model"], "of size 6 over the 4 devices"),
    ({".*head/kernel": (None, "model"), "sequential.*/head/kernel": (None, "model")}, (2,), ["model"],
     "matches multiple layout"),
]


@pytest.mark.parametrize(("layouts", "shape", "names", "message"), FSDP_REFUSALS, ids=[m for *_, m in FSDP_REFUSALS])
def test_shard_placement_fn_refuses_what_fsdp2_cannot_do(layouts: dict[str, Any], shape: tuple[int, ...],
                                                        names: list[str], message: str) -> None:
    model = _conv_model()
    mp = _model_parallel(shape, names, layouts)
    with pytest.raises(ValueError, match=re.escape(message)):
        mp.shard_placement_fn(model)
    with pytest.raises(TypeError, match="Received: model="):
        mp.shard_placement_fn("model")


# --- on 2 gloo ranks ----------------------------------------------------------------------------------------


def _model() -> Any:
    weightwise.utils.set_random_seed(0)
    layers = weightwise.layers
    return weightwise.Sequential([weightwise.Input((3,)), layers.Dense(6, name="hidden"),
                                  layers.Dense(4, name="mid", activation="relu"), layers.Dense(2, name="out")])


LAYOUTS = {".*hidden/kernel": (None, "model"), ".*hidden/bias": ("model",), ".*mid/kernel": ("model", None),
           ".*mid/bias": (None,)}


def _fsdp_run(mp: Any, x: torch.Tensor) -> dict[str, Any]:
    """Shard a copy of the model as ``mp`` says; its placements, local shapes, output and gradients vs unsharded."""
    from torch.distributed.fsdp import fully_shard

    reference, model = _model(), _model()
    expected = reference(x)
    expected.square().sum().backward()
    fully_shard(model, mesh=mp.torch_mesh(), shard_placement_fn=mp.shard_placement_fn(model))
    output = model(x)
    output.square().sum().backward()
    return {
        "placements": {name: [repr(p) for p in param.placements] for name, param in model.named_parameters()},
        "local": {name: tuple(param.to_local().shape) for name, param in model.named_parameters()},
        "mesh": (mp.torch_mesh().mesh.tolist(), mp.torch_mesh().mesh_dim_names),
        "output": (output - expected).abs().max().item(),
        "grads": max((p.grad.full_tensor() - r.grad).abs().max().item()
                     for p, r in zip(model.parameters(), reference.parameters())),
    }


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor
    from torch.nn.parallel import DistributedDataParallel

    # As torchrun leaves it: the variables set, the group not yet up; initialize() starts it.
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    D.initialize()
    try:
        out: dict[str, Any] = {"world": dist.get_world_size(), "devices": D.list_devices()}
        try:
            D.initialize(num_processes=3)
        except ValueError as error:
            out["reinit"] = str(error)
        try:
            D.DataParallel(devices=["cpu:0"]).torch_mesh()
        except ValueError as error:
            out["small_mesh"] = str(error)

        x = torch.linspace(-1, 1, 8 * 3).reshape(8, 3)
        data_parallel = D.DataParallel()
        mesh = data_parallel.torch_mesh()
        out["ddp_mesh"] = (mesh.mesh.tolist(), mesh.mesh_dim_names)
        reference, model = _model(), _model()
        reference(x).square().mean().backward()
        ddp = DistributedDataParallel(model, device_mesh=mesh)
        ddp(x[rank * 4:(rank + 1) * 4]).square().mean().backward()
        out["ddp_grads"] = max((p.grad - r.grad).abs().max().item()
                               for p, r in zip(model.parameters(), reference.parameters()))

        runs = {"1d": _model_parallel((2,), ["model"], LAYOUTS),
                "2d": _model_parallel((1, 2), ["batch", "model"], LAYOUTS),
                "2d_batch_last": _model_parallel((2, 1), ["model", "batch"], LAYOUTS, batch_dim_name="batch")}
        for key, mp in runs.items():
            out[key] = _fsdp_run(mp, x)

        tensor = torch.arange(12.0).reshape(3, 4)
        layout = D.TensorLayout((None, "model"), D.DeviceMesh((2,), ["model"]))
        distributed = D.distribute_tensor(tensor, layout)
        again = D.distribute_tensor(distributed, D.TensorLayout(("model", None), layout.device_mesh))
        out["distribute"] = (isinstance(distributed, DTensor), [repr(p) for p in distributed.placements],
                             tuple(distributed.to_local().shape), torch.equal(distributed.full_tensor(), tensor),
                             [repr(p) for p in again.placements], torch.equal(again.full_tensor(), tensor))
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_torch_meshes_and_placements_on_two_gloo_ranks(tmp_path: Path) -> None:
    run_ranks(_worker, str(tmp_path), timeout=120)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    for out in results:
        assert out["world"] == 2 and out["devices"] == ["cpu:0", "cpu:1"]
        assert "already initialized with num_processes=2" in out["reinit"]
        assert "holds the devices [0], but the process group has 2 ranks" in out["small_mesh"]
        assert out["ddp_mesh"] == ([0, 1], ("batch",)) and out["ddp_grads"] < 1e-6
        shard = {"0.kernel": 1, "0.bias": 0, "1.kernel": 0, "1.bias": 0, "2.kernel": 0, "2.bias": 0}
        local = {"0.kernel": (3, 3), "0.bias": (3,), "1.kernel": (3, 4), "1.bias": (2,), "2.kernel": (2, 2),
                 "2.bias": (1,)}
        assert out["1d"]["placements"] == {name: [f"Shard(dim={d})"] for name, d in shard.items()}
        for key in ("2d", "2d_batch_last"):
            assert out[key]["placements"] == {name: ["Replicate()", f"Shard(dim={d})"] for name, d in shard.items()}
            assert out[key]["mesh"] == ([[0, 1]], ("batch", "model"))
        assert out["1d"]["mesh"] == ([0, 1], ("model",))
        for key in ("1d", "2d", "2d_batch_last"):
            assert out[key]["local"] == local
            assert out[key]["output"] < 1e-6 and out[key]["grads"] < 1e-5
        assert out["distribute"] == (True, ["Shard(dim=1)"], (3, 2), True, ["Shard(dim=0)"], True)
