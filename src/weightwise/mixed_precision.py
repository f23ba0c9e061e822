"""Keras's ``keras.mixed_precision``: the global dtype policy under its older names, and loss scaling.

``set_global_policy`` / ``global_policy`` are ``set_dtype_policy`` / ``dtype_policy`` (see
:mod:`weightwise.dtype_policies`), ``Policy`` is :class:`~weightwise.dtype_policies.DTypePolicy`,
and :class:`~weightwise.optimizers.LossScaleOptimizer` scales the loss for float16 training.

>>> from weightwise import layers, mixed_precision
>>> mixed_precision.set_global_policy("mixed_bfloat16")
>>> layer = layers.Dense(2)
>>> layer.compute_dtype, layer.variable_dtype
('bfloat16', 'float32')
>>> mixed_precision.set_global_policy("float32")
"""

from __future__ import annotations

from weightwise.dtype_policies import DTypePolicy, dtype_policy, set_dtype_policy
from weightwise.optimizers.loss_scale_optimizer import LossScaleOptimizer

__all__ = [
    "DTypePolicy",
    "LossScaleOptimizer",
    "Policy",
    "dtype_policy",
    "global_policy",
    "set_dtype_policy",
    "set_global_policy",
]

Policy = DTypePolicy
global_policy = dtype_policy
set_global_policy = set_dtype_policy
