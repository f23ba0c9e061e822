"""Keras's ``keras.config`` names for the global numeric settings.

>>> from weightwise import config
>>> config.epsilon(), config.floatx()
(1e-07, 'float32')
"""

from weightwise.backend import epsilon, floatx, set_epsilon, set_floatx

__all__ = ["epsilon", "floatx", "set_epsilon", "set_floatx"]
