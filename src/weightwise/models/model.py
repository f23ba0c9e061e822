"""``Model``: a Layer that trains. Subclass it (``__init__`` + ``call``), or call it as
``Model(inputs, outputs)`` for a functional model."""

from __future__ import annotations

import json
import os
from typing import Any

from weightwise import saving
from weightwise.layers import Input, InputLayer, Layer
from weightwise.models.training import Trainer
from weightwise.saving.files import check_path
from weightwise.saving.torch_weights import load_torch_weights, save_torch_weights
from weightwise.serialization import serialize_keras_object

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

    # The class that ``Model(inputs, outputs)`` makes. ``weightwise.models.functional`` declares it
    # (``class Functional(Model, functional=True)``), so this module never imports that one back.
    _functional_class: type[Model] | None = None

    def __init_subclass__(cls, functional: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if functional:
            Model._functional_class = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> Model:
        if cls is Model and _functional_arguments(args, kwargs):
            return super().__new__(_functional_class())
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if _functional_arguments(args, kwargs):
            # A subclass whose __init__ lays out a graph and calls super().__init__(inputs, outputs),
            # as Keras's guides write: the class becomes a functional model, as in Keras.
            functional = _functional_class()
            if not isinstance(self, functional):
                _make_functional(type(self), functional)
            functional.__init__(self, *args, **kwargs)
            return
        if args:
            raise TypeError(
                f"{type(self).__name__}.__init__ takes keyword arguments only (name=, trainable=, ...). "
                "For a functional model call Model(inputs, outputs). "
                f"Received: args={args!r:.200}"
            )
        super().__init__(**kwargs)

    def build(self, input_shape: Any = None) -> None:
        """Build a subclassed model by calling it on symbolic inputs of ``input_shape``.

        ``input_shape`` is one shape (batch axis first), or a list or dict of them for a
        model taking several inputs. Every layer the call reaches creates its weights, so
        ``count_params()`` and ``summary()`` work afterwards. (Keras 3 marks such a model
        built without building its layers, so its count is 0; tf.keras built them.)

        >>> from weightwise import layers
        >>> class Net(Model):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.dense = layers.Dense(2)
        ...     def call(self, inputs):
        ...         return self.dense(inputs)
        >>> net = Net()
        >>> net.build((None, 3))
        >>> net.built, net.count_params()
        (True, 8)
        """
        if input_shape is None:
            raise ValueError(
                f"Model {self.name!r}: `build()` needs the input shape, such as `build((None, 3))`. "
                f"Received: input_shape={input_shape!r}"
            )
        inputs = _symbolic_inputs(input_shape, self.dtype)
        # Built before the call, so that the call runs instead of building again.
        self.built = True
        self(inputs)

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
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Invalid value for argument `name`: expected a str. Received: name={name!r}")
        layers = self.layers
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or not -len(layers) <= index < len(layers):
                raise ValueError(f"Was asked to retrieve layer at index {index!r} but model only has {len(layers)} layers.")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[layer.name for layer in layers]}.")

    # -- configs ---------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The model's constructor arguments.

        Sequential and functional models describe themselves. A subclassed model must
        override ``get_config`` (returning its ``__init__`` arguments, starting from
        ``super().get_config()``), since only it knows what its constructor takes.
        """
        if type(self).get_config is Model.get_config:
            raise self._get_config_missing()
        return Layer.get_config(self)

    def _get_config_missing(self) -> NotImplementedError:
        return NotImplementedError(
            f"Model {self.name!r} is a subclassed model ({type(self).__name__}) without `get_config()`, so it "
            "cannot be saved as a config, cloned or written to JSON. Implement `get_config(self)` returning the "
            "arguments of its `__init__` (start from `super().get_config()`, which holds name, trainable and "
            "dtype), and `from_config(cls, config)` if `cls(**config)` cannot rebuild it. To keep just the "
            "weights, use `save_weights`."
        )

    def to_json(self, **kwargs: Any) -> str:
        """The model's config as a JSON string (Keras 3's form; weights are not included).

        ``kwargs`` go to ``json.dumps`` (``indent=2``, ...).

        >>> from weightwise import layers, Sequential
        >>> text = Sequential([layers.Input(shape=(3,)), layers.Dense(1, kernel_constraint="non_neg")]).to_json()
        >>> import json; json.loads(text)["class_name"]
        'Sequential'
        """
        return json.dumps(serialize_keras_object(self), **kwargs)

    def _build_once(self, input_shape: Any) -> None:
        if not self.built and type(self).build is Model.build:
            # No build of its own: the call itself builds the layers it reaches, as in Keras.
            self.built = True
            self.__dict__["_built_input_shape"] = input_shape
            return
        super()._build_once(input_shape)

    def build_from_config(self, config: dict[str, Any]) -> None:
        """Build a subclassed model from its saved input shape by calling it on symbolic inputs of that shape.

        The call runs the model's own ``build`` first, if it has one, so every layer the call
        reaches exists before saved weights are read into it.
        """
        if self.built:
            return
        shape = config.get("input_shape") if isinstance(config, dict) else None
        if shape is None:
            return
        if type(self).build is Model.build:
            self.build(shape)
        else:
            self(_symbolic_inputs(shape, self.dtype))
            self.built = True

    # -- files -----------------------------------------------------------------------------
    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Save the whole model (config, weights, optimizer state) as a Keras 3 ``.keras`` file.

        Keras 3 loads the file with ``keras.saving.load_model``; weightwise with
        :func:`weightwise.models.load_model`. The write is atomic.
        """
        saving.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Write the weights, atomically: Keras 3's format for a ``.weights.h5`` name, else torch's.

        ``*.weights.h5`` files hold the weights (and a compiled model's optimizer state)
        in Keras's layout, so Keras's ``load_weights`` reads them. Any other name gets
        ``torch.save(state_dict)``. Either way the file is written beside the target and
        renamed into place, so an interrupted save never damages an existing file.
        """
        path = check_path(filepath)
        if path.endswith(".weights.h5"):
            saving.save_weights(self, path, overwrite=overwrite)
            return
        if path.endswith((".h5", ".hdf5", ".keras")):
            raise ValueError(
                "save_weights writes Keras's weights format for names ending in `.weights.h5`, and torch's format "
                "otherwise (such as `.pt`); use `save()` for a `.keras` file. "
                f"Received: filepath={path!r}"
            )
        save_torch_weights(self, path, overwrite=overwrite)

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Load weights from a ``.weights.h5`` or ``.keras`` file (ours or Keras's), or from
        :meth:`save_weights`'s torch format (``weights_only=True``: no code is executed).

        Every tensor is checked against the model first (its name, shape, and a dtype that
        casts without loss of kind, as :func:`weightwise.saving.weights_h5.cast_to` says); on a mismatch nothing changes.
        """
        path = check_path(filepath)
        if path.endswith((".h5", ".hdf5", ".keras")):
            saving.load_weights(self, path)
            return
        load_torch_weights(self, path)

    def summary(self, line_length: int = 110, print_fn: Any = None) -> None:
        """Print each layer's name, type, output shape, parameter count, and the regularizers and
        constraints bound to its weights (a column Keras does not have)."""
        from weightwise.models.summary import summary_lines

        # A line longer than any terminal only wastes memory; 10**400 would not even fit an index.
        if isinstance(line_length, bool) or not isinstance(line_length, int) or not 0 < line_length <= 10_000:
            raise ValueError(
                f"Invalid value for argument `line_length`: expected an int in [1, 10000]. Received: line_length={line_length!r}"
            )
        if print_fn is not None and not callable(print_fn):
            raise TypeError(f"Invalid value for argument `print_fn`: expected a callable. Received: print_fn={print_fn!r}")

        for line in summary_lines(self, line_length):
            (print_fn or print)(line)


def _functional_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a constructor call is ``Model(inputs, outputs, ...)`` in any of its spellings."""
    return len(args) == 2 or (len(args) == 1 and "outputs" in kwargs) or ("inputs" in kwargs and "outputs" in kwargs)


def _functional_class() -> type[Model]:
    if Model._functional_class is None:
        raise RuntimeError("weightwise.models.functional is not imported; import weightwise.models first.")
    return Model._functional_class


def _make_functional(cls: type, functional: type[Model]) -> None:
    """Put ``functional`` among the bases of ``cls`` (once per class), so that its instances are functional models.

    Keras rewrites the class hierarchy the same way. ``Model`` as a direct base becomes
    ``Functional``; otherwise ``Functional`` is appended, which keeps the method order ``cls``,
    its own bases, ``Functional``, ``Model``. The classes ``cls`` derives from are left
    alone, so they still make models of their own.
    """
    if Model in cls.__bases__:
        cls.__bases__ = tuple(functional if base is Model else base for base in cls.__bases__)
    else:
        cls.__bases__ = (*cls.__bases__, functional)


def _symbolic_inputs(shape: Any, dtype: str) -> Any:
    """``Input`` tensors for a shape (batch axis first) or a list or dict of shapes."""
    if isinstance(shape, dict):
        return {key: _symbolic_inputs(value, dtype) for key, value in shape.items()}
    if isinstance(shape, (list, tuple)) and shape and all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape):
        return Input(batch_shape=(None, *shape[1:]), dtype=dtype)
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(s, (list, tuple, dict)) for s in shape):
        return [_symbolic_inputs(value, dtype) for value in shape]
    raise ValueError(f"Invalid value for argument `input_shape`: expected a shape with a batch axis, such as "
                     f"(None, 3), or a list or dict of them. Received: input_shape={shape!r}")
