"""The guide "Regularizing any PyTorch model" does what it says: its two complete examples (a plain torch
model in a hand-written loop, a Keras-style model with ``fit``) are run on their own and checked."""

from __future__ import annotations

from typing import Any

import torch
from docs_pages import DOCS, python_block

import weightwise

PAGE = DOCS / "guides" / "regularizing-pytorch.md"


def test_the_torch_example_runs_and_does_what_it_says(capsys) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(python_block(PAGE, 'ww.constrain(model, {"3.weight": SpectralNorm(1.0)'), str(PAGE), "exec"), namespace)
    model, out = namespace["model"], capsys.readouterr().out
    assert "normalization layer BatchNorm1d" in out and "bias of Linear (rank 1)" in out
    first, hidden = model[0].weight.detach(), model[3].weight.detach()
    assert int((first == 0).sum()) > 0                      # exact zeros from the proximal step
    assert int((hidden == 0).all(dim=1).sum()) > 0          # whole units removed by group lasso
    assert torch.linalg.matrix_norm(model[5].weight.detach(), 2) <= 1.0 + 1e-3
    assert weightwise.report(model)["3.weight"].units == 1  # a spectral norm counts the matrix as one unit


def test_the_keras_example_runs_and_does_what_it_says(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(python_block(PAGE, 'callbacks.TensorBoard("logs"'), str(PAGE), "exec"), namespace)
    history, model, tuned = namespace["history"].history, namespace["model"], namespace["tuned"]
    assert {"penalty/sparse_in", "penalty/pruned", "penalty/head", "bound_rate/pruned.kernel"} <= set(history)
    assert int((model.get_layer("sparse_in").kernel.detach() == 0).sum()) > 0
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["train"]
    # L2-SP's reference is the loaded (pretrained) kernel, and fine-tuning moved the weights from it.
    reference = tuned.get_layer("head").kernel_l2sp_reference
    assert torch.equal(reference, model.get_layer("head").kernel.detach())
    assert not torch.equal(reference, tuned.get_layer("head").kernel.detach())
