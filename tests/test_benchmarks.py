"""The benchmark harness (``python -m benchmarks``): a seconds-long smoke run, and its pure helpers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``benchmarks`` lives at the repository root, beside ``src``
    sys.path.insert(0, str(ROOT))

from benchmarks import report, runner
from benchmarks.specs import DEFAULT_PEERS, MODELS, PEERS, SMOKE


# -- the smoke run, end to end, each peer in its own process -------------------------------------
def test_smoke_run_measures_weightwise_and_torch_in_subprocesses(tmp_path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["settings"]["smoke"] is True and data["settings"]["steps"] == SMOKE["steps"]
    assert data["machine"]["cores"] >= 1 and data["machine"]["versions"]["torch"]
    by_key = {(r["model"], r["variant"], r["peer"]): r for r in data["results"]}
    assert len(by_key) == 4
    pids = set()
    for variant in ("plain", "reg"):
        for peer in ("weightwise", "torch"):
            result = by_key[("deep", variant, peer)]
            assert result["status"] == "ok", result
            assert result["ms_per_step"] > 0 and len(result["repeat_ms_per_step"]) == SMOKE["repeats"]
            assert result["peak_rss_mib"] > 0
            assert data["summary"]["ms_per_step"]["deep"][variant][peer] == result["ms_per_step"]
            pids.add(result["pid"])
    assert len(pids) == 4  # a fresh interpreter for every measurement
    assert data["summary"]["weightwise_over_peer_reg"]["deep"]["torch"] > 0
    assert "deep" in proc.stdout and "weightwise" in proc.stdout and "ww / torch" in proc.stdout

    # --merge adds a model's rows to that run and keeps the deep rows as they were.
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--models", "wide", "--merge",
                           "--out", str(out)], cwd=ROOT, check=False, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = json.loads(out.read_text())
    assert merged["complete"] and merged["settings"]["models"] == ["deep", "wide"]
    merged_by_key = {(r["model"], r["variant"], r["peer"]): r for r in merged["results"]}
    assert len(merged_by_key) == 8
    assert all(merged_by_key[key] == by_key[key] for key in by_key)
    assert [run["models"] for run in merged["runs"]] == [["deep"], ["wide"]]
    assert merged["summary"]["ms_per_step"]["wide"]["reg"]["weightwise"] == merged_by_key[
        ("wide", "reg", "weightwise")]["ms_per_step"]
    with pytest.raises(SystemExit):  # other settings than the run it would join
        runner.parse_args(["--smoke", "--steps", "5", "--merge", "--out", str(out)])


# -- pure helpers ----------------------------------------------------------------------------------
def test_median() -> None:
    assert report.median([5.0]) == 5.0
    assert report.median([3.0, 1.0, 2.0]) == 2.0
    assert report.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        report.median([])


def test_ratio_and_formatting() -> None:
    assert report.ratio(3.0, 2.0) == 1.5
    assert report.ratio(None, 2.0) is None and report.ratio(1.0, None) is None and report.ratio(1.0, 0.0) is None
    assert report.format_ratio(1.5) == "1.50x"
    assert report.format_ratio(0.456) == "0.46x"
    assert report.format_ratio(23.45) == "23.4x"
    assert report.format_ratio(None) == "-"
    assert [report.format_ms(v) for v in (0.01234, 1.234, 12.34, 1234.5)] == ["0.012", "1.23", "12.3", "1234.5"]


def _result(peer: str, model: str, variant: str, ms: float | None, status: str = "ok", **extra) -> dict:
    out = {"peer": peer, "model": model, "variant": variant, "status": status, "notes": []}
    if ms is not None:
        out.update(ms_per_step=ms, peak_rss_mib=300.0)
    return {**out, **extra}


RESULTS = [
    _result("weightwise", "deep", "plain", 2.0), _result("weightwise", "deep", "reg", 3.0),
    _result("torch", "deep", "plain", 1.0), _result("torch", "deep", "reg", 2.0),
    _result("keras-jax", "deep", "plain", None, "unavailable", error="not installed: jax"),
    _result("keras-jax", "deep", "reg", None, "unavailable", error="not installed: jax"),
]


def test_summary_ratios() -> None:
    summary = report.summarize(RESULTS, ["deep"], ["weightwise", "torch", "keras-jax"])
    assert summary["ms_per_step"]["deep"]["reg"] == {"weightwise": 3.0, "torch": 2.0, "keras-jax": None}
    assert summary["weightwise_over_peer_reg"]["deep"] == {"torch": 1.5, "keras-jax": None}
    assert summary["reg_over_plain"]["deep"] == {"weightwise": 1.5, "torch": 2.0, "keras-jax": None}


@pytest.mark.parametrize("markdown", [False, True])
def test_tables(markdown: bool) -> None:
    text = report.tables(RESULTS, ["deep"], ["weightwise", "torch", "keras-jax"], markdown=markdown)
    rows = [line for line in text.splitlines() if line.lstrip("| ").startswith("deep")]
    reg_row = next(line for line in rows if " reg " in line)
    assert "3.00" in reg_row and "2.00" in reg_row and "1.50x" in reg_row and "n/a" in reg_row
    assert "keras-jax: n/a: not installed: jax (deep/plain, deep/reg)" in text
    if markdown:
        assert "| model | variant | weightwise | torch | keras-jax | ww / torch | ww / keras-jax |" in text
        assert "|---|---|---:|---:|---:|---:|---:|" in text
    else:
        assert "|" not in text


def test_tables_flag_background_load() -> None:
    busy = [dict(r, background_load_cores=1.0) for r in RESULTS]
    assert "timings are noisy" in report.tables(busy, ["deep"], ["weightwise", "torch"])
    assert "timings are noisy" not in report.tables(RESULTS, ["deep"], ["weightwise", "torch"])


FLOOR_RESULTS = [
    _result("floor", "deep", "plain", 0.5, warmup_s=5.0), _result("floor", "deep", "reg", 0.6, warmup_s=5.0),
    _result("weightwise", "deep", "plain", 2.0), _result("weightwise", "deep", "reg", 2.1),
    _result("weightwise-jit", "deep", "plain", 1.0, warmup_s=30.0),
    _result("weightwise-jit", "deep", "reg", 1.2, warmup_s=12.0, peak_rss_mib=330.0),
    _result("torch", "deep", "plain", 1.5, peak_rss_mib=320.0), _result("torch", "deep", "reg", 3.0),
    _result("torch-compile", "deep", "plain", 0.8, warmup_s=10.0),
    _result("torch-compile", "deep", "reg", 0.9, warmup_s=8.0),
    _result("keras-jax", "deep", "plain", 1.1), _result("keras-jax", "deep", "reg", 1.6),
]
FLOOR_PEERS = ["floor", "weightwise", "weightwise-jit", "torch", "torch-compile", "keras-jax"]


def test_summary_shows_each_peer_over_the_floor_and_the_goal_ratios() -> None:
    summary = report.summarize(FLOOR_RESULTS, ["deep"], FLOOR_PEERS)
    over = summary["over_floor"]["deep"]
    assert "floor" not in over["plain"]
    assert over["plain"]["weightwise"] == pytest.approx(4.0) and over["reg"]["weightwise"] == pytest.approx(3.5)
    assert over["reg"]["torch"] == pytest.approx(5.0) and over["plain"]["keras-jax"] == pytest.approx(2.2)
    goals = summary["goals"]["deep"]
    assert goals == pytest.approx({
        "weightwise_jit_reg_over_keras_jax_reg": 1.2 / 1.6,
        "weightwise_jit_reg_over_torch_compile_reg": 1.2 / 0.9,
        "weightwise_reg_over_plain": 2.1 / 2.0,
        "weightwise_jit_reg_over_plain": 1.2 / 1.0,
        "weightwise_jit_peak_rss_over_torch_plain": 300.0 / 320.0,
        "weightwise_jit_peak_rss_over_torch_reg": 330.0 / 300.0,
        "weightwise_jit_warmup_over_torch_compile_plain": 30.0 / 10.0,
        "weightwise_jit_warmup_over_torch_compile_reg": 12.0 / 8.0,
    })
    assert summary["warmup_s"]["deep"]["reg"]["weightwise-jit"] == 12.0
    # Without a floor or a peer a goal needs, the ratio is missing, not an error.
    bare = report.summarize(RESULTS, ["deep"], ["weightwise", "torch", "keras-jax"])
    assert bare["over_floor"]["deep"]["reg"] == {"weightwise": None, "torch": None, "keras-jax": None}
    assert bare["goals"]["deep"].pop("weightwise_reg_over_plain") == 1.5
    assert set(bare["goals"]["deep"].values()) == {None}


def test_goals_are_met_below_or_at_their_limits() -> None:
    by_key = {goal.key: goal for goal in report.GOALS}
    faster = by_key["weightwise_jit_reg_over_keras_jax_reg"]
    assert faster.met(0.99) and not faster.met(1.0) and faster.met(None) is None and faster.target == "< 1"
    cheap = by_key["weightwise_reg_over_plain"]
    assert cheap.met(1.05) and not cheap.met(1.051) and cheap.target == "≤ 1.05"
    assert by_key["weightwise_jit_peak_rss_over_torch_reg"].limit == 1.1
    assert by_key["weightwise_jit_warmup_over_torch_compile_plain"].limit == 2.0
    rows = report.goal_rows(report.summarize(FLOOR_RESULTS, ["deep"], FLOOR_PEERS), ["deep"])
    assert [row[-1] for row in rows] == ["1 of 1", "0 of 1", "1 of 1", "0 of 1", "1 of 1", "1 of 1", "0 of 1",
                                         "1 of 1"]


@pytest.mark.parametrize("markdown", [False, True])
def test_tables_show_the_floor_multiples_and_the_goals(markdown: bool) -> None:
    text = report.tables(FLOOR_RESULTS, ["deep"], FLOOR_PEERS, markdown=markdown)
    section = text.split("x floor:")[1].split("reg / plain")[0]
    rows = [line for line in section.splitlines() if line.lstrip("| ").startswith("deep")]
    assert len(rows) == 2 and "4.00x" in rows[0] and "3.50x" in rows[1] and "5.00x" in rows[1]
    assert "ww / floor" not in text  # the floor table says it already
    goals = text.split("goals")[1]
    assert "weightwise jit / Keras (JAX), reg" in goals and "0.75x" in goals and "< 1" in goals
    assert "1 of 1" in goals
    assert "x floor:" not in report.tables(RESULTS, ["deep"], ["weightwise", "torch", "keras-jax"])


def test_readme_table_gives_ms_with_the_floor_multiple_and_the_goals() -> None:
    recorded = {"settings": {"models": ["deep"]}, "results": FLOOR_RESULTS}
    text = report.readme_table(recorded, {"deep": "40 × Dense(64)"})
    lines = text.splitlines()
    assert lines[0].startswith("| model (reg): ms/step (× floor) | floor | weightwise jit | weightwise |")
    assert lines[2] == ("| deep: 40 × Dense(64) | 0.600 | 1.20 (2.00×) | 2.10 (3.50×) | 3.00 (5.00×) "
                        "| 0.900 (1.50×) | - | 1.60 (2.67×) |")
    assert "| weightwise jit / torch.compile, reg | < 1 | 1.33× | 0 of 1 |" in lines
    assert "| warm-up, weightwise jit / torch.compile, plain | ≤ 2 | 3.00× | 0 of 1 |" in lines
    assert lines[-1] == ("Peak memory against the hand-written torch loop's: weightwise 0.94–1.00× (300–300 MiB); "
                         "weightwise jit 0.94–1.10× (300–330 MiB).")
    # A run without the floor (an older harness's) keeps the ms/step and leaves the floor out.
    old = report.readme_table({"settings": {"models": ["deep"]}, "results": RESULTS}, {"deep": "d"})
    assert "| deep: d | - | - | 3.00 | 2.00 | - | - | - |" in old.splitlines()


def test_report_prints_a_recorded_run_without_running_it(tmp_path, capsys) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({
        "machine": {"cpu": "cpu", "cores": 2, "versions": {"torch": "2"}},
        "settings": {"models": ["deep"], "peers": FLOOR_PEERS, "steps": 60, "repeats": 5, "threads": 2},
        "results": FLOOR_RESULTS}))
    assert runner.main(["--report", str(path), "--markdown", "--readme"]) == 0
    out = capsys.readouterr().out
    assert "60 steps x 5 repeats" in out and "**x floor:" in out
    assert report.readme_table(json.loads(path.read_text()), {"deep": MODELS["deep"].label}) in out
    with pytest.raises(SystemExit):
        runner.parse_args(["--report", str(path), "--out", str(tmp_path / "x.json")])


def test_merge_needs_a_previous_run(tmp_path) -> None:
    with pytest.raises(SystemExit):
        runner.parse_args(["--smoke", "--merge"])
    with pytest.raises(SystemExit):
        runner.parse_args(["--smoke", "--merge", "--out", str(tmp_path / "missing.json")])


def test_arguments() -> None:
    smoke = runner.parse_args(["--smoke"])
    assert (smoke.steps, smoke.repeats) == (SMOKE["steps"], SMOKE["repeats"])
    assert smoke.peer_names == list(SMOKE["peers"]) and smoke.model_names == list(SMOKE["models"])
    full = runner.parse_args(["--only", "torch,weightwise", "--repeats", "2"])
    assert full.peer_names == ["weightwise", "torch"] and full.model_names == list(MODELS) and full.steps == 60
    with pytest.raises(SystemExit):
        runner.parse_args(["--only", "tensorflow"])


def test_each_peer_gets_its_backend_and_thread_count() -> None:
    assert runner.child_env("keras-jax", 2)["KERAS_BACKEND"] == "jax"
    assert "intra_op_parallelism_threads=1" in runner.child_env("keras-jax", 1)["XLA_FLAGS"]
    env = runner.child_env("keras-torch", 2)
    assert env["KERAS_BACKEND"] == "torch" and env["OMP_NUM_THREADS"] == "2" and "XLA_FLAGS" not in env
    assert set(PEERS) == {"floor", "weightwise", "weightwise-jit", "torch", "torch-compile", "keras-torch",
                          "keras-torch-jit", "keras-jax"}


def test_default_peers_leave_out_keras_torch_jit_and_include_the_floor() -> None:
    assert DEFAULT_PEERS == ("floor", "weightwise", "weightwise-jit", "torch", "torch-compile", "keras-torch",
                             "keras-jax")
    assert runner.parse_args([]).peer_names == list(DEFAULT_PEERS)
    assert runner.parse_args(["--only", "keras-torch-jit"]).peer_names == ["keras-torch-jit"]


# -- the models are the same for every peer ----------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_torch_and_keras_style_models_have_the_same_parameters(name: str) -> None:
    import weightwise
    from benchmarks.peers import keras_style, torch_peer

    spec = MODELS[name]
    ours = keras_style.build(weightwise, spec, reg=True)
    theirs = torch_peer.build(spec)
    # torch's LSTM keeps two bias vectors (input and hidden) where Keras keeps one.
    extra_bias = 4 * spec.lstm_units
    assert ours.count_params() == sum(p.numel() for p in theirs.parameters()) - extra_bias
    regularized = [b for b in weightwise.binding.bound(ours) if b.rule.regularizer is not None]
    assert len(regularized) == spec.regularized_tensors
    assert name != "many" or spec.regularized_tensors == 200


def test_token_model_matches_keras_and_its_reg_step_projects() -> None:
    import torch
    from helpers import keras_or_skip

    from benchmarks.data import make_data
    from benchmarks.peers import keras_style, torch_peer
    from benchmarks.specs import MAX_NORM

    keras = keras_or_skip()
    spec = MODELS["lstm"]
    reference = keras_style.build(keras, spec, reg=True)
    assert [tuple(w.shape) for w in reference.weights] == [
        tuple(w.shape) for w in keras_style.build(__import__("weightwise"), spec, reg=True).weights]
    lstm = reference.layers[1]
    assert lstm.recurrent_regularizer is not None and lstm.recurrent_constraint is not None
    x, y = make_data(spec, 1)
    assert x.dtype == np.int64 and x.min() >= 1 and x.max() < spec.vocab
    model = torch_peer.build(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(50.0)
    step = torch_peer.make_step(model, torch.optim.SGD(model.parameters(), lr=0.01), reg=True)
    assert torch.isfinite(step(torch.from_numpy(x), torch.from_numpy(y)))
    for w in (model.lstm.weight_ih_l0, model.lstm.weight_hh_l0, model.head.weight):
        assert w.norm(dim=1).max() <= MAX_NORM + 1e-4


def test_hand_written_reg_step_projects_onto_the_max_norm_ball() -> None:
    import torch

    from benchmarks.data import make_data
    from benchmarks.peers import torch_peer
    from benchmarks.specs import MAX_NORM, ModelSpec

    spec = ModelSpec("tiny", 4, (6, 6, 3), conv_filters=(5,), pool_after=(0,), dense_units=(7,))
    model = torch_peer.build(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(50.0)
    step = torch_peer.make_step(model, torch.optim.SGD(model.parameters(), lr=0.01), reg=True)
    x, y = make_data(spec, 1)
    loss = step(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y))
    assert torch.isfinite(loss)
    for module in model:
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            assert module.weight.flatten(1).norm(dim=1).max() <= MAX_NORM + 1e-4


def test_floor_step_is_the_compiled_gradient_of_the_summed_logits() -> None:
    import torch

    from benchmarks.data import make_data
    from benchmarks.peers import floor_peer, torch_peer
    from benchmarks.specs import ModelSpec

    spec = ModelSpec("tiny", 4, (3,), dense_units=(5,))
    model = torch_peer.build(spec)
    x, y = make_data(spec, 1)
    xs = torch.from_numpy(x)
    expected = torch.autograd.grad(model(xs).sum(), list(model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    grads = floor_peer.make_floor_step(model, {})(xs, torch.from_numpy(y))
    assert len(grads) == len(expected) == 4
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
    # No update, no gradient left behind: the floor is the compute alone.
    assert all(torch.equal(p, b) and p.grad is None for p, b in zip(model.parameters(), before))


def test_report_doctests() -> None:
    import doctest

    assert doctest.testmod(report).failed == 0


# -- the Performance guide (docs/guides/performance.md) quotes one recorded, quiet, complete run ----
def _recorded() -> dict:
    return json.loads((ROOT / "benchmarks" / "results.json").read_text())


def test_recorded_run_is_complete_quiet_and_at_the_default_settings() -> None:
    """The recorded run is a full run at the default settings, with a number for every default
    peer on every model and variant and no background load."""
    from benchmarks.specs import REPEATS, STEPS, THREADS, VARIANTS

    recorded = _recorded()
    settings = recorded["settings"]
    assert recorded["complete"] and not settings["smoke"]
    assert (settings["steps"], settings["repeats"], settings["threads"]) == (STEPS, REPEATS, THREADS)
    assert settings["models"] == list(MODELS)
    assert set(DEFAULT_PEERS) <= set(settings["peers"]), f"peers not measured: {set(DEFAULT_PEERS) - set(settings['peers'])}"
    status = {(r["model"], r["variant"], r["peer"]): r["status"] for r in recorded["results"]}
    missing = [(m, v, p, status.get((m, v, p))) for m in MODELS for v in VARIANTS for p in DEFAULT_PEERS
               if status.get((m, v, p)) != "ok"]
    assert not missing, f"default peers without a number: {missing}"
    loads = [r["background_load_cores"] for r in recorded["results"] if r.get("background_load_cores") is not None]
    assert max(loads) <= report.BUSY_CORES, f"a run shared the machine: {max(loads):.2f} busy cores"
