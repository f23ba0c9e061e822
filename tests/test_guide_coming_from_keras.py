"""The guide "Coming from Keras": its script is a Keras 3 script, and its table of differences is whole."""

from __future__ import annotations

import re

from docs_pages import DOCS, python_block
from helpers import keras_or_skip

PAGE = DOCS / "guides" / "coming-from-keras.md"


def test_the_drop_in_script_runs_on_keras_itself(tmp_path, monkeypatch) -> None:
    """The page's first script, with `import keras` in place of weightwise, runs on Keras 3 too."""
    keras = keras_or_skip()
    code = python_block(PAGE, "import weightwise as keras")
    swapped = code.replace("import weightwise as keras", "import keras")
    swapped = swapped.replace("from weightwise import", "from keras import")
    assert "weightwise" not in swapped
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(swapped, str(PAGE), "exec"), namespace)
    assert isinstance(namespace["model"], keras.Model)
    assert {"loss", "accuracy"} <= set(namespace["history"].history)


def test_the_deliberate_differences_are_one_table_of_four_columns() -> None:
    text = PAGE.read_text()
    section = text.split("\n## What differs on purpose\n", 1)[1].split("\n## ", 1)[0]
    header = "| difference | Keras 3.15.1 | weightwise | why |"
    assert text.count(header) == 1 and header in section
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    assert len(rows) >= 60
    for row in rows:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert len(cells) == 4 and all(cells), row
