"""``fit``/``evaluate``/``predict`` under a process group of 2 gloo ranks, against one process with the global batch.

Each rank trains with batch ``b`` on its part of every epoch; a one-process run with batch
``2b``, seeded as rank 0 is, sees the same global batches (the sampler is built so), and
DDP or FSDP2 averages the data gradients while every rank adds the full penalty once. So
the final weights, the History, and evaluate's and predict's results must equal the
one-process run's (to 1e-5), on every rank. Only rank 0 writes the CSV log and the
checkpoint, and every rank reads them back.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ranks import gloo, run_ranks
from torch.distributed.tensor import DTensor

import weightwise as ww
from tests.helpers import keras_or_skip, to_numpy
from weightwise import constraints, layers, regularizers
from weightwise.callbacks import CSVLogger, ModelCheckpoint, TensorBoard
from weightwise.utils import PyDataset

ROOT = Path(__file__).resolve().parents[1]
N, VAL, B, EPOCHS = 16, 7, 4, 2  # 16 samples, batch 4 on each of 2 ranks: 2 steps per epoch


def _data() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 5)).astype("float32")
    y = (x @ rng.normal(size=(5, 1)) + 0.1).astype("float32")
    vx = rng.normal(size=(VAL, 5)).astype("float32")
    vy = (vx @ rng.normal(size=(5, 1))).astype("float32")
    return x, y, vx, vy


def _model(kind: str = "sequential", distribute: str | None = None, seed: int = 0) -> ww.Model:
    torch.manual_seed(seed)
    rules = {"kernel_regularizer": regularizers.L2(0.05), "bias_regularizer": regularizers.L1(0.02),
                 "activity_regularizer": regularizers.L2(0.03), "kernel_constraint": constraints.MaxNorm(0.6),
                 "bias_constraint": constraints.NonNeg()}
    if kind == "sequential":
        model = ww.Sequential([layers.Input(shape=(5,)), layers.Dense(6, activation="tanh", name="hidden", **rules),
                               layers.Dense(1, kernel_regularizer=regularizers.L1L2(0.01, 0.02), name="out")])
    else:
        inputs = layers.Input(shape=(5,))
        hidden = layers.Dense(6, activation="tanh", name="hidden", **rules)(inputs)
        model = ww.Model(inputs, layers.Dense(1, kernel_constraint=constraints.NonNeg(), name="out")(hidden))
    model.compile(optimizer=ww.optimizers.SGD(0.1, momentum=0.5), loss="mse", metrics=["mae"],
                  distribute=distribute)
    return model


class _Batches(PyDataset):
    """Batch i holds samples [i b, (i + 1) b)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part], self.y[part]


def _train_source(form: str, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[dict, bool]:
    """fit's data arguments for ``form``, and whether it shuffles (a PyDataset keeps its order)."""
    if form == "arrays":
        return {"x": x, "y": y, "batch_size": batch_size}, True
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    if form == "dataset":
        return {"x": dataset, "batch_size": batch_size}, True
    if form == "loader":
        return {"x": torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)}, True
    return {"x": _Batches(x, y, batch_size)}, False


def _in_order(form: str, x: np.ndarray, y: np.ndarray, batch_size: int) -> object:
    """The training samples in their order, in ``form`` (predict's outputs come back in this order)."""
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    return {"arrays": x, "dataset": dataset, "loader": torch.utils.data.DataLoader(dataset, batch_size=batch_size),
            "pydataset": _Batches(x, y, batch_size)}[form]


def _full(weight: torch.Tensor) -> torch.Tensor:
    """The whole weight: an FSDP2 shard gathered from every rank."""
    if isinstance(weight, DTensor):
        weight = weight.full_tensor()
    return weight.detach().clone()


def _run(form: str, kind: str, batch_size: int, folder: Path, distribute: str | None = None, seed: int = 0) -> dict:
    """Fit, evaluate and predict; what every rank (or the one process) saw.

    On 2 ranks, rank 1 is seeded differently: its initial weights and its random generator
    must not matter (every rank starts from rank 0's weights and takes rank 0's epoch order).
    """
    x, y, vx, vy = _data()
    model = _model(kind, distribute, seed)
    source, shuffle = _train_source(form, x, y, batch_size)
    history = model.fit(**source, epochs=EPOCHS, shuffle=shuffle, validation_data=(vx, vy), verbose=0,
                        callbacks=[CSVLogger(str(folder / "log.csv")),
                                   ModelCheckpoint(str(folder / "model.keras")),
                                   TensorBoard(str(folder / "tb"), histogram_freq=1)])
    return {
        "weights": [_full(w) for w in model.weights],
        "history": history.history,
        "evaluate": model.evaluate(vx, vy, batch_size=2, verbose=0, return_dict=True),
        "predict": model.predict(vx, batch_size=3, verbose=0),
        "predict_form": model.predict(_in_order(form, x, y, batch_size), verbose=0),
        "loaded": [w.detach().clone() for w in ww.saving.load_model(str(folder / "model.keras")).weights],
        "csv": (folder / "log.csv").read_text(),
        "event_files": sorted(p.parent.name for p in (folder / "tb").rglob("events.out.tfevents.*")),
    }


FORMS = [("arrays", "sequential"), ("dataset", "functional"), ("loader", "sequential"), ("pydataset", "functional")]


def _fit_worker(rank: int, world_size: int, port: int, distribute: str | None, out: str) -> None:
    with gloo(rank, world_size, port):
        for form, kind in FORMS:
            folder = Path(out) / form
            if rank == 0:
                folder.mkdir()
            torch.distributed.barrier()
            seen = _run(form, kind, B, folder, distribute, seed=rank)
            seen["files"] = sorted(p.name for p in folder.iterdir() if not p.name.startswith("rank"))
            torch.save(seen, folder / f"rank{rank}.pt")
        # An iterable fit cannot split is each rank's own part: all ranks stop when the first runs out.
        x, y, _, _ = _data()
        model = _model("sequential", distribute)
        own = [(x[i:i + B], y[i:i + B]) for i in range(0, (3 - rank) * B, B)]  # rank 0: 3 batches, rank 1: 2
        model.fit(iter(own), epochs=1, verbose=0)
        torch.save(int(model.optimizer.iterations), Path(out) / f"iterable-steps-rank{rank}.pt")


def _check_against_one_process(seen: dict, expected: dict) -> None:
    for got, want in zip(seen["weights"], expected["weights"], strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5)
    assert seen["history"].keys() == expected["history"].keys()
    for key, values in expected["history"].items():
        np.testing.assert_allclose(seen["history"][key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    for key, value in expected["evaluate"].items():
        assert seen["evaluate"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    np.testing.assert_allclose(seen["predict"], expected["predict"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(seen["predict_form"], expected["predict_form"], rtol=0, atol=1e-5)
    # Rank 0 wrote the files (no rank wrote a second one), and each rank read them back.
    assert seen["files"] == ["log.csv", "model.keras", "tb"]
    assert seen["event_files"] == expected["event_files"] == ["train", "validation"]
    for got, want in zip(seen["loaded"], expected["weights"], strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5)
    rows = list(csv.DictReader(seen["csv"].splitlines()))
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
    np.testing.assert_allclose([float(row["loss"]) for row in rows], expected["history"]["loss"], rtol=1e-5)
    # The penalties and constraints did something: the MaxNorm binds and the run trained.
    kernel = expected["weights"][0].numpy()
    assert np.linalg.norm(kernel, axis=0).max() == pytest.approx(0.6, abs=1e-5)
    assert expected["history"]["loss"][-1] < expected["history"]["loss"][0]


def _check_every_rank(folder: Path, expected: dict, label: str) -> None:
    for rank in range(2):
        seen = torch.load(folder / f"rank{rank}.pt", weights_only=False)
        try:
            _check_against_one_process(seen, expected)
        except AssertionError as error:
            raise AssertionError(f"{label}, rank {rank}: {error}") from error


@pytest.mark.parametrize("distribute", ["ddp", "fsdp"])
def test_fit_on_two_ranks_equals_one_process_with_the_global_batch(distribute: str, tmp_path: Path) -> None:
    """Arrays, a Dataset, a DataLoader and a PyDataset; Sequential and functional models."""
    run_ranks(_fit_worker, distribute, str(tmp_path), timeout=240)
    assert [torch.load(tmp_path / f"iterable-steps-rank{rank}.pt") for rank in range(2)] == [2, 2]
    for form, kind in FORMS:
        single = tmp_path / f"single-{form}"
        single.mkdir()
        _check_every_rank(tmp_path / form, _run(form, kind, 2 * B, single), f"{distribute}, {form}")
    # The checkpoint of the sharded model is a whole model in Keras's format: Keras 3 reads it.
    keras = keras_or_skip()
    loaded = keras.saving.load_model(str(tmp_path / "arrays" / "model.keras"))
    expected = torch.load(tmp_path / "arrays" / "rank0.pt", weights_only=False)["weights"]
    for got, want in zip(loaded.weights, expected, strict=True):
        np.testing.assert_allclose(to_numpy(got), want.numpy(), rtol=0, atol=1e-6)


def _distribution_worker(rank: int, world_size: int, port: int, out: str) -> None:
    from weightwise import distribution

    mesh = distribution.DeviceMesh((2,), ["model"], devices=["cpu:0", "cpu:1"])
    layout_map = distribution.LayoutMap(mesh)
    # Keys match the whole weight path ("sequential/hidden/kernel"), as in Keras.
    layout_map[".*hidden/kernel"] = (None, "model")  # (in, out) split over the units: MaxNorm(axis=0) per unit
    layout_map[".*out/kernel"] = ("model", None)
    with gloo(rank, world_size, port):
        for name, setting in [("data_parallel", distribution.DataParallel()),
                              ("model_parallel", distribution.ModelParallel(layout_map=layout_map))]:
            folder = Path(out) / name
            if rank == 0:
                folder.mkdir()
            torch.distributed.barrier()
            distribution.set_distribution(setting)
            try:
                seen = _run("arrays", "sequential", B, folder)  # compile(distribute=None): the distribution decides
            finally:
                distribution.set_distribution(None)
            seen["files"] = sorted(p.name for p in folder.iterdir() if not p.name.startswith("rank"))
            torch.save(seen, folder / f"rank{rank}.pt")


def test_fit_under_keras_distributions_equals_one_process_with_the_global_batch(tmp_path: Path) -> None:
    """``DataParallel`` trains under DDP, ``ModelParallel`` under FSDP2 with the LayoutMap's placements."""
    pytest.importorskip("weightwise.distribution")
    run_ranks(_distribution_worker, str(tmp_path), timeout=240)
    expected = _run("arrays", "sequential", 2 * B, tmp_path)
    for name in ("data_parallel", "model_parallel"):
        _check_every_rank(tmp_path / name, expected, name)


# Keras's own note on loading an optimizer that never stepped (so saved no variables).
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_compile_checks_distribute_and_keeps_it_in_the_compile_config(tmp_path: Path) -> None:
    model = _model()
    assert "distribute" not in model.get_compile_config()  # a file Keras's compile still reads
    with pytest.raises(ValueError, match=r"`distribute`: expected None, 'ddp' or 'fsdp'. Received: distribute='FSDP'"):
        model.compile(optimizer="sgd", loss="mse", distribute="FSDP")
    assert model._distribute is None  # the failed compile changed nothing
    model.compile(optimizer="sgd", loss="mse", distribute="fsdp")
    config = model.get_compile_config()
    assert config["distribute"] == "fsdp"
    twin = _model()
    twin.compile_from_config(config)
    assert twin.get_compile_config()["distribute"] == "fsdp"
    # Files leave it out (it belongs to the run), so Keras's compile, which has no such argument, loads them.
    path = str(tmp_path / "model.keras")
    model.save(path)
    assert "distribute" not in ww.saving.load_model(path).get_compile_config()
    assert keras_or_skip().saving.load_model(path).compiled


def test_an_epoch_order_is_the_one_a_shuffling_dataloader_draws_in_one_process() -> None:
    """So a one-process run with the global batch, seeded as rank 0 is, sees the same batches."""
    from weightwise.models.data import epoch_order

    torch.manual_seed(3)
    ours = [epoch_order(10, shuffle=True, pad=True).tolist() for _ in range(2)]
    torch.manual_seed(3)
    sampler = torch.utils.data.RandomSampler(range(10))
    theirs = [list(sampler) for _ in range(2)]
    assert ours == theirs
    assert ours[0] != ours[1]  # a new order each epoch


def test_the_torchrun_example_runs_on_two_processes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "examples" / "fit_torchrun.py"), "--epochs", "2", "--out", str(tmp_path)]
    # Its own session, so that at the deadline the launcher and both workers are killed together.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                          start_new_session=True) as launcher:
        try:
            stdout, stderr = launcher.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            pytest.fail("torchrun with 2 processes did not finish within 240 s")
    assert launcher.returncode == 0, stderr[-3000:]
    # Rank 0 alone printed (one line per epoch, one final line) and wrote the files.
    assert stdout.count("final: loss") == 1
    assert stdout.count("Epoch 2/2") == 1
    assert sorted(os.listdir(tmp_path)) == ["log.csv", "model.keras"]
    loaded = ww.saving.load_model(str(tmp_path / "model.keras"))
    assert np.linalg.norm(loaded.layers[0].kernel.detach().numpy(), axis=0).max() <= 2.0 + 1e-5


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n", [5, 8, 1])
def test_each_rank_takes_what_distributed_sampler_gives_it(monkeypatch: pytest.MonkeyPatch, n: int,
                                                           shuffle: bool) -> None:
    """For training (padded) as torch's DistributedSampler with the epoch's seed; unpadded, each sample once."""
    from weightwise.models import data

    monkeypatch.setattr(data, "_epoch_seed", lambda generator=None: 1234)
    for world_size in (2, 3):
        unpadded = []
        for rank in range(world_size):
            monkeypatch.setattr(data, "world", lambda rank=rank, size=world_size: (rank, size))
            sampler = torch.utils.data.DistributedSampler(range(n), num_replicas=world_size, rank=rank,
                                                          shuffle=shuffle, seed=1234)
            assert data.epoch_order(n, shuffle, pad=True).tolist() == list(sampler)
            assert len(data.RankSampler(n, shuffle, pad=True)) == len(sampler)
            unpadded.append(data.epoch_order(n, shuffle, pad=False).tolist())
            assert len(unpadded[-1]) == data.part_length(n, pad=False)
        assert sorted(index for part in unpadded for index in part) == list(range(n))
