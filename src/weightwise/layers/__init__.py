"""Keras layers on ``torch.nn.Module``, with weight regularizers and constraints bound to their weights.

Layers expose ``kernel_regularizer``, ``bias_regularizer``, ``activity_regularizer``,
``kernel_constraint`` and ``bias_constraint`` as in Keras; ``layer.losses`` shows the
penalties. The seed documentation's examples run unchanged:

>>> from weightwise import ops, regularizers
>>> layer = Dense(
...     5, input_dim=5,
...     kernel_initializer='ones',
...     kernel_regularizer=regularizers.L1(0.01),
...     activity_regularizer=regularizers.L2(0.01))
>>> tensor = ops.ones(shape=(5, 5)) * 2.0
>>> out = layer(tensor)
>>> # The kernel regularization term is 0.25
>>> # The activity regularization term (after dividing by the batch size)
>>> # is 5
>>> ops.sum(layer.losses)
5.25

Any function of one tensor works as a regularizer:

>>> def l1_reg(weight_matrix):
...    return 0.01 * ops.sum(ops.absolute(weight_matrix))
...
>>> layer = Dense(5, input_dim=5,
...     kernel_initializer='ones', kernel_regularizer=l1_reg)
>>> tensor = ops.ones(shape=(5, 5))
>>> out = layer(tensor)
>>> layer.losses
0.25

So does a subclass of ``Regularizer``:

>>> class L2Regularizer(regularizers.Regularizer):
...   def __init__(self, l2=0.):
...     self.l2 = l2
...
...   def __call__(self, x):
...     return self.l2 * ops.sum(ops.square(x))
...
...   def get_config(self):
...     return {'l2': float(self.l2)}
...
>>> layer = Dense(
...   5, input_dim=5, kernel_initializer='ones',
...   kernel_regularizer=L2Regularizer(l2=0.5))
>>> tensor = ops.ones(shape=(5, 5))
>>> out = layer(tensor)
>>> layer.losses
12.5

String ids use the documented defaults:

>>> dense = Dense(3, kernel_regularizer='l1')
>>> dense.kernel_regularizer.l1
0.01
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from weightwise.layers.base import InputSpec, Layer
from weightwise.layers.core import Activation, ActivityRegularization, Dense, Dropout, Input, InputLayer, Wrapper
from weightwise.layers.symbolic import KerasTensor
from weightwise.layers.conv import Conv, Conv1D, Conv2D, Conv3D
from weightwise.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    GlobalPooling,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
    Pooling,
)
from weightwise.layers.lambda_layer import Lambda
from weightwise.layers.merging import Add, Concatenate
from weightwise.layers.reshaping import Flatten, Reshape

# masking and merging
from weightwise.layers.masking import Masking
from weightwise.layers.merging import (
    Average,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)

_MERGE_FUNCTIONS = [fn.__name__ for fn in (add, average, concatenate, dot, maximum, minimum, multiply, subtract)]

# recurrent
from weightwise.layers.rnn import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    LSTMCell,
    SimpleRNN,
    SimpleRNNCell,
    StackedRNNCells,
)

# recurrent wrappers
from weightwise.layers.bidirectional import Bidirectional
from weightwise.layers.time_distributed import TimeDistributed

# normalization, embedding and activation layers
from weightwise.layers.activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax
from weightwise.layers.embedding import Embedding
from weightwise.layers.batch_norm import BatchNormalization
from weightwise.layers.group_norm import GroupNormalization
from weightwise.layers.layer_norm import LayerNormalization

# depthwise, separable and transposed convolutions
from weightwise.layers.conv_lstm import ConvLSTM, ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from weightwise.layers.conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose, ConvTranspose
from weightwise.layers.depthwise_conv import DepthwiseConv, DepthwiseConv1D, DepthwiseConv2D
from weightwise.layers.separable_conv import SeparableConv, SeparableConv1D, SeparableConv2D

Convolution1DTranspose, Convolution2DTranspose, Convolution3DTranspose = Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
SeparableConvolution1D, SeparableConvolution2D = SeparableConv1D, SeparableConv2D

# reshaping, padding, noise and other parameter-free layers
from weightwise.layers.noise import (
    AlphaDropout,
    GaussianDropout,
    GaussianNoise,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)
from weightwise.layers.identity import Identity, Rescaling, UnitNormalization
from weightwise.layers.padding import (
    Cropping1D,
    Cropping2D,
    Cropping3D,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
)
from weightwise.layers.reshaping import Permute, RepeatVector
from weightwise.layers.upsampling import UpSampling1D, UpSampling2D, UpSampling3D

# attention
from weightwise.layers.attention import MultiHeadAttention
from weightwise.layers.einsum_dense import EinsumDense
from weightwise.layers.grouped_query_attention import GroupedQueryAttention

GroupQueryAttention = GroupedQueryAttention

from weightwise import activations as _activations
from weightwise.serialization import ObjectFamily

# Keras's alternative names for the same classes.
Convolution1D, Convolution2D, Convolution3D = Conv1D, Conv2D, Conv3D
MaxPool1D, MaxPool2D, MaxPool3D = MaxPooling1D, MaxPooling2D, MaxPooling3D
AvgPool1D, AvgPool2D, AvgPool3D = AveragePooling1D, AveragePooling2D, AveragePooling3D
GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D = GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D
GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D = GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D

_ALIAS_NAMES = [
    "Convolution1D", "Convolution2D", "Convolution3D", "MaxPool1D", "MaxPool2D", "MaxPool3D",
    "AvgPool1D", "AvgPool2D", "AvgPool3D", "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",

    # depthwise, separable and transposed convolutions
    "Convolution1DTranspose", "Convolution2DTranspose", "Convolution3DTranspose", "SeparableConvolution1D",
    "SeparableConvolution2D",

    # reshaping, padding, noise and other parameter-free layers

    # attention
    "GroupQueryAttention",
]
_ALIASES = {name: globals()[name] for name in _ALIAS_NAMES}

_LAYERS = [
    Layer, InputLayer, Dense, Activation, Dropout, ActivityRegularization, Flatten, Reshape, Add, Concatenate, Lambda, Wrapper,
    Conv, Conv1D, Conv2D, Conv3D,
    Pooling, MaxPooling1D, MaxPooling2D, MaxPooling3D, AveragePooling1D, AveragePooling2D, AveragePooling3D,
    GlobalPooling, GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D,
    GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D,

    # masking and merging
    Masking, Subtract, Multiply, Average, Maximum, Minimum, Dot,

    # recurrent
    RNN, SimpleRNNCell, LSTMCell, GRUCell, StackedRNNCells, SimpleRNN, LSTM, GRU,

    # recurrent wrappers
    TimeDistributed, Bidirectional,

    # normalization, embedding and activation layers
    BatchNormalization, Embedding, GroupNormalization, LayerNormalization, ELU, LeakyReLU, PReLU, ReLU, Softmax,

    # depthwise, separable and transposed convolutions
    DepthwiseConv, DepthwiseConv1D, DepthwiseConv2D, SeparableConv, SeparableConv1D, SeparableConv2D,
    ConvTranspose, Conv1DTranspose, Conv2DTranspose, Conv3DTranspose, ConvLSTM, ConvLSTM1D, ConvLSTM2D, ConvLSTM3D,

    # reshaping, padding, noise and other parameter-free layers
    Permute, RepeatVector, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D, Cropping1D, Cropping2D, Cropping3D,
    UpSampling1D, UpSampling2D, UpSampling3D,
    SpatialDropout1D, SpatialDropout2D, SpatialDropout3D, GaussianNoise, GaussianDropout, AlphaDropout,
    Identity, UnitNormalization, Rescaling,

    # attention
    EinsumDense, MultiHeadAttention, GroupedQueryAttention,
]

__all__ = sorted([cls.__name__ for cls in _LAYERS] + list(_ALIASES) + _MERGE_FUNCTIONS + ["Input", "InputSpec", "KerasTensor", "deserialize", "get", "serialize"])

_FAMILY = ObjectFamily("layer", "keras.layers", _LAYERS, extra_names=_ALIASES)
# A layer can be an activation (`Dense(4, activation=ReLU())`): its saved config loads as one.
_activations._FAMILY.accept_members(_FAMILY)


def serialize(layer: Layer) -> dict[str, Any] | None:
    """Return the Keras 3 config dict of a layer.

    >>> serialize(Dense(3, name="out"))["class_name"]
    'Dense'
    """
    return _FAMILY.serialize(layer)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Layer:
    """Build a layer from its Keras 3 (or tf.keras 2) config.

    >>> deserialize({"class_name": "Dense", "config": {"units": 2, "name": "d"}}).units
    2
    """
    return _FAMILY.deserialize(config, custom_objects)


def get(identifier: Any) -> Any:
    """Resolve a layer identifier: a config dict, a class name, or a layer passes through.

    >>> get("Flatten").data_format
    'channels_last'
    """
    return _FAMILY.get(identifier)
