"""``plot_model`` and ``model_to_dot``: drawing a model's graph needs pydot and graphviz.

weightwise does not draw graphs; both functions raise an ``ImportError`` that says so, as
Keras does when pydot is missing, so a script can catch it and go on. Use
``model.summary()`` to see the layers.

>>> try:
...     plot_model(None)
... except ImportError as error:
...     print(str(error).split(".")[0])
plot_model needs a graph drawing library (pydot and graphviz), which weightwise does not use
"""

from __future__ import annotations

from typing import Any

__all__ = ["model_to_dot", "plot_model"]


def _unavailable(function: str) -> ImportError:
    return ImportError(
        f"{function} needs a graph drawing library (pydot and graphviz), which weightwise does not use. "
        "Call `model.summary()` to print the layers instead."
    )


def plot_model(model: Any, to_file: str = "model.png", *args: Any, **kwargs: Any) -> None:
    """Keras's model plot; here always an ``ImportError`` naming the way to see the model instead.

    >>> plot_model(None)
    Traceback (most recent call last):
    ...
    ImportError: plot_model needs a graph drawing library (pydot and graphviz), which weightwise does not use. ...
    """
    raise _unavailable("plot_model")


def model_to_dot(model: Any, *args: Any, **kwargs: Any) -> None:
    """Keras's graph of a model as a pydot object; here always an ``ImportError``, as :func:`plot_model`.

    >>> model_to_dot(None)
    Traceback (most recent call last):
    ...
    ImportError: model_to_dot needs a graph drawing library (pydot and graphviz), which weightwise does not use. ...
    """
    raise _unavailable("model_to_dot")
