"""Which of Keras's test files run here, what in them is out of scope, and what still fails.

Test ids are ``Class::test_name`` (the parametrized name included), matched with
``fnmatch`` patterns. ``EXCLUDED`` tests are skipped with their reason: features
weightwise does not claim. ``FAILING`` tests are in scope but fail today; they are
strict expected failures, so the fix that makes one pass must delete its entry.
"""

from __future__ import annotations

# Paths under the installed ``keras/src``.
KERAS_TEST_FILES: tuple[str, ...] = (
    "regularizers/regularizers_test.py",
    "constraints/constraints_test.py",
    "layers/core/dense_test.py",
    "layers/convolutional/conv_test.py",
    "layers/convolutional/conv_transpose_test.py",
    "layers/convolutional/depthwise_conv_test.py",
    "layers/convolutional/separable_conv_test.py",
    "layers/rnn/conv_lstm_test.py",
    "layers/rnn/conv_lstm1d_test.py",
    "layers/rnn/conv_lstm2d_test.py",
    "layers/rnn/conv_lstm3d_test.py",
    "layers/regularization/activity_regularization_test.py",
    "layers/pooling/max_pooling_test.py",
    "layers/pooling/average_pooling_test.py",
    "layers/pooling/global_average_pooling_test.py",
    "layers/pooling/global_max_pooling_test.py",
    "layers/core/masking_test.py",
    "layers/merging/merging_test.py",
    "layers/normalization/batch_normalization_test.py",
    "layers/core/embedding_test.py",
    "layers/normalization/layer_normalization_test.py",
    "layers/normalization/group_normalization_test.py",
    "layers/activations/relu_test.py",
    "layers/activations/leaky_relu_test.py",
    "layers/activations/elu_test.py",
    "layers/activations/softmax_test.py",
    "layers/activations/prelu_test.py",
    "saving/serialization_lib_test.py",
    "layers/regularization/spatial_dropout_test.py",
    "layers/regularization/gaussian_noise_test.py",
    "layers/regularization/gaussian_dropout_test.py",
    "layers/regularization/alpha_dropout_test.py",
    "layers/reshaping/permute_test.py",
    "layers/core/einsum_dense_test.py",
    "layers/attention/multi_head_attention_test.py",
    "layers/attention/grouped_query_attention_test.py",
    "layers/rnn/time_distributed_test.py",
    "layers/rnn/bidirectional_test.py",
    "layers/rnn/rnn_test.py",
    "layers/rnn/simple_rnn_test.py",
    "layers/rnn/lstm_test.py",
    "layers/rnn/gru_test.py",
    "layers/rnn/stacked_rnn_cells_test.py",
    "layers/rnn/dropout_rnn_cell_test.py",
    "layers/reshaping/repeat_vector_test.py",
    "layers/reshaping/zero_padding1d_test.py",
    "layers/reshaping/zero_padding2d_test.py",
    "layers/reshaping/zero_padding3d_test.py",
    "layers/reshaping/cropping1d_test.py",
    "layers/reshaping/cropping2d_test.py",
    "layers/reshaping/cropping3d_test.py",
    "layers/reshaping/up_sampling1d_test.py",
    "layers/reshaping/up_sampling2d_test.py",
    "layers/reshaping/up_sampling3d_test.py",
    "layers/reshaping/flatten_test.py",
    "layers/reshaping/reshape_test.py",
    "layers/core/identity_test.py",
    "layers/normalization/unit_normalization_test.py",
    "layers/preprocessing/rescaling_test.py",
    "optimizers/schedules/learning_rate_schedule_test.py",
    # Where Keras tests gradient accumulation and the moving average of the weights.
    "optimizers/optimizer_test.py",
    "optimizers/adam_test.py",
)

# Keras test files for layers weightwise does not have yet; each joins KERAS_TEST_FILES
# with the layer it tests.
PENDING_FILES: dict[str, str] = {
}

_LORA = "LoRA (low-rank adaptation of kernels) is not part of weightwise"
_QUANTIZATION = "quantization (int8/int4/float8, GPTQ, AWQ) is not part of weightwise"

# Deliberate: a config never makes weightwise import a module. Keras imports the config's `module`
# (for keras.* packages) to find an unregistered class; weightwise finds only registered classes and
# `custom_objects`, so no file can trigger an import.
_BY_MODULE = ("deserializes a custom cell defined in a Keras test module, which Keras finds by importing the config's "
              "`module`; weightwise never imports a module named in a config (register the class or pass it in "
              "custom_objects)")

_PRIVATE_CLIP = ("calls Keras's private `optimizer._clip_gradients(grads)`; weightwise clips inside step() and apply() "
                 "(the same formulas, checked against Keras in tests/test_optimizers.py)")
_OTHER_OPTIMIZERS = "Adadelta, Adamax, Lion, Nadam, Ftrl and Adafactor are not part of weightwise"
_OPTIMIZER_VARIABLES = ("reads or sets optimizer.variables as Keras's list of its own state; a weightwise optimizer's "
                        "`variables` are the parameters it was built with, and its state is saved in Keras's layout "
                        "by save_own_variables (tests/test_accumulation_ema.py)")

EXCLUDED: dict[str, str] = {
    "RNNTest::test_basics": _BY_MODULE,
    "RNNTest::test_serialization": _BY_MODULE,
    "DropoutRNNCellTest::test_basics": _BY_MODULE,
    "*::*lora*": _LORA,
    "*::*quantiz*": _QUANTIZATION,
    "*::*int8*": _QUANTIZATION,
    "*::*int4*": _QUANTIZATION,
    "*::*float8*": _QUANTIZATION,
    "*::*gptq*": _QUANTIZATION,
    "*::*awq*": _QUANTIZATION,
    # Loads numeric-key stores of every quantization mode in one test.
    "DenseTest::test_legacy_load_own_variables": _QUANTIZATION,
    "EinsumDenseTest::test_legacy_load_own_variables": _QUANTIZATION,
    # Presets quantized dtype policies (QuantizedDTypePolicy, DTypePolicyMap) for the projections.
    "MultiHeadAttentionTest::test_dtype_policy_map": _QUANTIZATION,
    # normalization, embedding and activation layers
    "EmbeddingTest::test_legacy_load_own_variables": _QUANTIZATION,
    # Keras's SeedGenerator keeps its state in a Variable that layers count; weightwise's dropout seeds are not
    # layer variables (the counts of trainable and non-trainable weights agree).
    "*NormalizationTest::test_large_value_within_autocast_scope":
        "opens Keras's backend.AutocastScope, which weightwise keeps internal (its layers autocast through their "
        "dtype policy, checked against Keras in tests/test_mixed_precision.py)",
    "SimpleRNNTest::test_basics": "counts the dropout SeedGenerator's state among non_trainable_variables",
    "DropoutRNNCellTest::test_seed_tracking": "counts the dropout SeedGenerator's state among non_trainable_variables",
    # reshaping, padding, noise and other parameter-free layers
    "RescalingTest::test_tf_data_compatibility": "maps the layer over a tf.data pipeline: needs tensorflow",
    "RescalingTest::test_grain_compatibility": "maps the layer over a grain pipeline: needs grain",
    "ReshapeTest::test_reshape_with_dynamic_*_and_minus_one":
        "traces a function through keras.src.backend.compute_output_spec, which weightwise does not have",
    # schedules
    "TestFitLRSchedulesFlow::test_fit_lr_correctness":
        "counts optimizer.variables before and after fit; a weightwise optimizer's `variables` are the parameters "
        "it was built with (Keras's are its own state, the iteration count first), and its state lives in "
        "torch_optimizer (the same fit's loss history is checked against Keras in tests/test_schedules.py)",
    # optimizers
    "*::test_clip_norm": _PRIVATE_CLIP,
    "*::test_clip_value": _PRIVATE_CLIP,
    "OptimizerTest::test_global_clip_norm": _PRIVATE_CLIP,
    # Parametrized over Keras's optimizer ids; cases 5 to 10 are adadelta, adamax, lion, nadam, ftrl, adafactor.
    "OptimizerTest::test_gradient_accumulation_with_weigth_decay[5-9]": _OTHER_OPTIMIZERS,
    "OptimizerTest::test_gradient_accumulation_with_weigth_decay10": _OTHER_OPTIMIZERS,
    "OptimizerTest::test_pickleable_optimizers[5-9]": _OTHER_OPTIMIZERS,
    "OptimizerTest::test_pickleable_optimizers10": _OTHER_OPTIMIZERS,
    "OptimizerTest::test_optimizer_auto_naming":
        "expects Keras's numbered names (adam, adam_1, ...); weightwise names an optimizer after its class and adds "
        "no number",
    "OptimizerTest::test_overwrite_with_gradient*":
        "`overwrite_with_gradient` variables serve float8 training: " + _QUANTIZATION,
    "OptimizerTest::test_set_weights": _OPTIMIZER_VARIABLES,
    "OptimizerTest::test_setting_lr_to_callable_untracks_lr_var": _OPTIMIZER_VARIABLES,
}

# Tests in scope that fail today, each with the first thing it trips on (strict expected
# failures, so a fix that makes one pass must delete its entry).
FAILING: dict[str, str] = {
    "MaskingTest::test_masking_correctness":
        "weightwise lays out a graph by running each layer on example values (zeros), so the test layer's `call` "
        "runs there with an all-False mask and its assertion on the mask values fails; Keras only asks its "
        "compute_output_shape there",
    # normalization, embedding and activation layers
    "GroupNormalizationTest::test_undefined_dim_error":
        "a symbolic call builds the layer from example values (layers/symbolic.py call_symbolically), so build "
        "never sees the unknown channel size and reports the groups instead",
    # recurrent
    "StackedRNNTest::test_basics": "OneStateRNNCell has no get_config; Keras rebuilds it from the constructor "
                                   "arguments it records automatically, and weightwise's Layer records none",
    # optimizers
    "OptimizerTest::test_constraints_are_applied": "weightwise has no keras.backend.numpy namespace (numpy.zeros)",
    # reshaping, padding, noise and other parameter-free layers
    "ReshapeTest::test_reshape_sets_static_shape":
        "a symbolic call runs the layer on example values (unknown axes of size 8 and 9), which Reshape((3, 5)) "
        "of an input of shape (2, None) cannot take; Keras asks compute_output_shape instead",
}
