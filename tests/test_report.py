"""report(model), projection records and RegularizationMonitor, checked against NumPy recounts."""

from __future__ import annotations

import copy
import csv
import importlib
import math

import numpy as np
import pytest
import torch

import weightwise
from weightwise import binding, constraints, engine, layers, regularizers
from weightwise.callbacks import CSVLogger, RegularizationMonitor

report_module = importlib.import_module("weightwise.report")
EPS = 1e-7


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).numpy()


def _unit_norms(w: np.ndarray, axis) -> np.ndarray:
    """Each unit's 2-norm, the units being what ``axis`` (the reduced axes) leaves."""
    return np.sqrt(np.sum(w ** 2, axis=tuple(np.atleast_1d(axis)) if axis is not None else None))


# --------------------------------------------------------------------------- penalties


def test_penalties_equal_numpy_on_keras_layers() -> None:
    torch.manual_seed(0)
    model = weightwise.Sequential([
        layers.Input(shape=(3,)),
        layers.Dense(4, kernel_regularizer=regularizers.L1(0.03), bias_regularizer=regularizers.L2(0.2), name="a"),
        layers.Dense(2, kernel_regularizer=regularizers.L1L2(0.01, 0.05), activity_regularizer=regularizers.L1(0.1),
                     name="b"),
    ])
    x = torch.randn(5, 3)
    with torch.no_grad():
        model.layers[0].bias.copy_(torch.tensor([1.0, -2.0, 0.5, 0.0]))
        out = model(x)
    table = weightwise.report(model)
    a_kernel, a_bias, b_kernel = (_np(model.layers[0].kernel), _np(model.layers[0].bias), _np(model.layers[1].kernel))
    assert table["a.kernel"].penalty == pytest.approx(0.03 * np.abs(a_kernel).sum(), rel=1e-6)
    assert table["a.bias"].penalty == pytest.approx(0.2 * (a_bias ** 2).sum(), rel=1e-6)
    assert table["b.kernel"].penalty == pytest.approx(
        0.01 * np.abs(b_kernel).sum() + 0.05 * (b_kernel ** 2).sum(), rel=1e-6)
    assert table["b (output)"].penalty == pytest.approx(0.1 * np.abs(_np(out)).sum() / 5, rel=1e-6)
    assert [row.name for row in table] == ["a.kernel", "a.bias", "b.kernel", "b (output)"]
    assert [row.layer for row in table] == ["a", "a", "b", "b"]
    assert table["a.kernel"].shape == (3, 4) and table["a.kernel"].trainable is True
    # The rules as their repr; a weight without a constraint has no projection columns.
    assert table["b.kernel"].regularizer == "L1L2(l1=0.01, l2=0.05)"
    assert table["a.kernel"].constraint is None and table["a.kernel"].hits is None


def test_penalties_on_a_torch_model_with_custom_and_orthogonal_regularizers() -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    weightwise.regularize(model, {"0.weight": regularizers.OrthogonalRegularizer(0.3),
                                  "2.weight": lambda w: 2.0 * w.abs().max()})
    weightwise.regularize_activity(model[2], regularizers.L2(0.5))
    x = torch.randn(6, 3)
    out = model(x)
    table = weightwise.report(model)
    assert table["2.weight"].penalty == pytest.approx(2.0 * np.abs(_np(model[2].weight)).max(), rel=1e-6)
    w = _np(model[0].weight)  # rows mode: normalize rows, mean |off-diagonal| of the Gram matrix, times factor/2
    n = w / np.linalg.norm(w, axis=1, keepdims=True)
    gram = np.abs(n @ n.T) * (1 - np.eye(4))
    assert table["0.weight"].penalty == pytest.approx(0.3 * 0.5 * gram.sum() / (4 * 3 / 2), rel=1e-5)
    assert table["2 (output)"].penalty == pytest.approx(0.5 * (_np(out) ** 2).sum() / 6, rel=1e-6)
    assert [row.layer for row in table] == ["0", "2", "2"]


def test_an_activity_row_before_any_call_has_no_penalty_and_add_loss_is_not_counted() -> None:
    layer = layers.Dense(2, activity_regularizer="l2")
    layer.build((None, 3))
    assert weightwise.report(layer)[f"{layer.name} (output)"].penalty is None
    layer(torch.ones(4, 3))
    layer.add_loss(torch.tensor(100.0))
    row = weightwise.report(layer).rows[-1]
    assert row.kind == "activity" and row.penalty < 100.0


# --------------------------------------------------------------------------- projection records


def _bind_and_project(module: torch.nn.Module, name: str, constraint, value: torch.Tensor) -> np.ndarray:
    binding.bind(module, name, constraint=constraint)
    with torch.no_grad():
        getattr(module, name).copy_(value)
    before = _np(getattr(module, name)).copy()
    return before


@pytest.mark.parametrize("count", [1, 3])  # a lone weight goes in as a view; several are stacked
def test_max_norm_counts_equal_a_numpy_recount(count) -> None:
    torch.manual_seed(2)
    model = torch.nn.Sequential(*[torch.nn.Linear(5, 6) for _ in range(count)])
    weightwise.report.track(model)
    befores = [_bind_and_project(m, "weight", constraints.MaxNorm(1.5, axis=1), 0.9 * torch.randn(6, 5))
               for m in model]
    weightwise.apply_constraints(model)
    for i, before in enumerate(befores):
        norms = _unit_norms(before, 1)
        stats = engine.last_projection(model[i], "weight")
        assert int(stats.hits) == int((norms > 1.5).sum()) and 0 < int(stats.hits) < 6
        assert stats.units == 6
        assert float(stats.largest) == pytest.approx(norms.max(), rel=1e-6)
        row = weightwise.report(model)[f"{i}.weight"]
        assert (row.hits, row.units) == (int((norms > 1.5).sum()), 6)
        assert row.largest_norm == pytest.approx(norms.max(), rel=1e-6)
        assert row.bound_rate == pytest.approx((norms > 1.5).mean())
        # The projection itself happened as before.
        assert np.allclose(_np(model[i].weight), before * np.minimum(norms, 1.5)[:, None] / (EPS + norms[:, None]),
                           rtol=1e-5)


def test_conv_kernel_per_filter_and_min_max_and_unit_norm() -> None:
    torch.manual_seed(3)
    conv = layers.Conv2D(4, 3, kernel_constraint=constraints.MinMaxNorm(0.8, 1.2, rate=0.5, axis=[0, 1, 2]))
    conv.build((None, 5, 5, 2))
    dense = layers.Dense(7, kernel_constraint=constraints.UnitNorm(axis=0))
    dense.build((None, 3))
    model = torch.nn.ModuleList([conv, dense])
    weightwise.report.track(model)
    kernel = torch.randn(3, 3, 2, 4) * torch.tensor([0.05, 0.3, 0.2, 0.01])
    with torch.no_grad():
        conv.kernel.copy_(kernel)
        dense.kernel.copy_(torch.randn(3, 7))
        dense.kernel[:, 2] = torch.tensor([0.6, 0.8, 0.0])  # norm 1 exactly (in float32, 1.0000000)
    conv_before, dense_before = _np(conv.kernel), _np(dense.kernel)
    weightwise.apply_constraints(model)
    norms = _unit_norms(conv_before, (0, 1, 2))
    stats = engine.last_projection(conv, "kernel")
    assert (int(stats.hits), stats.units) == (int(((norms < 0.8) | (norms > 1.2)).sum()), 4)
    assert float(stats.largest) == pytest.approx(norms.max(), rel=1e-6)
    unit = engine.last_projection(dense, "kernel")
    dense_norms = np.sqrt((dense_before.astype(np.float32) ** 2).sum(0, dtype=np.float32))
    assert unit.units == 7 and int(unit.hits) == int((dense_norms != 1.0).sum())
    rows = weightwise.report(model)
    assert rows[f"{conv.name}.kernel"].layer == conv.name


def test_non_neg_counts_negative_entries() -> None:
    linear = torch.nn.Linear(4, 3)
    weightwise.report.track(linear)
    value = torch.tensor([[1.0, -2.0, 0.0, -0.0], [-0.5, 3.0, 2.0, 1.0], [0.1, 0.2, -7.0, 0.3]])
    before = _bind_and_project(linear, "weight", constraints.NonNeg(), value)
    weightwise.apply_constraints(linear)
    stats = engine.last_projection(linear, "weight")
    assert (int(stats.hits), stats.units) == (int((before < 0).sum()), 12) == (3, 12)
    assert float(stats.largest) == np.abs(before).max() == 7.0


def test_half_precision_and_custom_constraints_are_recorded_outside_the_groups() -> None:
    torch.manual_seed(4)
    half = torch.nn.Linear(4, 3).half()
    weightwise.report.track(half)
    before = _bind_and_project(half, "weight", constraints.MaxNorm(1.0, axis=1), torch.randn(3, 4).half() * 2)
    custom = torch.nn.Linear(4, 3)
    weightwise.report.track(custom)
    clip = _bind_and_project(custom, "weight", lambda w: w.clamp(-0.5, 0.5), torch.randn(3, 4))
    weightwise.apply_constraints(half)
    weightwise.apply_constraints(custom)
    norms = _unit_norms(before, 1)
    stats = engine.last_projection(half, "weight")
    assert (int(stats.hits), stats.units) == (int((norms > 1.0).sum()), 3)
    assert float(stats.largest) == pytest.approx(norms.max(), rel=1e-3)
    changed = engine.last_projection(custom, "weight")
    assert (int(changed.hits), changed.units, changed.largest) == (int((np.abs(clip) > 0.5).sum()), 12, None)


def test_a_constraint_may_say_what_its_units_are() -> None:
    class RowCap(constraints.Constraint):
        """Caps each row's largest entry at 1; a unit is a row."""

        def __call__(self, w):
            return w.clamp(max=1.0)

        def projection_stats(self, w):
            peaks = w.amax(dim=1)
            return (peaks > 1.0).sum(), w.shape[0], peaks.max()

    linear = torch.nn.Linear(3, 4)
    weightwise.report.track(linear)
    before = _bind_and_project(linear, "weight", RowCap(), torch.tensor(
        [[0.5, 2.0, 0.0], [0.1, 0.2, 0.3], [3.0, 3.0, -1.0], [0.0, 0.0, 0.0]]))
    weightwise.apply_constraints(linear)
    stats = engine.last_projection(linear, "weight")
    assert (int(stats.hits), stats.units, float(stats.largest)) == (int((before.max(1) > 1).sum()), 4, 3.0) == (2, 4, 3.0)


def test_a_scheduled_bound_is_read_at_the_step_of_the_projection() -> None:
    linear = torch.nn.Linear(2, 4)
    weightwise.report.track(linear)
    value = torch.tensor([[0.3, 0.4], [0.9, 1.2], [1.5, 2.0], [2.1, 2.8]])  # row norms 0.5, 1.5, 2.5, 3.5
    _bind_and_project(linear, "weight", constraints.MaxNorm(lambda step: 1.0 + step, axis=1), value)
    for step, hits in ((0, 3), (2, 1)):
        with torch.no_grad():
            linear.weight.copy_(value)
        with weightwise.clock.at_step(step):
            weightwise.apply_constraints(linear)
        assert int(engine.last_projection(linear, "weight").hits) == hits


def test_spectral_norm_reports_one_unit_the_matrix_and_its_estimated_sigma() -> None:
    torch.manual_seed(7)
    linear = torch.nn.Linear(3, 3)
    weightwise.report.track(linear)
    value = 3 * torch.eye(3) + 0.1  # singular values 3.3, 3, 3
    before = _bind_and_project(linear, "weight", constraints.SpectralNorm(0.5, power_iterations=30), value)
    with torch.no_grad():
        linear.weight.copy_(value)
    weightwise.apply_constraints(linear)
    stats = engine.last_projection(linear, "weight")
    sigma = np.linalg.svd(before, compute_uv=False)[0]
    assert (int(stats.hits), stats.units) == (1, 1)
    assert float(stats.largest) == pytest.approx(sigma, rel=1e-4)
    assert weightwise.report(linear)["weight"].bound_rate == 1.0


def test_only_projected_weights_are_recorded_and_records_are_replaced() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    weightwise.constrain(model, {"*.weight": constraints.MaxNorm(1.0)})
    weightwise.report.track(model)
    with torch.no_grad():
        model[0].weight.fill_(3.0)
        model[1].weight.fill_(3.0)
    model[0].weight.grad = torch.zeros(2, 2)
    weightwise.apply_constraints(model, only_with_grad=True)
    assert int(engine.last_projection(model[0], "weight").hits) == 2
    assert engine.last_projection(model[1], "weight") is None
    weightwise.apply_constraints(model)  # now within the bound: the new record says so
    assert int(engine.last_projection(model[0], "weight").hits) == 0
    assert weightwise.report(model)["1.weight"].bound_rate == 1.0


def test_untracked_projections_record_nothing_and_run_no_recording_code(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("recording code ran on an untracked plan")

    for name in ("_record_norms", "_record_non_neg", "_record_other"):
        monkeypatch.setattr(engine, name, refuse)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).half(), torch.nn.Linear(2, 2))
    weightwise.constrain(model, {"0.weight": "max_norm", "1.weight": "max_norm", "2.weight": "non_neg",
                                 "2.bias": lambda w: w * 0.5})
    assert not engine.plan_for(model).tracked
    weightwise.apply_constraints(model)
    row = weightwise.report(model)["0.weight"]
    assert (row.hits, row.units, row.largest_norm) == (None, None, None)
    assert str(weightwise.report(model)).splitlines()[1].split()[-3:] == ["-", "-", "-"]


def test_tracking_switches_off_and_survives_copies_without_its_records() -> None:
    linear = torch.nn.Linear(2, 2)
    binding.bind(linear, "weight", constraint=constraints.MaxNorm(1.0, axis=1))
    weightwise.report.track(linear)
    weightwise.apply_constraints(linear)
    assert engine.last_projection(linear, "weight") is not None
    twin = copy.deepcopy(linear)
    assert engine.last_projection(twin, "weight") is None  # the copy records its own projections
    weightwise.apply_constraints(twin)
    assert engine.last_projection(twin, "weight") is not None
    weightwise.report.track(linear, on=False)
    assert engine.last_projection(linear, "weight") is None and not engine.plan_for(linear).tracked


# --------------------------------------------------------------------------- the table and the data


def test_the_table_is_aligned_and_the_data_is_plain() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    weightwise.regularize(model, {"0.weight": regularizers.L2(0.5), "1.*": regularizers.L1(0.25)})
    weightwise.constrain(model, {"0.weight": constraints.MaxNorm(1.0)})
    weightwise.regularize_activity(model[1], regularizers.L1(1.0))
    weightwise.report.track(model)
    model[1].weight.requires_grad_(False)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.5]]))
        model[1].weight.fill_(1.0)
        model[1].bias.fill_(-2.0)
    weightwise.apply_constraints(model)
    table = weightwise.report(model)
    assert str(table).splitlines() == [
        "name        shape   trainable  regularizer  penalty  decay  constraint                      hits  units  largest norm",
        "0.weight    (2, 2)  yes        L2(l2=0.5)   0.625    -      MaxNorm(max_value=1.0, axis=1)  1     2      5",
        "1.weight    (1, 2)  no         L1(l1=0.25)  0.5      -      -                               -     -      -",
        "1.bias      (1,)    yes        L1(l1=0.25)  0.5      -      -                               -     -      -",
        "1 (output)  -       -          L1(l1=1.0)   -        -      -                               -     -      -",
    ]
    assert repr(table) == str(table)
    data = table.to_dict()
    assert list(data) == ["0.weight", "1.weight", "1.bias", "1 (output)"]
    assert data["0.weight"] == {
        "layer": "0", "kind": "weight", "shape": (2, 2), "trainable": True, "regularizer": "L2(l2=0.5)",
        "penalty": pytest.approx(0.625), "decay": None, "decay_mode": None, "constraint": "MaxNorm(max_value=1.0, axis=1)", "hits": 1,
        "units": 2, "largest_norm": 5.0, "bound_rate": 0.5,
    }
    for fields in data.values():
        assert all(isinstance(v, (str, int, float, tuple, type(None))) for v in fields.values())
    with pytest.raises(KeyError, match="no row named 'nope'"):
        table["nope"]


def test_keras_names_follow_the_outermost_layer() -> None:
    model = weightwise.Sequential([
        layers.Input(shape=(4, 3)),
        layers.Bidirectional(layers.LSTM(2, kernel_constraint="max_norm"), name="bi"),
    ])
    names = [row.name for row in weightwise.report(model)]
    assert names == ["bi.forward_layer.cell.kernel", "bi.backward_layer.cell.kernel"]
    assert {row.layer for row in weightwise.report(model)} == {"bi"}


@pytest.mark.parametrize("bad", [3, "model", None, [torch.nn.Linear(1, 1)]])
def test_bad_input_is_a_type_error_naming_the_argument(bad) -> None:
    with pytest.raises(TypeError, match=r"argument `model`.*Received: model="):
        weightwise.report(bad)
    with pytest.raises(TypeError, match=r"argument `module`.*Received: module="):
        weightwise.report.track(bad)
    with pytest.raises(TypeError, match=r"argument `model`.*Received: model="):
        RegularizationMonitor().logs(bad if bad is not None else 3)


def test_bad_monitor_arguments() -> None:
    with pytest.raises(ValueError, match=r"`per`.*Received: per='layers'"):
        RegularizationMonitor(per="layers")
    with pytest.raises(TypeError, match=r"`prefix`.*Received: prefix=1"):
        RegularizationMonitor(prefix=1)
    with pytest.raises(ValueError, match=r"`on`.*Received: on='yes'"):
        weightwise.report.track(torch.nn.Linear(1, 1), on="yes")
    with pytest.raises(TypeError, match=r"argument `model`.*Received: model=None"):
        RegularizationMonitor().logs()  # no model given and none set


def test_report_module_is_reachable_and_report_track_is_engine_track() -> None:
    assert report_module.report is weightwise.report
    assert weightwise.report.track is engine.track is report_module.track


# --------------------------------------------------------------------------- decay


def test_decay_comes_from_decay_records_and_from_the_optimizer() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    weightwise.regularize(model, {"1.weight": "l2"})
    # The record weightwise.decay keeps on each owning module: {attr: [(factor, mode), ...]}.
    model[0].__dict__["_weight_decays"] = {"weight": [(0.01, "decoupled"), (0.02, "decoupled")]}
    model[1].__dict__["_weight_decays"] = {"weight": [(lambda step: 0.001 * (step + 1), "l2")]}
    with weightwise.clock.at_step(4):
        table = weightwise.report(model)
    assert [row.name for row in table] == ["0.weight", "1.weight"]  # a decayed weight has a row, bias none
    assert (table["0.weight"].decay, table["0.weight"].decay_mode) == (pytest.approx(0.03), "decoupled")
    assert (table["1.weight"].decay, table["1.weight"].decay_mode) == (pytest.approx(0.005), "l2")
    assert "0.03 (decoupled)" in str(table)


def test_a_compiled_models_optimizer_weight_decay_shows_on_its_weights() -> None:
    model = weightwise.Sequential([layers.Input(shape=(2,)), layers.Dense(1, name="d")])
    model.compile(optimizer=weightwise.optimizers.AdamW(weight_decay=0.004), loss="mse")
    table = weightwise.report(model)
    assert {row.name: (row.decay, row.decay_mode) for row in table} == {
        "d.kernel": (0.004, "decoupled"), "d.bias": (0.004, "decoupled")}
    model.optimizer._use_weight_decay = lambda variable: variable is model.layers[0].kernel  # Keras's exclusion hook
    assert [row.name for row in weightwise.report(model)] == ["d.kernel"]


def test_the_decay_record_is_the_one_weightwise_decay_keeps() -> None:
    decay = pytest.importorskip("weightwise.decay")
    assert decay.DECAYS_ATTR == report_module._DECAYS_ATTR
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    handle = decay.decay(model, 0.05, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    table = weightwise.report(model)
    assert {row.name: (row.decay, row.decay_mode) for row in table} == {"0.weight": (0.05, "decoupled")}
    handle.remove()
    assert len(weightwise.report(model)) == 0


# --------------------------------------------------------------------------- the monitor


def _keras_model() -> weightwise.Model:
    torch.manual_seed(5)
    model = weightwise.Sequential([
        layers.Input(shape=(3,)),
        layers.Dense(8, kernel_regularizer=regularizers.L2(0.1), kernel_constraint=constraints.MaxNorm(0.3),
                     activity_regularizer=regularizers.L1(0.01), name="hidden"),
        layers.Dense(1, kernel_regularizer=regularizers.L1(0.05), bias_constraint=constraints.NonNeg(), name="out"),
    ])
    model.compile(optimizer=weightwise.optimizers.SGD(0.1), loss="mse")
    return model


def test_history_and_csv_logger_carry_the_monitor_keys(tmp_path) -> None:
    model = _keras_model()
    x, y = np.random.default_rng(0).normal(size=(32, 3)), np.random.default_rng(1).normal(size=(32, 1))
    path = tmp_path / "log.csv"
    # The logger stands before the monitor: the monitor still writes first.
    with torch.no_grad():
        model.layers[0].kernel.fill_(0.5)  # every unit's norm is 0.87, far above the 0.3 bound
    # One step per epoch: epoch 0's rate is that of the first projection.
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0,
                        callbacks=[CSVLogger(str(path)), RegularizationMonitor()])
    keys = {"penalty/hidden", "penalty/out", "activity_penalty/hidden", "bound_rate/hidden.kernel",
            "bound_rate/out.bias"}
    assert keys <= set(history.history)
    assert all(len(history.history[key]) == 3 for key in keys)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert keys <= set(rows[0]) and len(rows) == 3
    assert float(rows[-1]["penalty/hidden"]) == pytest.approx(history.history["penalty/hidden"][-1])
    # The last epoch's values are the penalties of the final weights, and the report's rate.
    hidden, out = model.layers
    assert history.history["penalty/hidden"][-1] == pytest.approx(0.1 * (_np(hidden.kernel) ** 2).sum(), rel=1e-6)
    assert history.history["penalty/out"][-1] == pytest.approx(0.05 * np.abs(_np(out.kernel)).sum(), rel=1e-6)
    rate = history.history["bound_rate/hidden.kernel"][-1]
    assert rate == weightwise.report(model)["hidden.kernel"].bound_rate and 0.0 <= rate <= 1.0
    assert history.history["bound_rate/hidden.kernel"][0] == 1.0


def test_monitor_per_parameter_with_a_prefix_on_a_hand_loop() -> None:
    torch.manual_seed(6)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    weightwise.regularize(model, {"0.weight": regularizers.L2(0.5), "0.bias": regularizers.L1(0.5),
                                  "2.weight": regularizers.L1(0.1)})
    weightwise.constrain(model, {"0.weight": constraints.MaxNorm(0.5)})
    weightwise.regularize_activity(model[2], regularizers.L2(1.0))
    monitor = RegularizationMonitor(per="parameter", prefix="reg/")
    before = monitor.logs(model)  # switches recording on: no projection yet
    assert math.isnan(before["reg/bound_rate/0.weight"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y) + weightwise.regularization_loss(model)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            w = _np(model[0].weight)
        weightwise.apply_constraints(model)
    logs = monitor.logs(model)
    assert set(logs) == {"reg/penalty/0.weight", "reg/penalty/0.bias", "reg/penalty/2.weight",
                         "reg/activity_penalty/2", "reg/bound_rate/0.weight"}
    assert logs["reg/penalty/0.weight"] == pytest.approx(0.5 * (_np(model[0].weight) ** 2).sum(), rel=1e-6)
    assert logs["reg/bound_rate/0.weight"] == pytest.approx((_unit_norms(w, 1) > 0.5).mean())
    by_layer = RegularizationMonitor().logs(model)
    assert by_layer["penalty/0"] == pytest.approx(logs["reg/penalty/0.weight"] + logs["reg/penalty/0.bias"])


def test_monitor_penalty_leaves_frozen_weights_out_but_keeps_the_key() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    weightwise.regularize(model, {"0.weight": regularizers.L2(1.0)})
    model[0].weight.requires_grad_(False)
    assert RegularizationMonitor().logs(model) == {"penalty/0": 0.0}
    assert weightwise.report(model)["0.weight"].penalty > 0  # the report still shows it


def test_tensorboard_carries_the_monitor_keys(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from weightwise.callbacks import TensorBoard

    model = _keras_model()
    x, y = np.random.default_rng(2).normal(size=(16, 3)), np.random.default_rng(3).normal(size=(16, 1))
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0,
                        callbacks=[TensorBoard(str(tmp_path), histogram_freq=0, write_graph=False),
                                   RegularizationMonitor(prefix="reg/")])
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"scalars": 0}).Reload()
    for key in ("reg/penalty/hidden", "reg/bound_rate/hidden.kernel", "reg/activity_penalty/hidden"):
        written = [(event.step, event.value) for event in events.Scalars(f"epoch_{key}")]
        assert written == [(0, pytest.approx(history.history[key][0])), (1, pytest.approx(history.history[key][1]))]
