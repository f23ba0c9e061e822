"""The examples of the "Scaling out" guide (docs/guides/scaling-out.md) do what the guide says they do.

The whole page runs top to bottom in tests/test_docs.py; here single blocks run on their own, in
a namespace holding the names the page imported before them, and are checked further.
"""

from __future__ import annotations

from typing import Any

import pytest
from docs_pages import DOCS, python_block

PAGE = DOCS / "guides" / "scaling-out.md"


def _namespace() -> dict[str, Any]:
    """What the page's earlier blocks imported."""
    import numpy as np
    import torch
    from torch import nn

    import weightwise as ww
    from weightwise import constraints, layers, regularizers

    return {"np": np, "torch": torch, "nn": nn, "ww": ww, "constraints": constraints, "layers": layers,
            "regularizers": regularizers}


@pytest.fixture()
def float32_policy_after():
    yield
    import weightwise

    weightwise.config.set_dtype_policy("float32")


def test_guide_fit_example_keeps_float32_weights_and_counts_updates(capsys, float32_policy_after) -> None:
    import torch

    namespace = _namespace()
    exec(compile(python_block(PAGE, "gradient_accumulation_steps=4"), str(PAGE), "exec"), namespace)  # noqa: S102 -- the guide's own code
    model = namespace["model"]
    # What the block prints: float32 weights, bfloat16 compute, 2 epochs x 32 batches / 4.
    assert capsys.readouterr().out.split() == ["torch.float32", "bfloat16", "16"]
    losses = namespace["history"].history["loss"]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert all(w.dtype == torch.float32 for w in model.weights)


def test_guide_hand_loop_counts_the_penalty_once_per_update() -> None:
    import torch
    from torch import nn

    import weightwise as ww
    from weightwise.constraints import MaxNorm

    torch.manual_seed(0)
    namespace = _namespace()
    exec(compile(python_block(PAGE, "N = 4  # micro-batches per update"), str(PAGE), "exec"), namespace)  # noqa: S102 -- the guide's own code
    # The same training with one step on each concatenated batch of 4 x 8 samples and the penalty added once.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 1))
    ww.regularize(model, {(nn.Linear, "weight"): "l2"})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ww.constrain(model, {"0.weight": MaxNorm(1.0)}, optimizer=optimizer)
    x, y = torch.randn(64, 20), torch.randn(64, 1)
    for start in range(0, 64, 32):
        optimizer.zero_grad()
        xb, yb = x[start:start + 32], y[start:start + 32]
        (nn.functional.mse_loss(model(xb), yb) + ww.regularization_loss(model)).backward()
        optimizer.step()
    for (name, mine), theirs in zip(namespace["model"].state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6, msg=name)
    assert torch.linalg.vector_norm(model[0].weight.detach(), dim=1).max() <= 1.0 + 1e-5


def test_guide_lightning_example_trains_with_the_rules() -> None:
    import torch

    pytest.importorskip("lightning")
    namespace = _namespace()
    exec(compile(python_block(PAGE, "class Regressor(pl.LightningModule)"), str(PAGE), "exec"), namespace)  # noqa: S102 -- the guide's own code
    module, trainer = namespace["module"], namespace["trainer"]
    assert torch.linalg.vector_norm(module.net[2].weight.detach(), dim=1).max() <= 0.3 + 1e-5
    assert float(trainer.callback_metrics["regularization_loss"]) > 0.0
    # The hand-written loop that follows it in the guide ends on the same weights (it asserts so).
    exec(compile(python_block(PAGE, "net.load_state_dict(start)"), str(PAGE), "exec"), namespace)  # noqa: S102 -- the guide's own code
