"""The main job: run the founding documents' examples and print what they give.

Run with ``python -m weightwise.demo``. Each line shows an example from the Keras
regularizer and constraint documentation, what weightwise computes for it, and
what the documentation says it should be.
"""

from __future__ import annotations

import json

import weightwise as keras
from weightwise import constraints, ops, regularizers


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
    return f"  {label:<62} {got!s:<28} documented: {documented}"


def main() -> None:
    """Print each documented example's result next to the documented value."""
    print("weightwise", keras.__version__, "- the Keras regularizer and constraint examples, on PyTorch\n")

    print("Regularizers")
    print(_row("L2(2.)(ops.ones(shape=(5, 5)))", regularizers.L2(2.0)(ops.ones(shape=(5, 5))).item(), 50.0))
    print(_row("L1(0.01) on a 5x5 kernel of ones", regularizers.L1(0.01)(ops.ones((5, 5))).item(), 0.25))
    print(_row("L2Regularizer(l2=0.5) on a 5x5 kernel of ones", L2Regularizer(l2=0.5)(ops.ones((5, 5))).item(), 12.5))
    activity = regularizers.L2(0.01)(ops.ones((5, 5)) * 2.0 * 5.0) / 5
    print(_row("activity: L2(0.01) of Dense(5) output (all 10s) / batch 5", round(activity.item(), 6), 5.0))
    print(_row("get('l1').l1", regularizers.get("l1").l1, 0.01))
    print(_row("get('l2').l2", regularizers.get("l2").l2, 0.01))
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
    kernel = ops.ones((3, 3, 4, 8)) * 3.0
    filters = ops.norm(constraints.MaxNorm(2.0, axis=[0, 1, 2])(kernel), axis=[0, 1, 2])
    print(_row("MaxNorm(2., axis=[0, 1, 2]), Conv2D kernel: filter norms", sorted(set(filters.tolist())),
               "each <= 2"))
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
