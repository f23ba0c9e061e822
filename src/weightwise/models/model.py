"""``Model``: a Layer that trains. Subclass it (``__init__`` + ``call``), or call it as
``Model(inputs, outputs)`` for a functional model."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch


from weightwise.layers import InputLayer, Layer
from weightwise.models.training import Trainer

__all__ = ["Model"]


class Model(Trainer, Layer):
    """A layer with the training API: ``compile``, ``fit``, ``evaluate``, ``predict``.

    ``Model(inputs, outputs)`` builds a functional model from symbolic tensors;
    subclassing ``Model`` and writing ``call`` gives a subclassed model. Either way it
    is a ``torch.nn.Module``, and ``model.losses`` aggregates every layer.

    >>> from weightwise import layers
    >>> class TwoLayer(Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = layers.Dense(8, activation="relu", kernel_regularizer="l2")
    ...         self.out = layers.Dense(1)
    ...     def call(self, inputs):
    ...         return self.out(self.hidden(inputs))
    >>> model = TwoLayer()
    >>> model(layers.Input(shape=(3,))).shape
    (None, 1)
    >>> [layer.name for layer in model.layers] == [model.hidden.name, model.out.name]
    True
    >>> len(model.losses)
    1
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Model:
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from weightwise.models.functional import Functional

            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            raise TypeError(
                f"{type(self).__name__}.__init__ takes keyword arguments only (name=, trainable=, ...). "
                "For a functional model call Model(inputs, outputs)."
            )
        super().__init__(**kwargs)

    @property
    def layers(self) -> list[Layer]:
        """The model's layers, in the order they were attached."""
        return [child for child in self.children() if isinstance(child, Layer) and not isinstance(child, InputLayer)]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """Return a layer by ``name``, or by ``index`` in :attr:`layers`.

        >>> from weightwise import layers, Sequential
        >>> model = Sequential([layers.Dense(2, name="first"), layers.Dense(1, name="second")])
        >>> model.get_layer("second").units
        1
        """
        if (name is None) == (index is None):
            raise ValueError(f"Provide exactly one of `name` or `index`. Received: name={name!r}, index={index!r}")
        layers = self.layers
        if index is not None:
            if not isinstance(index, int) or not -len(layers) <= index < len(layers):
                raise ValueError(f"Was asked to retrieve layer at index {index!r} but model only has {len(layers)} layers.")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[layer.name for layer in layers]}.")

    def save_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Write the weights (``state_dict``) to ``filepath`` in torch's format, atomically.

        The file is written beside the target and renamed into place, so an interrupted
        save never damages an existing file. (Keras's ``.weights.h5`` format is not
        written here.)
        """
        path = os.fspath(filepath)
        if path.endswith(".h5"):
            raise ValueError(
                f"save_weights writes torch's format; Keras's .weights.h5 files are not supported yet. "
                f"Use another suffix, such as '.pt'. Received: filepath={path!r}"
            )
        directory = os.path.dirname(os.path.abspath(path))
        handle, temporary = tempfile.mkstemp(prefix=".weights-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(self.state_dict(), stream)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Load weights written by :meth:`save_weights` (no code is executed: ``weights_only=True``).

        Every tensor is checked against the model first; on a mismatch nothing changes.
        """
        state = torch.load(os.fspath(filepath), map_location="cpu", weights_only=True)
        current = self.state_dict()
        missing, unexpected = sorted(set(current) - set(state)), sorted(set(state) - set(current))
        mismatched = [k for k in current if k in state and tuple(state[k].shape) != tuple(current[k].shape)]
        if missing or unexpected or mismatched:
            raise ValueError(
                f"The weights in {os.fspath(filepath)!r} do not fit model {self.name!r}: missing {missing}, "
                f"unexpected {unexpected}, shape mismatches {mismatched}. No weight was changed."
            )
        self.load_state_dict(state)

    def summary(self, line_length: int = 110, print_fn: Any = None) -> None:
        """Print each layer's name, type, output shape, parameter count, and the regularizers and
        constraints bound to its weights (a column Keras does not have)."""
        from weightwise.models.summary import summary_lines

        for line in summary_lines(self, line_length):
            (print_fn or print)(line)
