"""Runs every Keras test under the import swap, and applies the exclusion and failure tables."""

from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase

import pytest

from keras_suite.selection import EXCLUDED, FAILING
from keras_suite.swap import swapped


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires_trainable_backend: Keras's marker; torch trains")


def _test_id(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[1]


def _match(table: dict[str, str], test_id: str) -> str | None:
    return next((reason for pattern, reason in table.items() if fnmatchcase(test_id, pattern)), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "keras_suite" not in item.nodeid:
            continue
        test_id = _test_id(item)
        reason = _match(EXCLUDED, test_id)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"out of scope: {reason}"))
            continue
        reason = _match(FAILING, test_id)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.fixture(autouse=True)
def _keras_names_are_weightwise(request: pytest.FixtureRequest) -> Iterator[None]:
    # Keras's tests also import inside test bodies; those imports must see weightwise too.
    if request.node.path.name != "test_keras_own.py":
        yield
        return
    with swapped():
        yield
