"""The text of ``model.summary()``: Keras's table plus a column for the bound regularizers and constraints."""

from __future__ import annotations

from typing import Any

import torch

from weightwise import binding
from weightwise.layers import KerasTensor, Layer
from weightwise.layers.symbolic import Operation, flatten

__all__ = ["output_shapes", "rules_of", "summary_lines"]


def rules_of(layer: torch.nn.Module) -> str:
    """The regularizers and constraints bound to a layer's own weights, and its activity regularizer.

    >>> from weightwise import layers
    >>> rules_of(layers.Dense(2, input_dim=3, kernel_regularizer="l2", bias_constraint="non_neg"))
    'kernel: L2(l2=0.01); bias: NonNeg()'
    """
    parts = []
    for name, _ in layer.named_parameters(recurse=False):
        rule = binding.rule_of(layer, name)
        if rule is not None:
            shown = [repr(x) for x in (rule.regularizer, rule.constraint) if x is not None]
            parts.append(f"{name}: {', '.join(shown)}")
    activity = getattr(layer, "activity_regularizer", None)
    if activity is not None:
        parts.append(f"activity: {activity!r}")
    return "; ".join(parts)


def output_shapes(model: Any) -> dict[int, Any]:
    """Output shape of each layer, where the model knows it (functional and built Sequential models)."""
    shapes: dict[int, Any] = dict(getattr(model, "_output_shapes", {}))
    for node in getattr(model, "_nodes", []):
        produced = [t.shape for t in flatten(node.outputs) if isinstance(t, KerasTensor)]
        shapes.setdefault(id(node.layer), produced[0] if len(produced) == 1 else produced)
    return shapes


def summary_lines(model: Any, line_length: int = 110) -> list[str]:
    """The lines ``model.summary()`` prints."""
    shapes = output_shapes(model)
    header = ("Layer (type)", "Output Shape", "Param #", "Regularizers / constraints")
    rows = []
    # A functional model lists its ops too (``multiply (Multiply)``), as Keras does.
    for layer in getattr(model, "_operations", model.layers):
        if isinstance(layer, Operation):
            rows.append((f"{layer.name} ({layer.class_name})", str(shapes.get(id(layer), "?")), "0", ""))
            continue
        count = sum(w.numel() for w in layer.weights) if isinstance(layer, Layer) else sum(
            p.numel() for p in layer.parameters())
        name = getattr(layer, "name", type(layer).__name__)
        rows.append((f"{name} ({type(layer).__name__})", str(shapes.get(id(layer), "?")), f"{count:,}", rules_of(layer)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    rule_width = max(line_length - sum(widths) - 6, len(header[3]))

    def fmt(row: tuple[str, str, str, str]) -> str:
        return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:<{rule_width}}".rstrip()

    width = sum(widths) + rule_width + 6
    weights = model.weights if model.built else []
    trainable = sum(w.numel() for w in weights if w.requires_grad)
    total = sum(w.numel() for w in weights)
    lines = [f'Model: "{model.name}"', "=" * width, fmt(header), "=" * width]
    lines += [fmt(row) for row in rows]
    lines += ["=" * width, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", "=" * width]
    return lines
