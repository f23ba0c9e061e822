"""The founding documents' examples, run and printed next to what the documentation says.

Run with ``python -m weightwise.seed_examples``. Each line shows an example from the
Keras regularizer and constraint documentation, what weightwise computes for it,
and the documented value.
"""

from __future__ import annotations

import json

import torch

import weightwise as keras
from weightwise import binding, constraints, layers, ops, regularizers


class NonNegative(keras.constraints.Constraint):
    """The documentation's custom constraint."""

    def __call__(self, w):
        return w * ops.cast(ops.greater_equal(w, 0.0), dtype=w.dtype)


class CenterAround(keras.constraints.Constraint):
    """Constrains weight tensors to be centered around `ref_value`."""

    def __init__(self, ref_value):
        self.ref_value = ref_value

    def __call__(self, w):
        mean = ops.mean(w)
        return w - mean + self.ref_value

    def get_config(self):
        return {"ref_value": self.ref_value}


class L2Regularizer(regularizers.Regularizer):
    """The documentation's custom regularizer."""

    def __init__(self, l2=0.0):
        self.l2 = l2

    def __call__(self, x):
        return self.l2 * ops.sum(ops.square(x))

    def get_config(self):
        return {"l2": float(self.l2)}


def _row(label: str, got: object, documented: object) -> str:
    return f"  {label:<72} {got!s:<26} documented: {documented}"


def main() -> None:
    """Print each documented example's result next to the documented value."""
    print("weightwise", keras.__version__, "- the Keras regularizer and constraint examples, on PyTorch\n")

    print("Regularizers on layers")
    layer = layers.Dense(units=5, kernel_initializer="ones", kernel_regularizer=regularizers.L1(0.01),
                         activity_regularizer=regularizers.L2(0.01))
    layer(ops.ones(shape=(5, 5)) * 2.0)
    print(_row("Dense(5, L1(0.01) kernel, L2(0.01) activity) on ones*2: sum(losses)",
               round(ops.sum(layer.losses).item(), 6), "5.25 (= 5 + 0.25)"))

    def l1_reg(weight_matrix):
        return 0.01 * ops.sum(ops.absolute(weight_matrix))

    layer = layers.Dense(5, input_dim=5, kernel_initializer="ones", kernel_regularizer=l1_reg)
    layer(ops.ones(shape=(5, 5)))
    print(_row("Dense(5, input_dim=5) with a plain-function regularizer: losses",
               [round(v.item(), 6) for v in layer.losses], 0.25))
    layer = layers.Dense(5, input_dim=5, kernel_initializer="ones", kernel_regularizer=L2Regularizer(l2=0.5))
    layer(ops.ones(shape=(5, 5)))
    print(_row("Dense(5, input_dim=5) with the L2Regularizer subclass: losses",
               [round(v.item(), 6) for v in layer.losses], 12.5))
    print(_row("Dense(3, kernel_regularizer='l1').kernel_regularizer",
               layers.Dense(3, kernel_regularizer="l1").kernel_regularizer, "l1=0.01"))
    built = layers.Dense(4, input_dim=3, kernel_initializer="ones")
    built.kernel_regularizer = regularizers.L2(0.1)  # after build: Keras would ignore this
    print(_row("kernel_regularizer set after build: losses", [round(v.item(), 6) for v in built.losses],
               "1.2 (Keras: [])"))

    print("\nRegularizers called directly")
    print(_row("L2(2.)(ops.ones(shape=(5, 5)))", regularizers.L2(2.0)(ops.ones(shape=(5, 5))).item(), 50.0))
    print(_row("get('l1_l2') factors", regularizers.get("l1_l2").get_config(), "l1=0.01, l2=0.01"))
    ortho = regularizers.OrthogonalRegularizer(factor=0.01)
    print(_row("OrthogonalRegularizer(0.01) on eye(4) / on ones((4, 4))", (ortho(ops.eye(4)).item(),
                                                                              round(ortho(ops.ones((4, 4))).item(), 6)),
               "0 for orthogonal rows, factor for parallel"))

    print("\nConstraints")
    weight = ops.convert_to_tensor((-1.0, 1.0))
    # The documented custom constraint multiplies by a 0/1 mask, so -1.0 becomes -0.0;
    # the built-in NonNeg below returns +0.0.
    print(_row("NonNegative()((-1.0, 1.0))  (custom: -1 * 0 is -0.0)", NonNegative()(weight).tolist(), [0.0, 1.0]))
    print(_row("NonNeg()((-1.0, -0.0, 1.0))", constraints.NonNeg()(ops.convert_to_tensor((-1.0, -0.0, 1.0))).tolist(),
               "[0.0, 0.0, 1.0], all +0"))
    conv = layers.Conv2D(8, 3, kernel_constraint=constraints.max_norm(2.0, axis=[0, 1, 2]))
    conv(ops.ones((1, 6, 6, 4)))
    with torch.no_grad():
        conv.kernel.mul_(10.0)  # as if an update had grown every filter
    binding.apply_constraints(conv)  # what fit() does after each update
    filters = ops.norm(conv.kernel, axis=[0, 1, 2])
    print(_row("Conv2D(kernel_constraint=max_norm(2., axis=[0, 1, 2])): filter norms",
               f"max {filters.max().item():.4f}", "each <= 2"))
    unit = constraints.UnitNorm(axis=0)(ops.convert_to_tensor([[3.0, 0.0], [4.0, 0.0]]))
    print(_row("UnitNorm(axis=0) on [[3, 0], [4, 0]]", [[round(v, 6) for v in r] for r in unit.tolist()],
               "unit columns; zero stays zero"))
    centered = CenterAround.from_config(CenterAround(1.0).get_config())(ops.convert_to_tensor([0.0, 1.0, 5.0]))
    print(_row("CenterAround(1.0) via default from_config: mean", ops.mean(centered).item(), 1.0))

    print("\nSerialization (the Keras 3 form)")
    print("  " + json.dumps(regularizers.serialize(regularizers.L1L2(l1=1e-5, l2=1e-4))))
    print("  " + json.dumps(constraints.serialize(constraints.MaxNorm(2.0, axis=[0, 1, 2]))))


if __name__ == "__main__":
    main()
