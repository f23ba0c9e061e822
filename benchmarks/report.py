"""Pure helpers: the median, number formatting, the goals, and the tables (plain text or Markdown)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.specs import VARIANTS

MISSING = "-"
BUSY_CORES = 0.25  # background load (cores) above which a run's timing is flagged as noisy


def median(values: Iterable[float]) -> float:
    """The median; the mean of the two middle values for an even count.

    >>> median([3.0, 1.0, 2.0]), median([4.0, 1.0, 2.0, 3.0])
    (2.0, 2.5)
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median() of no values")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def format_ratio(value: float | None) -> str:
    """``1.23x``; two significant decimals under 10, one decimal above; ``-`` when missing.

    >>> format_ratio(1.234), format_ratio(12.34), format_ratio(None)
    ('1.23x', '12.3x', '-')
    """
    if value is None:
        return MISSING
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def format_ms(value: float | None) -> str:
    """Milliseconds with three significant figures (at least one decimal).

    >>> format_ms(0.12345), format_ms(3.14159), format_ms(123.456), format_ms(None)
    ('0.123', '3.14', '123.5', '-')
    """
    if value is None:
        return MISSING
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}"


def format_mib(value: float | None) -> str:
    return MISSING if value is None else f"{value:.0f}"


STATUS_CELL = {"unavailable": "n/a", "failed": "failed", "timeout": "timeout"}


def cell(result: dict[str, Any] | None, key: str = "ms_per_step", fmt: Any = format_ms) -> str:
    """A table cell for one child result: the number, or why there is none."""
    if result is None:
        return MISSING
    status = result.get("status")
    if status == "ok" or (key != "ms_per_step" and result.get(key) is not None):
        return fmt(result.get(key))
    return STATUS_CELL.get(status, MISSING)


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """A table: Markdown (pipes, numbers right-aligned) or aligned plain text."""
    numeric = [all(_looks_numeric(row[i]) for row in rows) if rows else False for i in range(len(headers))]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---:" if numeric[i] else "---" for i in range(len(headers))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in [headers[i], *(row[i] for row in rows)]) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def _looks_numeric(text: str) -> bool:
    text = text.rstrip("x")
    if text in {MISSING, "n/a", "failed", "timeout", ""}:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


FLOOR = "floor"  # the peer every other one is also shown as a multiple of


@dataclass(frozen=True)
class Goal:
    """A target ratio ``numerator / denominator`` on one model, each a ``(field, variant, peer)``
    of the results (``field``: ``ms_per_step``, ``peak_rss_mib`` or ``warmup_s``).

    >>> Goal("k", "t", 1.05, False, ("ms_per_step", "reg", "a"), ("ms_per_step", "plain", "a")).met(1.05)
    True
    """

    key: str
    title: str
    limit: float
    strict: bool                           # the ratio must stay below the limit (else: at most the limit)
    numerator: tuple[str, str, str]
    denominator: tuple[str, str, str]

    @property
    def target(self) -> str:
        return f"{'<' if self.strict else '≤'} {self.limit:g}"

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value < self.limit if self.strict else value <= self.limit


def _goals() -> tuple[Goal, ...]:
    jit, ms = "weightwise-jit", "ms_per_step"
    goals = [
        Goal("weightwise_jit_reg_over_keras_jax_reg", "weightwise jit / Keras (JAX), reg", 1.0, True,
             (ms, "reg", jit), (ms, "reg", "keras-jax")),
        Goal("weightwise_jit_reg_over_torch_compile_reg", "weightwise jit / torch.compile, reg", 1.0, True,
             (ms, "reg", jit), (ms, "reg", "torch-compile")),
        Goal("weightwise_reg_over_plain", "weightwise reg / plain", 1.05, False,
             (ms, "reg", "weightwise"), (ms, "plain", "weightwise")),
        Goal("weightwise_jit_reg_over_plain", "weightwise jit reg / plain", 1.05, False,
             (ms, "reg", jit), (ms, "plain", jit)),
    ]
    for variant in ("plain", "reg"):
        goals.append(Goal(f"weightwise_jit_peak_rss_over_torch_{variant}",
                          f"peak RSS, weightwise jit / hand-written torch, {variant}", 1.1, False,
                          ("peak_rss_mib", variant, jit), ("peak_rss_mib", variant, "torch")))
    for variant in ("plain", "reg"):
        goals.append(Goal(f"weightwise_jit_warmup_over_torch_compile_{variant}",
                          f"warm-up, weightwise jit / torch.compile, {variant}", 2.0, False,
                          ("warmup_s", variant, jit), ("warmup_s", variant, "torch-compile")))
    return tuple(goals)


# The performance goals: the compiled step against Keras on JAX and torch.compile, the cost of
# the rules, memory against the hand-written loop, and compile time against torch.compile.
GOALS = _goals()


def summarize(results: list[dict[str, Any]], models: Sequence[str], peers: Sequence[str]) -> dict[str, Any]:
    """Every number the tables show, keyed by model, variant and peer (``None`` where there is none).

    ``over_floor`` is each peer's ms/step over the ``floor`` peer's on the same model and
    variant; ``goals`` holds every :data:`GOALS` ratio per model (from ``results``, whatever
    ``peers`` lists).
    """
    index = {(r["model"], r["variant"], r["peer"]): r for r in results}

    def value(field: str, model: str, variant: str, peer: str) -> float | None:
        r = index.get((model, variant, peer))
        return r.get(field) if r and r.get("status") == "ok" else None

    def ms(model: str, variant: str, peer: str) -> float | None:
        return value("ms_per_step", model, variant, peer)

    out: dict[str, Any] = {"ms_per_step": {}, "weightwise_over_peer_reg": {}, "weightwise_over_peer_plain": {},
                           "reg_over_plain": {}, "peak_rss_mib": {}, "warmup_s": {}, "over_floor": {}, "goals": {}}
    for model in models:
        out["ms_per_step"][model] = {v: {p: ms(model, v, p) for p in peers} for v in VARIANTS}
        for variant in VARIANTS:
            out[f"weightwise_over_peer_{variant}"][model] = {
                p: ratio(ms(model, variant, "weightwise"), ms(model, variant, p)) for p in peers if p != "weightwise"}
        out["reg_over_plain"][model] = {p: ratio(ms(model, "reg", p), ms(model, "plain", p)) for p in peers}
        out["peak_rss_mib"][model] = {
            v: {p: (index.get((model, v, p)) or {}).get("peak_rss_mib") for p in peers} for v in VARIANTS}
        out["warmup_s"][model] = {v: {p: value("warmup_s", model, v, p) for p in peers} for v in VARIANTS}
        out["over_floor"][model] = {
            v: {p: ratio(ms(model, v, p), ms(model, v, FLOOR)) for p in peers if p != FLOOR} for v in VARIANTS}
        out["goals"][model] = {goal.key: ratio(value(goal.numerator[0], model, *goal.numerator[1:]),
                                               value(goal.denominator[0], model, *goal.denominator[1:]))
                               for goal in GOALS}
    return out


def goal_rows(summary: dict[str, Any], models: Sequence[str], fmt: Any = None) -> list[list[str]]:
    """One row per goal: its title, its target, its ratio on each model, and on how many models
    it is met (of those that have the ratio).

    >>> summary = {"goals": {"deep": {g.key: 1.0 for g in GOALS}, "wide": {g.key: None for g in GOALS}}}
    >>> goal_rows(summary, ["deep", "wide"])[2]
    ['weightwise reg / plain', '≤ 1.05', '1.00x', '-', '1 of 1']
    """
    fmt = fmt or format_ratio
    rows = []
    for goal in GOALS:
        values = [summary["goals"][model][goal.key] for model in models]
        verdicts = [goal.met(v) for v in values if v is not None]
        rows.append([goal.title, goal.target, *(fmt(v) for v in values),
                     f"{sum(verdicts)} of {len(verdicts)}" if verdicts else MISSING])
    return rows


def tables(results: list[dict[str, Any]], models: Sequence[str], peers: Sequence[str], markdown: bool = False) -> str:
    """The report: ms/step with "weightwise / peer" ratios, each peer over the floor, reg / plain
    per peer, peak memory, the goals, and the notes."""
    index = {(r["model"], r["variant"], r["peer"]): r for r in results}
    summary = summarize(results, models, peers)
    others = [p for p in peers if p not in {"weightwise", FLOOR}] if "weightwise" in peers else []
    heading = (lambda t: f"\n**{t}**\n") if markdown else (lambda t: f"\n{t}\n")

    headers = ["model", "variant", *peers, *(f"ww / {p}" for p in others)]
    rows = []
    for model in models:
        for variant in VARIANTS:
            row = [model, variant, *(cell(index.get((model, variant, p))) for p in peers)]
            ratios = summary["weightwise_over_peer_reg"][model] if variant == "reg" else {}
            row += [format_ratio(ratios.get(p)) if variant == "reg" else "" for p in others]
            rows.append(row)
    parts = [heading("ms per training step (median; lower is better; \"ww / peer\" = weightwise eager time "
                     "over the peer's, reg rows)"), render(headers, rows, markdown)]

    if FLOOR in peers:
        above = [p for p in peers if p != FLOOR]
        floor_rows = [[model, variant, *(format_ratio(summary["over_floor"][model][variant][p]) for p in above)]
                      for model in models for variant in VARIANTS]
        parts += [heading("x floor: each peer's ms/step over the floor's (the bare forward and backward, compiled)"),
                  render(["model", "variant", *above], floor_rows, markdown)]

    overhead = [[model, *(format_ratio(summary["reg_over_plain"][model][p]) for p in peers)] for model in models]
    parts += [heading("reg / plain: cost of the regularizers and constraints, per peer"),
              render(["model", *peers], overhead, markdown)]

    memory = [[model, variant, *(cell(index.get((model, variant, p)), "peak_rss_mib", format_mib) for p in peers)]
              for model in models for variant in VARIANTS]
    parts += [heading("peak RSS of each child process, MiB"), render(["model", "variant", *peers], memory, markdown)]

    parts += [heading("goals (ratios; \"met\" counts the models that have the ratio)"),
              render(["goal", "target", *models, "met"], goal_rows(summary, models), markdown)]

    notes = notes_for(results, peers)
    loads = [r["background_load_cores"] for r in results if r.get("background_load_cores") is not None]
    if loads and max(loads) > BUSY_CORES:
        busy = sum(load > BUSY_CORES for load in loads)
        notes.insert(0, f"other processes kept {max(loads):.1f} cores busy at worst (mean {sum(loads) / len(loads):.2f}) "
                        f"during {busy} of {len(loads)} runs: those timings are noisy")
    if notes:
        parts.append(heading("notes"))
        parts.append("\n".join(f"- {note}" for note in notes))
    return "\n".join(parts).strip("\n") + "\n"


def notes_for(results: list[dict[str, Any]], peers: Sequence[str]) -> list[str]:
    """One line per distinct reason a peer has no number, and per distinct note a child left."""
    seen: dict[str, list[str]] = {}
    for r in results:
        texts = []
        if r.get("status") in {"unavailable", "failed", "timeout"}:
            texts.append(f"{STATUS_CELL[r['status']]}: {r.get('error', '')}".strip())
        texts += r.get("notes", [])
        for text in texts:
            where = f"{r['model']}/{r['variant']}"
            seen.setdefault(f"{r['peer']}: {text}", []).append(where)
    order = {p: i for i, p in enumerate(peers)}
    lines = sorted(seen, key=lambda k: (order.get(k.split(":")[0], len(order)), k))
    return [f"{line} ({', '.join(seen[line])})" if len(seen[line]) <= 4 else f"{line} ({len(seen[line])} runs)" for line in lines]


# The Performance guide's table: on the "reg" variant, every peer's ms/step and its multiple of the floor.
README_PEERS = (("weightwise-jit", "weightwise jit"), ("weightwise", "weightwise"),
                ("torch", "hand-written torch"), ("torch-compile", "torch.compile"),
                ("keras-torch", "Keras (torch)"), ("keras-jax", "Keras (JAX)"))


def _times(value: float | None) -> str:
    return MISSING if value is None else (f"{value:.2f}×" if value < 10 else f"{value:.1f}×")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _memory_line(summary: dict[str, Any], models: Sequence[str]) -> str | None:
    """Peak RSS of the weightwise processes (eager and jit) over the hand-written torch loop's, as a range."""
    parts = []
    for peer, title in (("weightwise", "weightwise"), ("weightwise-jit", "weightwise jit")):
        pairs = [(peaks.get(peer), peaks.get("torch")) for model in models
                 for peaks in summary["peak_rss_mib"][model].values()]
        pairs = [(ours, theirs) for ours, theirs in pairs if ours and theirs]
        if pairs:
            ours = [o for o, _ in pairs]
            parts.append(f"{title} {min(o / t for o, t in pairs):.2f}–{max(o / t for o, t in pairs):.2f}× "
                         f"({min(ours):.0f}–{max(ours):.0f} MiB)")
    if not parts:
        return None
    return f"Peak memory against the hand-written torch loop's: {'; '.join(parts)}."


def readme_table(report: dict[str, Any], labels: dict[str, str]) -> str:
    """The Performance guide's tables and memory line, computed from one run's JSON report (its
    ``results``, so a report saved by an older harness renders the same way).

    The first table gives each peer's ms/step on the "reg" variant and, in parentheses, its
    multiple of the floor (the bare forward and backward, compiled); the second the goals
    (:data:`GOALS`) per model; ``-`` where a number is missing.

    >>> results = [{"model": "deep", "variant": v, "peer": p, "status": "ok", "ms_per_step": ms,
    ...             "peak_rss_mib": 300.0, "warmup_s": 10.0}
    ...            for v, p, ms in [("plain", "floor", 1.0), ("reg", "floor", 1.5), ("reg", "torch", 6.0),
    ...                             ("plain", "weightwise-jit", 1.6), ("reg", "weightwise-jit", 1.8)]]
    >>> report = {"settings": {"models": ["deep"]}, "results": results}
    >>> print(readme_table(report, {"deep": "40 × Dense(64)"}))  # doctest: +NORMALIZE_WHITESPACE
    | model (reg): ms/step (× floor) | floor | weightwise jit | weightwise | hand-written torch | torch.compile | Keras (torch) | Keras (JAX) |
    |---|---:|---:|---:|---:|---:|---:|---:|
    | deep: 40 × Dense(64) | 1.50 | 1.80 (1.20×) | - | 6.00 (4.00×) | - | - | - |
    <BLANKLINE>
    | goal | target | deep | met |
    |---|---|---:|---|
    | weightwise jit / Keras (JAX), reg | < 1 | - | - |
    | weightwise jit / torch.compile, reg | < 1 | - | - |
    | weightwise reg / plain | ≤ 1.05 | - | - |
    | weightwise jit reg / plain | ≤ 1.05 | 1.12× | 0 of 1 |
    | peak RSS, weightwise jit / hand-written torch, plain | ≤ 1.1 | - | - |
    | peak RSS, weightwise jit / hand-written torch, reg | ≤ 1.1 | 1.00× | 1 of 1 |
    | warm-up, weightwise jit / torch.compile, plain | ≤ 2 | - | - |
    | warm-up, weightwise jit / torch.compile, reg | ≤ 2 | - | - |
    <BLANKLINE>
    Peak memory against the hand-written torch loop's: weightwise jit 1.00–1.00× (300–300 MiB).
    """
    models = report["settings"]["models"]
    peers = [FLOOR, *(peer for peer, _ in README_PEERS)]
    summary = summarize(report["results"], models, peers)
    headers = ["model (reg): ms/step (× floor)", "floor", *(title for _, title in README_PEERS)]
    lines = [_row(headers), "|---|" + "---:|" * (len(headers) - 1)]
    for model in models:
        times, over = summary["ms_per_step"][model]["reg"], summary["over_floor"][model]["reg"]
        cells = [format_ms(times[peer]) + (f" ({_times(over[peer])})" if times[peer] and over[peer] else "")
                 for peer, _ in README_PEERS]
        lines.append(_row([f"{model}: {labels[model]}", format_ms(times[FLOOR]), *cells]))
    lines += ["", _row(["goal", "target", *models, "met"]), "|---|---|" + "---:|" * len(models) + "---|"]
    lines += [_row(row) for row in goal_rows(summary, models, _times)]
    memory = _memory_line(summary, models)
    return "\n".join(lines + (["", memory] if memory else []))
