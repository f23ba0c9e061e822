"""The main job, ``python -m weightwise.demo``: a smoke test with a tiny budget, and the README against a full run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the demo needs scikit-learn (pip install -e '.[demo]')")
pytest.importorskip("matplotlib", reason="the demo needs matplotlib (pip install -e '.[demo]')")

from weightwise import demo


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


def _readme_demo_section() -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return text.split("## The demo", 1)[1].split("\n## ", 1)[0]


def test_readme_shows_exactly_what_the_demo_prints(tmp_path, capsys) -> None:
    """The demo is deterministic, so the README's header line and table must be its output verbatim."""
    results = demo.main(["--quiet", "--figure", str(tmp_path / "demo.png")])
    out = capsys.readouterr().out
    section = _readme_demo_section()
    header = out.splitlines()[0]
    assert header in section, f"README lacks the demo's header line:\n{header}"
    printed = demo.table(results)
    assert printed in out
    assert printed in section, f"README's demo table differs from what the demo prints now:\n{printed}"
