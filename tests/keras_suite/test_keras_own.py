"""Collects Keras 3.15.1's own test classes, loaded from the installed package under the import swap.

Each class appears here under its Keras name, so pytest collects it with all its
parametrized cases; :mod:`keras_suite.selection` (applied by this folder's conftest)
skips what is out of scope and marks what still fails.
"""

from keras_suite.selection import KERAS_TEST_FILES
from keras_suite.swap import load
from keras_suite.testing import TestCase

# Keras test classes whose name another file uses too, renamed here: (file, Keras name) -> name.
# bidirectional_test.py calls its class SimpleRNNTest, as simple_rnn_test.py does; repeat_vector_test.py
# calls its class FlattenTest, as flatten_test.py does.
RENAMED = {
    ("layers/rnn/bidirectional_test.py", "SimpleRNNTest"): "BidirectionalTest",
    ("layers/reshaping/repeat_vector_test.py", "FlattenTest"): "RepeatVectorTest",
}

for _path in KERAS_TEST_FILES:
    _module = load(_path)
    for _name, _value in vars(_module).items():
        if isinstance(_value, type) and issubclass(_value, TestCase) and _value is not TestCase:
            _name = RENAMED.get((_path, _name), _name)
            if _name in globals():
                raise RuntimeError(f"Two Keras test files define {_name}; give one a distinct name here.")
            globals()[_name] = _value

# The loop's names would otherwise be collected too (the last class a second time, as `_value`).
del _path, _module, _name, _value
