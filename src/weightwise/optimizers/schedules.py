"""``weightwise.optimizers.schedules``: Keras's learning rate schedules, where Keras keeps them.

``from keras.optimizers.schedules import CosineDecay`` reads here as
``from weightwise.optimizers.schedules import CosineDecay``. The classes live in
:mod:`weightwise.schedules`, below regularizers and constraints, whose factors and
bounds may be schedules too; these are the same objects.

>>> from weightwise.optimizers.schedules import PolynomialDecay
>>> PolynomialDecay(0.1, 10, end_learning_rate=0.0)(5)
0.05
"""

from __future__ import annotations

# The same objects under Keras's module name, not copies.
from weightwise.schedules import *
from weightwise.schedules import __all__  # noqa: F401
