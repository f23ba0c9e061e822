"""The parent process: runs every (model, variant, peer) in its own child, then prints and saves the report."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.report import BUSY_CORES, format_ms, readme_table, summarize, tables
from benchmarks.specs import (
    DEFAULT_PEERS,
    LEARNING_RATE,
    MODELS,
    PEERS,
    REPEATS,
    SMOKE,
    STEPS,
    THREADS,
    VARIANTS,
)

ROOT = Path(__file__).resolve().parents[1]


def _names(text: str | None, known: dict[str, Any], what: str) -> list[str]:
    if not text:
        return list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(known)})")
    return [n for n in known if n in names]  # canonical order


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="ms per training step of weightwise against hand-written PyTorch and Keras 3, "
                    "each peer in its own process.")
    parser.add_argument("--smoke", action="store_true",
                        help=f"a few seconds: the {', '.join(SMOKE['models'])} model, peers {', '.join(SMOKE['peers'])},"
                             f" {SMOKE['steps']} steps, {SMOKE['repeats']} repeat, {SMOKE['threads']} thread (the tests use it)")
    parser.add_argument("--steps", type=int, help=f"batches per timed epoch (default {STEPS})")
    parser.add_argument("--repeats", type=int, help=f"timed epochs after the warm-up; the median is reported "
                                                    f"(default {REPEATS})")
    parser.add_argument("--only", metavar="PEER,...",
                        help=f"peers to run (default: {', '.join(DEFAULT_PEERS)}; also: "
                             f"{', '.join(p for p in PEERS if p not in DEFAULT_PEERS)})")
    parser.add_argument("--models", metavar="MODEL,...", help=f"models to run (default all: {', '.join(MODELS)})")
    parser.add_argument("--variants", metavar="VARIANT,...", help="plain, reg or both (default both)")
    parser.add_argument("--out", metavar="PATH", help="write every number, the machine and the settings as JSON")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--readme", action="store_true",
                        help="also print the Performance guide's tables and memory line for this run")
    parser.add_argument("--merge", action="store_true",
                        help="with --out: keep the other models' results already in that file and replace only the "
                             "models run now (same peers and settings required); each part's date and wall time "
                             "are kept under 'runs'")
    parser.add_argument("--report", metavar="PATH",
                        help="run nothing: print the tables (with --markdown, --readme) of the run recorded in PATH")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per child process (default 900)")
    parser.add_argument("--threads", type=int, help=f"intra-op threads per child (default {THREADS}; 1 with --smoke)")
    args = parser.parse_args(argv)
    smoke = SMOKE if args.smoke else {}
    args.steps = args.steps or smoke.get("steps", STEPS)
    args.repeats = args.repeats or smoke.get("repeats", REPEATS)
    args.threads = args.threads or smoke.get("threads", THREADS)
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be positive")
    args.peer_names = _names(args.only, PEERS, "peer") if args.only else list(smoke.get("peers", DEFAULT_PEERS))
    args.model_names = _names(args.models, MODELS, "model") if args.models else list(smoke.get("models", MODELS))
    args.variant_names = _names(args.variants, dict.fromkeys(VARIANTS), "variant")
    if args.report and (args.out or args.merge):
        parser.error("--report prints a recorded run; it cannot be combined with --out or --merge")
    if args.merge and not args.out:
        parser.error("--merge needs --out PATH, the run to merge into")
    args.previous = _previous_run(parser, args) if args.merge else None
    return args


def _previous_run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The run ``--merge`` adds to: it must exist, be complete, and share the peers and the settings."""
    path = Path(args.out)
    if not path.is_file():
        parser.error(f"--merge: no previous run at {args.out}")
    previous = json.loads(path.read_text())
    settings = previous.get("settings", {})
    mine = {"steps": args.steps, "repeats": args.repeats, "threads": args.threads, "smoke": args.smoke,
            "peers": args.peer_names, "variants": args.variant_names}
    theirs = {key: settings.get(key) for key in mine}
    if theirs != mine or not previous.get("complete"):
        parser.error(f"--merge: {args.out} is not a complete run with the same settings {mine} (it has {theirs}, "
                     f"complete={previous.get('complete')})")
    return previous


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The CPU, the core count and the versions, read without importing the frameworks."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = models[0] if models else cpu
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "usable_cores": affinity,
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("weightwise", "torch", "keras", "jax", "jaxlib", "numpy")},
    }


def missing_dependency(peer: str) -> str | None:
    lacking = [m for m in PEERS[peer].requires if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(lacking)}" if lacking else None


def child_env(peer: str, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("KERAS_BACKEND", None)
    env.pop("XLA_FLAGS", None)
    env.update(PEERS[peer].env)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    if "XLA_FLAGS" in env:
        env["XLA_FLAGS"] = env["XLA_FLAGS"].replace(f"threads={THREADS}", f"threads={threads}")
    return env


def _cpu_busy_s() -> float | None:
    """Seconds of CPU time the whole machine has spent busy (all cores, steal included), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(job: dict[str, Any], timeout: float, threads: int) -> dict[str, Any]:
    """One measurement in a fresh interpreter; a crash or a timeout becomes a result too.

    Also records ``background_load_cores``: the cores other processes kept busy meanwhile
    (machine busy time minus the child's own CPU time, over the wall time), since a second
    job on a 2-core machine makes every timing here meaningless.
    """
    base = {k: job[k] for k in ("peer", "model", "variant", "steps", "repeats")}
    busy_before, child_before = _cpu_busy_s(), _children_cpu_s()
    with tempfile.TemporaryDirectory(prefix="ww-bench-") as tmp:
        out = Path(tmp) / "result.json"
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.child", json.dumps(job), str(out)],
                                  cwd=ROOT, env=child_env(job["peer"], threads), capture_output=True, text=True, check=False,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {**base, "status": "timeout", "error": f"no result after {timeout:.0f} s", "notes": [],
                    "wall_s": time.perf_counter() - start}
        wall = time.perf_counter() - start
        busy_after, child_cpu = _cpu_busy_s(), _children_cpu_s() - child_before
        if out.exists():
            result = json.loads(out.read_text())
        else:
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or [""]
            result = {**base, "status": "failed", "notes": [],
                      "error": f"child exited with {proc.returncode}: {tail[0][:300]}",
                      "stderr_tail": (proc.stderr or "")[-4000:]}
    result["wall_s"] = wall
    result["child_cpu_s"] = child_cpu
    if busy_before is not None and busy_after is not None and wall > 0:
        result["background_load_cores"] = max(0.0, (busy_after - busy_before - child_cpu) / wall)
    return result


def describe(result: dict[str, Any]) -> str:
    if result["status"] == "ok":
        load = result.get("background_load_cores") or 0.0
        return (f"{format_ms(result['ms_per_step'])} ms/step, warm-up {result.get('warmup_s', 0):.1f} s, "
                f"peak {result.get('peak_rss_mib', 0):.0f} MiB" + (f", background load {load:.1f} cores"
                                                                  if load > BUSY_CORES else ""))
    return f"{result['status']}: {result.get('error', '')}"[:240]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every job in turn; with ``--out``, the JSON is rewritten after each one (``complete`` false until the end)."""
    jobs = [(m, v, p) for m in args.model_names for v in args.variant_names for p in args.peer_names]
    results: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    started = time.perf_counter()
    info = machine()
    report: dict[str, Any] = {}
    for number, (model, variant, peer) in enumerate(jobs, 1):
        job = {"peer": peer, "model": model, "variant": variant, "steps": args.steps, "repeats": args.repeats,
               "threads": args.threads}
        reason = unavailable.get(peer) or missing_dependency(peer)
        if reason:
            # Once a peer cannot run here, it cannot run for the next model either: no new child.
            result = {**{k: job[k] for k in ("peer", "model", "variant", "steps", "repeats")},
                      "status": "unavailable", "error": reason, "notes": []}
        else:
            result = run_child(job, args.timeout, args.threads)
            if result["status"] == "unavailable":
                unavailable[peer] = result.get("error", "unavailable")
        results.append(result)
        print(f"[{number}/{len(jobs)}] {model:5s} {variant:5s} {peer:16s} {describe(result)}",
              file=sys.stderr, flush=True)
        report = _report(args, info, results, time.perf_counter() - started, complete=number == len(jobs))
        if args.out:
            save(report, args.out)
    return report or _report(args, info, results, 0.0, complete=True)


def _report(args: argparse.Namespace, info: dict[str, Any], results: list[dict[str, Any]], wall: float,
            complete: bool) -> dict[str, Any]:
    part = {"models": args.model_names, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "wall_s": wall, "machine": info}
    previous = getattr(args, "previous", None)
    if previous is not None:
        # Results of the models run now replace theirs; every other model keeps its earlier run.
        kept = [r for r in previous["results"] if r["model"] not in args.model_names]
        models = [m for m in MODELS if m in args.model_names or m in previous["settings"]["models"]]
        runs = [dict(run, models=[m for m in run["models"] if m not in args.model_names])
                for run in previous.get("runs", [{"models": previous["settings"]["models"],
                                                  "wall_s": previous.get("total_wall_s"),
                                                  "machine": previous.get("machine")}])]
        merged = _report(argparse.Namespace(**{**vars(args), "model_names": models, "previous": None}),
                         info, kept + results, wall, complete)
        merged["runs"] = [run for run in runs if run["models"]] + [part]
        merged["total_wall_s"] = sum(run.get("wall_s") or 0.0 for run in merged["runs"])
        return merged
    return {
        "machine": info,
        "settings": {"steps": args.steps, "repeats": args.repeats, "smoke": args.smoke, "threads": args.threads,
                     "optimizer": f"SGD(learning_rate={LEARNING_RATE})",
                     "loss": "sparse categorical crossentropy from logits",
                     "models": args.model_names, "variants": args.variant_names, "peers": args.peer_names,
                     "timeout_s": args.timeout},
        "models": {m: MODELS[m].description for m in args.model_names},
        "peers": {p: PEERS[p].description for p in args.peer_names},
        "complete": complete,
        "total_wall_s": wall,
        "results": results,
        "summary": summarize(results, args.model_names, args.peer_names),
        "runs": [part],
    }


def save(report: dict[str, Any], out: str) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = json.loads(Path(args.report).read_text()) if args.report else run(args)
    settings = report["settings"]
    models = settings["models"]
    text = tables(report["results"], models, settings["peers"], markdown=args.markdown)
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    print(f"{m['cpu']}, {m['cores']} cores; {versions}; {settings['steps']} steps x {settings['repeats']} repeats, "
          f"{settings['threads']} threads per process\n")
    print(text)
    if args.readme:
        print(readme_table(report, {m: MODELS[m].label for m in models}))
    if args.out:
        print(f"results written to {args.out}")
    return 0
