"""The guide "Saving and safety": its examples do what the page says they do."""

from __future__ import annotations

import itertools

import pytest
from docs_pages import DOCS, blocks, python_block

PAGE = DOCS / "guides" / "saving-and-safety.md"


def _output_after(marker: str) -> str:
    """The output block that follows the Python block containing ``marker``."""
    page = blocks(PAGE)
    for block, after in itertools.pairwise(page):
        if block.kind == "python" and marker in block.code:
            assert after.kind == "text" and after.title == "output", f"no output block after {marker!r}"
            return after.code.strip()
    raise AssertionError(f"no Python block of {PAGE.name} contains {marker!r}")


def test_saving_example_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_block(PAGE, "model_from_json(model.to_json())"), str(PAGE), "exec"), namespace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras", "model.pt", "model.weights.h5"]
    restored, model = namespace["restored"], namespace["model"]
    assert restored.optimizer.iterations == 2 * model.optimizer.iterations
    assert namespace["twin"].layers[0].kernel_constraint.get_config() == {"max_value": 2.0, "axis": 0}


def test_error_example_is_what_the_library_says() -> None:
    from weightwise import optimizers

    shown = _output_after("keras.optimizers.Adam(epsilon=0)")
    assert shown.startswith("Invalid value for argument `epsilon`"), "the page's example error is gone or reworded"
    with pytest.raises(ValueError) as info:
        optimizers.Adam(epsilon=0)
    assert str(info.value) == shown
