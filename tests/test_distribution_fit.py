"""``fit`` under ``keras.distribution``: ``DataParallel`` (DDP) and ``ModelParallel`` (FSDP2) on 2 gloo ranks.

Each rank trains with batch ``b`` on its part of every epoch; one process with batch ``2b`` sees the
same global batches, so the final weights and the History must equal that run's on every rank
(to 1e-5), whichever distribution is set, penalties and constraints included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ranks import gloo, run_ranks

import weightwise as keras

N, B, EPOCHS = 16, 4, 2


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, 3)).astype("float32")
    return x, (x @ rng.normal(size=(3, 2))).astype("float32")


def _distribution(name: str) -> Any:
    if name == "data_parallel":
        return keras.distribution.DataParallel()
    mesh = keras.distribution.DeviceMesh((2,), ["model"])
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*hidden/kernel"] = (None, "model")
    layout_map[".*hidden/bias"] = ("model",)
    return keras.distribution.ModelParallel(layout_map=layout_map)


def _fit(batch_size: int) -> dict[str, Any]:
    from torch.distributed.tensor import DTensor

    torch.manual_seed(0)
    layers = keras.layers
    model = keras.Sequential([keras.Input((3,)),
                              layers.Dense(4, name="hidden", activation="tanh", kernel_regularizer=keras.regularizers.L2(0.05),
                                           kernel_constraint=keras.constraints.MaxNorm(0.5)),
                              layers.Dense(2, name="out", bias_regularizer=keras.regularizers.L1(0.02))])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = _data()
    history = model.fit(x, y, batch_size=batch_size, epochs=EPOCHS, shuffle=False, verbose=0)
    weights = [w.full_tensor() if isinstance(w, DTensor) else w for w in (p.data for p in model.parameters())]
    return {"weights": [w.detach().clone() for w in weights], "history": history.history,
            "placements": [[repr(p) for p in getattr(w, "placements", ())] for w in model.parameters()]}


def _worker(rank: int, world_size: int, port: int, name: str, out: str) -> None:
    with gloo(rank, world_size, port):
        keras.distribution.set_distribution(_distribution(name))
        torch.save(_fit(B), Path(out) / f"rank{rank}.pt")


@pytest.mark.parametrize("name", ["data_parallel", "model_parallel"])
def test_fit_under_a_distribution_equals_one_process(name: str, tmp_path: Path) -> None:
    run_ranks(_worker, name, str(tmp_path), timeout=120)
    expected = _fit(2 * B)
    placements = [[], [], [], []] if name == "data_parallel" else [
        ["Shard(dim=1)"], ["Shard(dim=0)"], ["Shard(dim=0)"], ["Shard(dim=0)"]]
    for rank in range(2):
        seen = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert seen["placements"] == placements
        for got, want in zip(seen["weights"], expected["weights"], strict=True):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5)
        for key, values in expected["history"].items():
            np.testing.assert_allclose(seen["history"][key], values, rtol=1e-5, err_msg=key)
    # The MaxNorm binds, the penalties count, and the run trained.
    assert np.linalg.norm(expected["weights"][0].numpy(), axis=0).max() == pytest.approx(0.5, abs=1e-5)
    assert expected["history"]["regularization_loss"][0] > 0
    assert expected["history"]["loss"][-1] < expected["history"]["loss"][0]
