"""The "Performance" guide (docs/guides/performance.md): its tables are the recorded benchmark run,
and its compiled training loop trains as the eager one does.

The whole page runs top to bottom in tests/test_docs.py; here its blocks are checked further.
"""

from __future__ import annotations

import json
import sys
import warnings

import pytest
from docs_pages import DOCS, ROOT, python_block

if str(ROOT) not in sys.path:  # ``benchmarks`` lives at the repository root, beside ``src``
    sys.path.insert(0, str(ROOT))

from benchmarks import report
from benchmarks.specs import MODELS

PAGE = DOCS / "guides" / "performance.md"


def test_guide_performance_table_is_the_recorded_run() -> None:
    """The guide's tables and memory line are what ``--readme`` renders from benchmarks/results.json
    (``python -m benchmarks --report benchmarks/results.json --readme``), so the two cannot drift apart."""
    recorded = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    assert report.readme_table(recorded, {m: MODELS[m].label for m in MODELS}) in PAGE.read_text()


def test_guide_compiled_step_example_trains_like_the_eager_step() -> None:
    import numpy as np
    import torch

    import weightwise

    namespace: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(python_block(PAGE, "def train(jit_compile=True)"), str(PAGE), "exec"), namespace)  # noqa: S102 -- the guide's own code
    # The compiled run did compile: train_step falls back to the eager step only with a warning.
    assert not [w for w in caught if "runs eagerly" in str(w.message)]
    compiled, eager = namespace["model"], namespace["eager_model"]
    kernel = compiled.layers[0].kernel.detach()
    assert float(kernel.norm(dim=0).max()) <= 3.0 + 1e-5            # MaxNorm held after every step
    for a, b in zip(compiled.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert isinstance(namespace["loss"], torch.Tensor) and namespace["loss"].shape == ()
    assert float(namespace["loss"]) == pytest.approx(float(namespace["eager_loss"]), rel=1e-5)
    assert weightwise.train_step is weightwise.compiled_step.train_step
