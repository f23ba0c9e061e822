"""What SimpleRNN, LSTM and GRU share: a cell built from the layer's arguments, and a flat config."""

from __future__ import annotations

from typing import Any

import torch

from weightwise import regularizers
from weightwise.layers.base import InputSpec, Layer
from weightwise.layers.rnn.fused import fusable, run_fused
from weightwise.layers.rnn.gated import check_use_cudnn
from weightwise.layers.rnn.rnn import RNN

__all__ = ["CellRNN"]

# The cell's arguments a layer reads back as its own attributes; the rules among them can be set too.
_READ = ("units", "activation", "use_bias", "kernel_initializer", "recurrent_initializer", "bias_initializer",
         "dropout", "recurrent_dropout")
_RNN_FLAGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll")
_RULES = ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "kernel_constraint",
          "recurrent_constraint", "bias_constraint")


def _delegate(name: str, settable: bool) -> property:
    def get(self: CellRNN) -> Any:
        return getattr(self.cell, name)

    def put(self: CellRNN, value: Any) -> None:
        setattr(self.cell, name, value)

    return property(get, put if settable else None, doc=f"The cell's ``{name}``.")


class CellRNN(RNN):
    """A recurrent layer that makes its own cell (``cell_class``) from its arguments, as Keras's LSTM does.

    The cell is named ``cell_name`` (so weights are ``lstm/lstm_cell/kernel``) and takes the
    layer's dtype and trainability. The cell's arguments read back from the layer
    (``layer.units``, ``layer.kernel_regularizer``); setting a rule attribute on the layer
    sets it on the cell's weight. The config is Keras's: the layer's flags and the cell's
    arguments in one flat dict, with no ``cell`` entry.

    >>> from weightwise.layers import LSTM
    >>> layer = LSTM(3, kernel_regularizer="l2")
    >>> layer.cell.name, layer.kernel_regularizer is layer.cell.kernel_regularizer
    ('lstm_cell', True)
    """

    cell_class: type[Layer]
    cell_name: str
    # Config keys of the cell that Keras leaves out of the layer's config.
    config_drops: tuple[str, ...] = ()

    def __init__(self, given: dict[str, Any], kwargs: dict[str, Any]) -> None:
        """``given``: the subclass's named arguments; ``kwargs``: the rest (the base layer's, ``implementation``)."""
        given, kwargs = dict(given), dict(kwargs)
        takes_cudnn = "use_cudnn" in given  # LSTM and GRU; Keras's SimpleRNN has no such argument
        use_cudnn = check_use_cudnn(given.pop("use_cudnn", "auto"))
        layer_args = {key: given.pop(key) for key in (*_RNN_FLAGS, "activity_regularizer") if key in given}
        if "implementation" in kwargs:
            given["implementation"] = kwargs.pop("implementation")
        cell = self.cell_class(**given, dtype=kwargs.get("dtype"), trainable=kwargs.get("trainable", True),
                               name=self.cell_name)
        super().__init__(cell, **layer_args, **kwargs)
        self.input_spec = InputSpec(ndim=3)
        if takes_cudnn:
            self.use_cudnn = use_cudnn

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in getattr(cls, "delegated", ()):
            if name not in cls.__dict__:
                setattr(cls, name, _delegate(name, settable=name in _RULES))

    delegated: tuple[str, ...] = _READ + _RULES

    def inner_loop(self, sequences: torch.Tensor, initial_state: list[Any], mask: torch.Tensor | None,
                   training: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[Any]]:
        """torch's fused kernel where the configuration allows it (``use_cudnn`` of LSTM and GRU not False), else the step loop.

        ``use_cudnn=True`` raises Keras's error where the configuration cannot be fused: a
        recurrent dropout while training, a mask with holes, or GRU's ``reset_after=False``.
        """
        use_cudnn = self.__dict__.get("use_cudnn", "auto")
        if use_cudnn is not False and fusable(self, mask, training):
            return run_fused(self, sequences, initial_state, training, mask)
        if use_cudnn is True and (
                (training and self.cell.recurrent_dropout > 0) or mask is not None
                or not getattr(self.cell, "reset_after", True)):
            raise ValueError("use_cudnn=True was specified, but cuDNN is not supported for this layer configuration "
                             "with this backend. Pass use_cudnn='auto' to fallback to a non-cuDNN implementation.")
        return super().inner_loop(sequences, initial_state, mask, training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["cell"]
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype", *self.config_drops):
            cell_config.pop(key, None)
        return {**config, **cell_config, "activity_regularizer": regularizers.serialize(self.activity_regularizer)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Layer:
        return Layer.from_config.__func__(cls, config)
