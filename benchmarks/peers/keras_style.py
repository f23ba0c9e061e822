"""The benchmark models written once against Keras's API, for ``keras`` and for ``weightwise``.

``weightwise`` spells Keras's names (``import weightwise as keras``), so one builder serves both.
"""

from __future__ import annotations

from typing import Any

from benchmarks.specs import (
    ACTIVITY_L1,
    BIAS_L1,
    KERNEL_L2,
    LEARNING_RATE,
    MAX_NORM,
    NUM_CLASSES,
    ModelSpec,
)


def build(K: Any, spec: ModelSpec, reg: bool) -> Any:
    """``K.Sequential`` for ``spec``; with ``reg``, the penalties on hidden layers and MaxNorm everywhere."""
    L, R, C = K.layers, K.regularizers, K.constraints

    def rules(hidden: bool, conv: bool) -> dict[str, Any]:
        if not reg:
            return {}
        # Keras kernels: Dense (in, out) -> axis 0 is per unit; Conv2D (kh, kw, in, out) -> per filter.
        out: dict[str, Any] = {"kernel_constraint": C.MaxNorm(MAX_NORM, axis=[0, 1, 2] if conv else 0)}
        if hidden:
            out.update(kernel_regularizer=R.L2(KERNEL_L2), bias_regularizer=R.L1(BIAS_L1),
                       activity_regularizer=R.L1(ACTIVITY_L1))
        return out

    if spec.vocab:
        # Keras's LSTM kernel and recurrent kernel are (in, 4 * units): axis 0 is per gate unit.
        recurrent = {"recurrent_regularizer": R.L2(KERNEL_L2), "recurrent_constraint": C.MaxNorm(MAX_NORM, axis=0)}
        return K.Sequential([
            K.Input(shape=spec.input_shape, dtype="int64"),
            L.Embedding(spec.vocab, spec.embed_dim),
            L.LSTM(spec.lstm_units, **rules(True, False), **(recurrent if reg else {})),
            L.Dense(NUM_CLASSES, **rules(False, False)),
        ])
    layers: list[Any] = [K.Input(shape=spec.input_shape)]
    for index, filters in enumerate(spec.conv_filters):
        layers.append(L.Conv2D(filters, 3, padding="same", activation="relu", **rules(True, True)))
        if index in spec.pool_after:
            layers.append(L.MaxPooling2D(2))
    if spec.conv_filters:
        layers.append(L.Flatten())
    for units in spec.dense_units:
        layers.append(L.Dense(units, activation="relu", **rules(True, False)))
    layers.append(L.Dense(NUM_CLASSES, **rules(False, False)))
    return K.Sequential(layers)


def compile_args(K: Any) -> dict[str, Any]:
    return {"optimizer": K.optimizers.SGD(learning_rate=LEARNING_RATE),
            "loss": K.losses.SparseCategoricalCrossentropy(from_logits=True)}


def fit_epoch(model: Any, x: Any, y: Any, batch: int) -> Any:
    """One epoch of ``fit`` exactly as a user calls it: no shuffling, no progress output."""
    return model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
