"""Keras 3.15.1's own unit tests, run unchanged against weightwise through an import swap.

The test files stay in the installed ``keras`` package; :mod:`keras_suite.swap` loads each
one with ``keras`` and ``keras.src.*`` resolved to weightwise, :mod:`keras_suite.testing`
is our ``keras.src.testing``, and :mod:`keras_suite.selection` lists what is out of scope
and what still fails.
"""
