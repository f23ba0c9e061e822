"""Training callbacks: hooks into ``fit``/``evaluate``/``predict``, with Keras 3's API and decisions.

A callback is an object whose ``on_*`` hooks the training loop calls at fixed
points (start and end of training, of each epoch, of each batch), passing a
``logs`` dict of the current metric values. The training loop packs the
callbacks into a :class:`CallbackList` and calls its hooks; every built-in here
makes the same decisions as its Keras 3.15 counterpart on the same ``logs``.

What a callback needs from the model it is given with ``set_model``:
``stop_training`` (a bool the loop reads), ``get_weights()``/``set_weights()``
(``EarlyStopping(restore_best_weights=True)``), ``save_weights(path)``
(``ModelCheckpoint``), and ``optimizer.learning_rate``, a float that can be
read and assigned (``LearningRateScheduler``, ``ReduceLROnPlateau``).

>>> from types import SimpleNamespace
>>> model = SimpleNamespace(stop_training=False)
>>> callbacks = CallbackList([EarlyStopping(monitor="loss", patience=1)], add_history=True, model=model)
>>> callbacks.on_train_begin()
>>> for epoch, loss in enumerate([0.5, 0.4, 0.45, 0.42]):
...     callbacks.on_epoch_end(epoch, {"loss": loss})
...     if model.stop_training:
...         break
>>> model.history.epoch, model.history.history
([0, 1, 2], {'loss': [0.5, 0.4, 0.45]})
"""

from __future__ import annotations

# Private names that other modules and the tests use, kept where they were before the split.
from weightwise.callbacks._helpers import (  # noqa: F401
    _HOOKS,
    _METRICS_DOWN,
    _METRICS_UP,
    _pythonify_logs,
    _verbose,
)
from weightwise.callbacks.callback import Callback
from weightwise.callbacks.callback_list import CallbackList, _check_callbacks  # noqa: F401
from weightwise.callbacks.csv_logger import CSVLogger
from weightwise.callbacks.early_stopping import EarlyStopping
from weightwise.callbacks.history import History
from weightwise.callbacks.lambda_callback import LambdaCallback
from weightwise.callbacks.learning_rate_scheduler import LearningRateScheduler
from weightwise.callbacks.model_checkpoint import ModelCheckpoint
from weightwise.callbacks.monitor_callback import MonitorCallback
from weightwise.callbacks.progbar_logger import ProgbarLogger
from weightwise.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from weightwise.callbacks.regularization_monitor import RegularizationMonitor
from weightwise.callbacks.tensorboard import TensorBoard
from weightwise.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "MonitorCallback",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "RegularizationMonitor",
    "TensorBoard",
    "TerminateOnNaN",
]


