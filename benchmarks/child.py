"""One measurement in a fresh interpreter: ``python -m benchmarks.child SPEC_JSON RESULT_PATH``.

The spec names the peer, the model, the variant (plain or reg), the steps per epoch and the
repeats. The child builds the model, runs one warm-up epoch (compilation included), then times
``repeats`` epochs and writes a JSON result: ms/step for each repeat and their median, the
warm-up time, the peak RSS of the process (``ru_maxrss``) and the RSS growth during the timed
epochs. Status is ``ok``, ``unavailable`` (the peer cannot run here) or ``failed``.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import resource
import sys
import time
import traceback
import warnings
from typing import Any

from benchmarks.report import median
from benchmarks.specs import MODELS, PEERS, THREADS


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _set_threads(threads: int, requires: tuple[str, ...]) -> None:
    if "torch" in requires:  # a JAX child never imports torch, so its memory is its own
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set, or parallel work already started
            pass


def measure(job: dict[str, Any]) -> dict[str, Any]:
    peer = PEERS[job["peer"]]
    spec = MODELS[job["model"]]
    steps, repeats = int(job["steps"]), int(job["repeats"])
    result: dict[str, Any] = {"peer": peer.name, "model": spec.name, "variant": job["variant"],
                              "steps": steps, "repeats": repeats, "pid": os.getpid(), "notes": []}
    try:
        _set_threads(int(job.get("threads", THREADS)), peer.requires)
        from benchmarks.data import make_data
        from benchmarks.peers import Unavailable

        try:
            module = importlib.import_module(f"benchmarks.peers.{peer.module}")
            x, y = make_data(spec, steps)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trial = module.setup(peer.name, spec, job["variant"] == "reg", x, y, steps)
                start = time.perf_counter()
                trial.run_warmup()
                result["warmup_s"] = time.perf_counter() - start
            messages = sorted({str(w.message).splitlines()[0][:200] for w in caught})
            if messages:
                result["warnings"] = messages
        except Unavailable as error:
            result.update(status="unavailable", error=str(error), peak_rss_mib=_peak_rss_mib())
            return result
        except ImportError as error:
            result.update(status="unavailable", error=f"{type(error).__name__}: {error}", peak_rss_mib=_peak_rss_mib())
            return result
        result["notes"] += trial.notes
        result.update(trial.info)

        times_ms, rss_deltas, peak_before = [], [], _peak_rss_mib()
        rss_start = _current_rss_mib()
        for _ in range(repeats):
            gc.collect()
            rss_before = _current_rss_mib()
            start = time.perf_counter()
            trial.epoch()
            elapsed = time.perf_counter() - start
            rss_deltas.append(_current_rss_mib() - rss_before)
            times_ms.append(1000.0 * elapsed / steps)
        result.update(
            status="ok",
            ms_per_step=median(times_ms),
            repeat_ms_per_step=times_ms,
            min_ms_per_step=min(times_ms),
            peak_rss_mib=_peak_rss_mib(),
            peak_rss_growth_timed_mib=_peak_rss_mib() - peak_before,
            rss_growth_timed_mib=_current_rss_mib() - rss_start,
            rss_growth_per_epoch_mib=rss_deltas,
        )
    except Exception as error:  # noqa: BLE001 - reported, not raised: the parent records the failure
        result.update(status="failed", error=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc()[-4000:], peak_rss_mib=_peak_rss_mib())
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m benchmarks.child SPEC_JSON RESULT_PATH", file=sys.stderr)
        return 2
    job = json.loads(argv[0])
    result = measure(job)
    with open(argv[1], "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
