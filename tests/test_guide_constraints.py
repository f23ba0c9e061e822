"""The guide "Constraints": its table of per-unit axes says, for each torch module, the axis that
``weightwise.interop.per_unit_axis`` picks (the page's own code checks each row by projecting)."""

from __future__ import annotations

import ast
import re

import torch
from docs_pages import DOCS
from torch import nn

from weightwise.interop import per_unit_axis

PAGE = DOCS / "guides" / "constraints.md"

# The torch parameter(s) of each row of the table, by the row's first cell.
MODULES = {
    "Dense / `nn.Linear`": [(nn.Linear(6, 4), "weight")],
    "Conv2D / `nn.Conv2d`": [(nn.Conv2d(2, 4, 3), "weight")],
    "Conv2DTranspose / `nn.ConvTranspose2d`": [(nn.ConvTranspose2d(2, 4, 3), "weight")],
    "DepthwiseConv2D / `nn.Conv2d(groups=in)`": [(nn.Conv2d(3, 6, 3, groups=3), "weight")],
    "Embedding / `nn.Embedding` (per vector)": [(nn.Embedding(10, 4), "weight")],
    "LSTM, GRU, SimpleRNN / `nn.LSTM`, `nn.GRU`, `nn.RNN` input weights":
        [(nn.LSTM(4, 5), "weight_ih_l0"), (nn.GRU(4, 5), "weight_ih_l0"), (nn.RNN(4, 5), "weight_ih_l0")],
    "the same, recurrent weights": [(nn.LSTM(4, 5), "weight_hh_l0"), (nn.GRU(4, 5, bidirectional=True),
                                                                      "weight_hh_l0_reverse")],
    "the same, biases": [(nn.LSTM(4, 5), "bias_ih_l0"), (nn.GRU(4, 5), "bias_hh_l0")],
    "MultiHeadAttention / `nn.MultiheadAttention` input projections":
        [(nn.MultiheadAttention(6, 2), "in_proj_weight"), (nn.MultiheadAttention(6, 2, kdim=3, vdim=3),
                                                           "k_proj_weight")],
    "the same, output projection": [(nn.MultiheadAttention(6, 2).out_proj, "weight")],
    "BatchNormalization, LayerNormalization / `nn.BatchNorm*`, `nn.LayerNorm`, ...":
        [(nn.BatchNorm2d(4), "weight"), (nn.LayerNorm(4), "bias"), (nn.GroupNorm(2, 4), "weight")],
    "PReLU / `nn.PReLU`": [(nn.PReLU(4), "weight")],
    "(none) / `nn.Bilinear`": [(nn.Bilinear(3, 4, 5), "weight")],
}


def _table() -> dict[str, tuple[str, str]]:
    """The axis table's rows: first cell -> (torch parameter and layout, axis weightwise uses)."""
    text = PAGE.read_text().split("## Per-unit axes for torch and Keras layouts", 1)[1]
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| layer |"), rows[0]
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows[1:]]
    return {row[0]: (row[3], row[4]) for row in cells}


def test_the_table_has_a_row_for_each_module_kind_and_no_other() -> None:
    assert set(_table()) == set(MODULES)


def test_the_torch_axes_of_the_table_are_what_weightwise_picks() -> None:
    for row, (layout, axis) in _table().items():
        stated = ast.literal_eval(axis.strip("`"))
        for module, name in MODULES[row]:
            assert per_unit_axis(module, name) == stated, (row, name)
            shape = tuple(getattr(module, name).shape)
            assert len(shape) == len(re.search(r"\(([^)]*)\)", layout).group(1).split(", ")), (row, layout, shape)


def test_each_unit_of_each_torch_row_is_capped_by_a_max_norm_without_an_axis() -> None:
    import weightwise as ww
    from weightwise.constraints import MaxNorm

    for row, pairs in MODULES.items():
        for module, name in pairs:
            handle = ww.constrain(module, {name: MaxNorm(0.5)})
            weight = getattr(module, name)
            with torch.no_grad():
                weight.uniform_(1.0, 2.0)
            ww.apply_constraints(module)
            axis = per_unit_axis(module, name)
            norms = weight.detach().abs() if axis == [] else torch.linalg.vector_norm(weight.detach(), dim=axis)
            assert torch.allclose(norms, torch.full_like(norms, 0.5)), (row, name)
            handle.remove()
