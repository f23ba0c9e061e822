"""Tally of the adversarial suite: how many cases end in each outcome."""

from __future__ import annotations

from typing import Any

from harness import OUTCOMES

_FAILED: list[str] = []


def pytest_runtest_logreport(report: Any) -> None:
    if report.failed and "adversarial" in report.nodeid:
        _FAILED.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    total = sum(OUTCOMES.values()) + len(_FAILED)
    if not total:
        return
    terminalreporter.write_sep("-", "adversarial cases")
    terminalreporter.write_line(
        f"{total} cases: {OUTCOMES['correct result']} correct result, {OUTCOMES['clear error']} clear error, "
        f"{len(_FAILED)} anything else (failed tests)"
    )
