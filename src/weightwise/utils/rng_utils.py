"""One call that seeds every random number generator a script draws from.

>>> set_random_seed(0)
"""

from __future__ import annotations

import random

import numpy as np
import torch

from weightwise import random as random_module
from weightwise.arguments import count

__all__ = ["set_random_seed"]


def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator, torch (every device) and the
    global ``SeedGenerator`` behind ``weightwise.random``'s unseeded draws.

    ``seed`` is an int in ``[0, 2**32 - 1]`` (NumPy's range). After the same call, the same
    script draws the same numbers: initial weights, shuffling, dropout masks.

    >>> set_random_seed(1); a = torch.rand(2)
    >>> set_random_seed(1); bool((a == torch.rand(2)).all())
    True
    >>> set_random_seed(-1)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `seed`: expected an int in [0, 4294967295]. Received: seed=-1
    """
    seed = count(seed, "seed", low=0, high=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # The global generator is made afresh from Python's random, just seeded, as in Keras.
    random_module.reset_global_seed_generator()
