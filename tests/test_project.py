"""The project's promises about itself: public names, the README commands, the demo."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import weightwise
from weightwise import (
    activations,
    backend,
    binding,
    callbacks,
    clock,
    compiled_step,
    config,
    constraints,
    distribution,
    dtype_policies,
    engine,
    factors,
    initializers,
    interop,
    layers,
    lipschitz,
    losses,
    metrics,
    mixed_precision,
    models,
    ops,
    optimizer_state,
    optimizers,
    random,
    regularizers,
    saving,
    schedules,
    serialization,
    utils,
    variables,
)
from weightwise.distribution import devices as distribution_devices
from weightwise.distribution import distribution_lib, layouts, torch_mapping
from weightwise.optimizers import schedules as optimizer_schedules

report_module = importlib.import_module("weightwise.report")  # `weightwise.report` is the function
lightning_integration = importlib.import_module("weightwise.integrations.lightning")

ROOT = Path(__file__).resolve().parents[1]
# The package's `decay` is the function; the module of the same name is found by its path.
decay_module = importlib.import_module("weightwise.decay")

PUBLIC = {
    weightwise: ["Constraint", "DTypePolicy", "FloatDTypePolicy", "Initializer", "Input", "InputSpec", "Layer", "Model",
                 "Regularizer", "Sequential",
                 "Variable", "activations", "apply_constraints", "apply_proximal", "backend", "binding", "callbacks", "clock", "compiled_step", "config", "constrain",
                 "constraints", "decay", "describe", "distribution", "dtype_policies", "initializers", "interop", "layers", "lipschitz_bound",
                 "losses", "metrics", "mixed_precision", "models", "ops",
                 "optimizers", "random", "regularization_loss", "regularize", "regularize_activity", "regularizers",
                 "report", "saving", "train_step", "utils"],
    compiled_step: ["CompiledStep", "fusion_blocker", "train_step"],
    lipschitz: ["lipschitz_bound"],
    interop: ["Handle", "apply_constraints", "apply_proximal", "constrain", "describe", "per_unit_axis", "regularization_loss",
              "regularize", "regularize_activity"],
    decay_module: ["DecayHandle", "decay", "decayable"],
    # One line per group of layers, so each group's names are added in one place.
    layers: [
        *["Activation", "ActivityRegularization", "Add", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
          "AvgPool1D", "AvgPool2D", "AvgPool3D", "Concatenate", "Conv", "Conv1D", "Conv2D", "Conv3D",
          "Convolution1D", "Convolution2D", "Convolution3D", "Dense", "Dropout", "Flatten",
          "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalAvgPool1D",
          "GlobalAvgPool2D", "GlobalAvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
          "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GlobalPooling", "Input", "InputLayer",
          "InputSpec", "KerasTensor", "Lambda", "Layer", "MaxPool1D", "MaxPool2D", "MaxPool3D", "MaxPooling1D",
          "MaxPooling2D", "MaxPooling3D", "Pooling", "Reshape", "Wrapper", "deserialize", "get", "serialize"],

        # masking and merging
        *["Average", "Dot", "Masking", "Maximum", "Minimum", "Multiply", "Subtract", "add", "average", "concatenate",
          "dot", "maximum", "minimum", "multiply", "subtract"],

        # recurrent
        *["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "SimpleRNN", "SimpleRNNCell", "StackedRNNCells"],

        # recurrent wrappers
        *["Bidirectional", "TimeDistributed"],

        # normalization, embedding and activation layers
        *["BatchNormalization", "ELU", "Embedding", "GroupNormalization", "LayerNormalization", "LeakyReLU", "PReLU",
          "ReLU", "Softmax"],

        # depthwise, separable and transposed convolutions
        *["Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "ConvLSTM", "ConvLSTM1D", "ConvLSTM2D",
          "ConvLSTM3D", "ConvTranspose", "Convolution1DTranspose",
          "Convolution2DTranspose", "Convolution3DTranspose", "DepthwiseConv", "DepthwiseConv1D", "DepthwiseConv2D",
          "SeparableConv", "SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D"],

        # reshaping, padding, noise and other parameter-free layers
        *["AlphaDropout", "Cropping1D", "Cropping2D", "Cropping3D", "GaussianDropout", "GaussianNoise", "Identity",
          "Permute", "RepeatVector", "Rescaling", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
          "UnitNormalization", "UpSampling1D", "UpSampling2D", "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D",
          "ZeroPadding3D"],

        # attention
        *["EinsumDense", "GroupQueryAttention", "GroupedQueryAttention", "MultiHeadAttention"],
    ],
    initializers: ["Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity",
                   "IdentityInitializer", "Initializer", "LecunNormal", "LecunUniform", "Ones", "Orthogonal",
                   "OrthogonalInitializer", "RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling",
                   "Zeros", "constant", "deserialize", "get", "glorot_normal", "glorot_uniform", "he_normal",
                   "he_uniform", "identity", "lecun_normal", "lecun_uniform", "ones", "orthogonal", "random_normal",
                   "random_uniform", "serialize", "truncated_normal", "variance_scaling", "zeros"],
    activations: ["celu", "deserialize", "elu", "exponential", "gelu", "get", "glu", "hard_shrink", "hard_sigmoid",
                  "hard_silu", "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax",
                  "mish", "relu", "relu6", "selu", "serialize", "sigmoid", "silu", "soft_shrink", "softmax",
                  "softplus", "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish",
                  "tanh", "tanh_shrink", "threshold"],
    models: ["Functional", "Model", "Sequential", "clone_model", "load_model", "model_from_json", "save_model"],
    optimizers: ["Adagrad", "Adam", "AdamW", "ExponentialDecay", "LearningRateSchedule", "LossScaleOptimizer",
                 "Optimizer", "RMSprop", "SGD", "TorchOptimizer", "deserialize", "get", "schedules", "serialize"],
    optimizer_state: ["KerasStateMixin"],
    losses: ["BinaryCrossentropy", "CategoricalCrossentropy", "Huber", "KLDivergence", "Loss", "LossFunctionWrapper",
             "MeanAbsoluteError", "MeanSquaredError", "SparseCategoricalCrossentropy", "binary_crossentropy",
             "categorical_crossentropy", "deserialize", "get", "huber", "kl_divergence", "mae", "mean_absolute_error",
             "mean_squared_error", "mse", "reduce_weighted_values", "serialize", "sparse_categorical_crossentropy",
             "squeeze_or_expand_to_same_rank"],
    metrics: ["Accuracy", "AutoAccuracy", "BinaryAccuracy", "CategoricalAccuracy", "KLDivergence", "Mean", "MeanAbsoluteError",
              "MeanMetricWrapper", "MeanSquaredError", "Metric", "SparseCategoricalAccuracy", "accuracy",
              "binary_accuracy", "categorical_accuracy", "deserialize", "get", "kl_divergence", "serialize",
              "sparse_categorical_accuracy"],
    callbacks: ["CSVLogger", "Callback", "CallbackList", "EarlyStopping", "History", "LambdaCallback",
                "LearningRateScheduler", "ModelCheckpoint", "MonitorCallback", "ProgbarLogger", "ReduceLROnPlateau",
                "RegularizationMonitor", "TensorBoard", "TerminateOnNaN"],
    engine: ["Plan", "ProjectionStats", "call_loss", "last_projection", "plan_for", "track"],
    report_module: ["Report", "Row", "report", "track"],
    lightning_integration: ["Regularization"],
    clock: ["at_step", "follow", "is_scheduled", "set_step", "step"],
    schedules: ["CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "InverseTimeDecay", "LearningRateSchedule",
                "PiecewiseConstantDecay", "PolynomialDecay", "deserialize", "serialize"],
    optimizer_schedules: ["CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "InverseTimeDecay",
                          "LearningRateSchedule", "PiecewiseConstantDecay", "PolynomialDecay", "deserialize",
                          "serialize"],
    factors: ["Factor", "factor", "factor_config", "factor_from_config", "factor_value", "rule_repr"],
    binding: ["Activity", "Bound", "Rule", "activity_penalty", "apply_constraints", "apply_proximal", "bind", "bound", "call_loss_entries", "call_losses", "clear_call_losses", "penalties",
              "record_call_loss", "regularization_loss", "replace_call_losses", "rule_of", "total_penalty",
              "unbind", "validate", "version"],
    regularizers: ["GroupLasso", "L1", "L1L2", "L2", "L2SP", "OrthogonalRegularizer", "ProximalL1", "Regularizer",
                   "deserialize", "get", "group_lasso", "l1", "l1_l2", "l2", "orthogonal_regularizer", "proximal_l1",
                   "serialize", "validate_float_arg"],
    constraints: ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "deserialize", "get", "max_norm",
                  "min_max_norm", "non_neg", "serialize", "unit_norm",
                  "SpectralNorm", "spectral_norm"],
    saving: ["CustomObjectScope", "ObjectSharingScope", "SafeModeScope", "custom_object_scope",
             "deserialize_keras_object", "get_custom_objects",
             "get_registered_name", "get_registered_object", "load_model", "load_weights",
             "register_keras_serializable", "save_model", "save_weights", "serialize_keras_object"],
    backend: ["backend", "clear_session", "compute_dtype", "epsilon", "floatx", "get_uid", "image_data_format",
              "set_epsilon", "set_floatx",
              "set_image_data_format", "standardize_data_format", "standardize_dtype", "standardize_shape"],
    config: ["backend", "disable_flash_attention", "disable_traceback_filtering", "dtype_policy",
             "enable_flash_attention", "enable_traceback_filtering", "enable_unsafe_deserialization", "epsilon", "floatx",
             "image_data_format", "is_flash_attention_enabled", "is_traceback_filtering_enabled", "set_dtype_policy",
             "set_epsilon", "set_floatx", "set_image_data_format"],
    random: ["SeedGenerator", "beta", "binomial", "categorical", "dropout", "gamma", "normal", "randint", "shuffle",
             "truncated_normal", "uniform"],
    utils: ["CustomObjectScope", "PyDataset", "Sequence", "clear_session", "custom_object_scope", "deserialize_keras_object",
            "get_custom_objects", "get_file", "get_registered_name", "get_registered_object", "model_to_dot",
            "normalize", "pack_x_y_sample_weight", "pad_sequences", "plot_model", "register_keras_serializable",
            "serialize_keras_object", "set_random_seed", "split_dataset", "to_categorical",
            "unpack_x_y_sample_weight"],
    variables: ["Variable", "current_path", "name_scope", "unique_name"],
    distribution: ["DataParallel", "DeviceMesh", "LayoutMap", "ModelParallel", "TensorLayout", "distribute_tensor",
                   "distribution", "get_device_count", "initialize", "list_devices", "set_distribution"],
    distribution_devices: ["get_device_count", "initialize", "list_devices", "parse_device", "rank", "world_size"],
    distribution_lib: ["DataParallel", "Distribution", "ModelParallel", "distribute_tensor", "distribution",
                       "set_distribution"],
    layouts: ["DeviceMesh", "LayoutMap", "TensorLayout"],
    torch_mapping: ["ShardPlacementFn", "check_world", "mesh_ranks", "parameter_paths", "placements", "shard_dim",
                    "torch_device_mesh"],
    dtype_policies: ["DTypePolicy", "FloatDTypePolicy", "deserialize", "get", "serialize"],
    mixed_precision: ["DTypePolicy", "LossScaleOptimizer", "Policy", "dtype_policy", "global_policy",
                      "set_dtype_policy", "set_global_policy"],
    serialization: ["ObjectFamily", "ObjectSharingScope", "SafeModeScope", "custom_object_scope",
                    "deserialize_keras_object", "enable_unsafe_deserialization", "get_custom_objects",
                    "get_registered_name", "get_registered_object", "in_safe_mode", "register_keras_serializable",
                    "serialize_keras_object", "to_snake_case"],
}

OPS_REQUIRED = ["convert_to_tensor", "cast", "shape", "ones", "zeros", "eye", "sum", "mean", "max", "min", "abs", "absolute", "square", "sqrt", "exp", "log", "sign", "clip", "maximum", "minimum", "greater", "greater_equal", "less", "less_equal", "equal", "where", "matmul", "dot", "transpose", "reshape", "multiply", "add", "subtract", "divide", "divide_no_nan", "norm", "stop_gradient", "ones_like", "zeros_like"]


@pytest.mark.parametrize("module", list(PUBLIC), ids=lambda m: m.__name__)
def test_public_names_are_pinned(module) -> None:
    assert sorted(module.__all__) == sorted(PUBLIC[module])
    for name in module.__all__:
        assert hasattr(module, name), name


def test_ops_has_the_keras_names_regularizers_are_written_in() -> None:
    missing = [name for name in OPS_REQUIRED if name not in ops.__all__ or not callable(getattr(ops, name))]
    assert missing == []


def test_every_public_callable_has_a_docstring_with_an_example() -> None:
    lacking = []
    for module in PUBLIC:
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not isinstance(obj, type(weightwise)):
                doc = obj.__doc__ or ""
                if ">>>" not in doc and name not in {"CustomObjectScope"}:
                    lacking.append(f"{module.__name__}.{name}")
    assert lacking == []


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    top = text.split("\n## ")[0]
    return re.findall(r"```bash\n(.+?)\n```", top)


def test_readme_top_has_the_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert "constraints.txt" in demo and '".[demo]"' in demo and demo.endswith("python -m weightwise.demo")
    assert "constraints.txt" in tests and '".[test]"' in tests and "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci_lines


def test_cpu_torch_is_pinned_for_installs_but_not_in_the_metadata() -> None:
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().split()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.4"' in pyproject
    assert '"keras==3.15.1"' in pyproject


def test_seed_examples_run_and_print_the_documented_results() -> None:
    result = subprocess.run([sys.executable, "-m", "weightwise.seed_examples"], capture_output=True, text=True,
                            check=True)
    lines = result.stdout.splitlines()
    seed = next(line for line in lines if "L2(2.)(ops.ones(shape=(5, 5)))" in line)
    assert seed.split("documented:")[0].split()[-1] == "50.0" and seed.rstrip().endswith("documented: 50.0")
    custom = next(line for line in lines if "L2Regularizer subclass" in line)
    assert "[12.5]" in custom.split("documented")[0]
    total = next(line for line in lines if "sum(losses)" in line)
    assert total.split("documented:")[0].split()[-1] == "5.25"
    assert '"registered_name": null' in result.stdout
