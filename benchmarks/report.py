"""Pure helpers: the median, number formatting, and the tables (plain text or Markdown)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

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


def summarize(results: list[dict[str, Any]], models: Sequence[str], peers: Sequence[str]) -> dict[str, Any]:
    """Every number the tables show, keyed by model, variant and peer (``None`` where there is none)."""
    index = {(r["model"], r["variant"], r["peer"]): r for r in results}

    def ms(model: str, variant: str, peer: str) -> float | None:
        r = index.get((model, variant, peer))
        return r.get("ms_per_step") if r and r.get("status") == "ok" else None

    out: dict[str, Any] = {"ms_per_step": {}, "weightwise_over_peer_reg": {}, "weightwise_over_peer_plain": {},
                           "reg_over_plain": {}, "peak_rss_mib": {}}
    for model in models:
        out["ms_per_step"][model] = {v: {p: ms(model, v, p) for p in peers} for v in ("plain", "reg")}
        for variant in ("plain", "reg"):
            out[f"weightwise_over_peer_{variant}"][model] = {
                p: ratio(ms(model, variant, "weightwise"), ms(model, variant, p)) for p in peers if p != "weightwise"}
        out["reg_over_plain"][model] = {p: ratio(ms(model, "reg", p), ms(model, "plain", p)) for p in peers}
        out["peak_rss_mib"][model] = {
            v: {p: (index.get((model, v, p)) or {}).get("peak_rss_mib") for p in peers} for v in ("plain", "reg")}
    return out


def tables(results: list[dict[str, Any]], models: Sequence[str], peers: Sequence[str], markdown: bool = False) -> str:
    """The report: ms/step with "weightwise / peer" ratios, reg / plain per peer, peak memory, notes."""
    index = {(r["model"], r["variant"], r["peer"]): r for r in results}
    summary = summarize(results, models, peers)
    others = [p for p in peers if p != "weightwise"] if "weightwise" in peers else []
    heading = (lambda t: f"\n**{t}**\n") if markdown else (lambda t: f"\n{t}\n")

    headers = ["model", "variant", *peers, *(f"ww / {p}" for p in others)]
    rows = []
    for model in models:
        for variant in ("plain", "reg"):
            row = [model, variant, *(cell(index.get((model, variant, p))) for p in peers)]
            ratios = summary["weightwise_over_peer_reg"][model] if variant == "reg" else {}
            row += [format_ratio(ratios.get(p)) if variant == "reg" else "" for p in others]
            rows.append(row)
    parts = [heading("ms per training step (median; lower is better; \"ww / peer\" = weightwise eager time "
                     "over the peer's, reg rows)"), render(headers, rows, markdown)]

    overhead = [[model, *(format_ratio(summary["reg_over_plain"][model][p]) for p in peers)] for model in models]
    parts += [heading("reg / plain: cost of the regularizers and constraints, per peer"),
              render(["model", *peers], overhead, markdown)]

    memory = [[model, variant, *(cell(index.get((model, variant, p)), "peak_rss_mib", format_mib) for p in peers)]
              for model in models for variant in ("plain", "reg")]
    parts += [heading("peak RSS of each child process, MiB"), render(["model", "variant", *peers], memory, markdown)]

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


# The README's performance table: weightwise (eager) against each peer on the "reg" variant.
README_PEERS = (("torch", "vs hand-written torch"), ("torch-compile", "vs torch.compile"),
                ("keras-torch", "vs Keras (torch)"), ("keras-jax", "vs Keras (JAX)"))


def _times(value: float | None) -> str:
    return MISSING if value is None else (f"{value:.2f}×" if value < 10 else f"{value:.1f}×")


def _plain(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def readme_table(report: dict[str, Any], labels: dict[str, str]) -> str:
    """The README's performance table and memory line, rendered from one run's JSON report.

    Ratios are weightwise's time over the peer's ("reg" rows: below 1, weightwise is faster),
    and each implementation's "reg" time over its "plain" time.

    >>> ms = {"deep": {"plain": {"weightwise": 2.0, "torch": 2.0}, "reg": {"weightwise": 3.0, "torch": 6.0}}}
    >>> rss = {"deep": {"plain": {"weightwise": 300.0, "torch": 290.0}, "reg": {"weightwise": 310.0, "torch": 300.0}}}
    >>> report = {"settings": {"models": ["deep"]}, "summary": summarize_from(ms, rss)}
    >>> print(readme_table(report, {"deep": "40 × Dense(64)"}))  # doctest: +NORMALIZE_WHITESPACE
    | model (reg) | weightwise ms/step | vs hand-written torch | vs torch.compile | vs Keras (torch) | vs Keras (JAX) | weightwise reg / plain | torch reg / plain |
    |---|---:|---:|---:|---:|---:|---:|---:|
    | deep: 40 × Dense(64) | 3.00 | 0.50× | - | - | - | 1.50 | 3.00 |
    <BLANKLINE>
    Peak memory of the weightwise processes is 1.03–1.03× that of the hand-written torch loop's (300–310 MiB).
    """
    summary = report["summary"]
    headers = ["model (reg)", "weightwise ms/step", *(title for _, title in README_PEERS),
               "weightwise reg / plain", "torch reg / plain"]
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for model in report["settings"]["models"]:
        ratios = summary["weightwise_over_peer_reg"][model]
        overhead = summary["reg_over_plain"][model]
        row = [f"{model}: {labels[model]}", format_ms(summary["ms_per_step"][model]["reg"].get("weightwise")),
               *(_times(ratios.get(peer)) for peer, _ in README_PEERS),
               _plain(overhead.get("weightwise")), _plain(overhead.get("torch"))]
        lines.append("| " + " | ".join(row) + " |")
    pairs = [(peaks.get("weightwise"), peaks.get("torch"))
             for model in report["settings"]["models"] for peaks in summary["peak_rss_mib"][model].values()]
    pairs = [(ours, theirs) for ours, theirs in pairs if ours and theirs]
    if pairs:
        low = min(ours / theirs for ours, theirs in pairs)
        high = max(ours / theirs for ours, theirs in pairs)
        ours = [o for o, _ in pairs]
        memory = (f"Peak memory of the weightwise processes is {low:.2f}–{high:.2f}× that of the hand-written "
                  f"torch loop's ({min(ours):.0f}–{max(ours):.0f} MiB).")
        lines += ["", memory]
    return "\n".join(lines)


def summarize_from(ms: dict[str, Any], rss: dict[str, Any]) -> dict[str, Any]:
    """A :func:`summarize`-shaped summary from ms/step and peak RSS tables (for examples and tests).

    >>> summarize_from({"deep": {"plain": {"weightwise": 2.0}, "reg": {"weightwise": 3.0}}}, {})["reg_over_plain"]
    {'deep': {'weightwise': 1.5}}
    """
    results = []
    for model, variants in ms.items():
        for variant, peers in variants.items():
            for peer, value in peers.items():
                peak = rss.get(model, {}).get(variant, {}).get(peer)
                results.append({"model": model, "variant": variant, "peer": peer, "status": "ok",
                                "ms_per_step": value, "peak_rss_mib": peak})
    peers = list(dict.fromkeys(r["peer"] for r in results))
    return summarize(results, list(ms), peers)
