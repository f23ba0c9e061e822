"""Smoke test of the main job, ``python -m weightwise.demo``, with a tiny budget."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn", reason="the demo needs scikit-learn (pip install -e '.[demo]')")
pytest.importorskip("matplotlib", reason="the demo needs matplotlib (pip install -e '.[demo]')")

from weightwise import demo  # noqa: E402


def test_demo_trains_three_ways_and_writes_its_figure(tmp_path, capsys) -> None:
    figure = tmp_path / "demo.png"
    results = demo.main(["--epochs", "2", "--hidden", "32", "--quiet", "--figure", str(figure)])
    assert [r.name for r in results] == ["plain", "L2 + activity", "MaxNorm + dropout"]
    plain, penalized, constrained = results
    assert plain.penalty == 0.0 and penalized.penalty > 0.0
    assert constrained.max_column_norm <= 2.0 + 1e-5
    for r in results:
        assert 0.5 < r.test_accuracy <= 1.0 and len(r.history["loss"]) == 2
    assert figure.read_bytes().startswith(b"\x89PNG")
    out = capsys.readouterr().out
    assert "| run | train acc | test acc |" in out and "MaxNorm + dropout" in out


def test_demo_refuses_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        demo.main(["--epochs", "0"])
