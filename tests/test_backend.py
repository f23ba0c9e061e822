"""backend/config: epsilon and floatx settings and their validation."""

import pytest
import torch

from weightwise import backend, config


def test_defaults_match_keras() -> None:
    assert backend.epsilon() == 1e-7
    assert backend.floatx() == "float32"
    assert config.epsilon is backend.epsilon and config.floatx is backend.floatx


def test_set_and_restore() -> None:
    backend.set_epsilon(1e-4)
    backend.set_floatx("float16")
    try:
        assert backend.epsilon() == 1e-4
        assert backend.standardize_dtype(None) == torch.float16
    finally:
        backend.set_epsilon(1e-7)
        backend.set_floatx("float32")


@pytest.mark.parametrize("bad", [0, -1e-7, float("nan"), float("inf")])
def test_bad_epsilon_is_refused_and_the_old_value_kept(bad: float) -> None:
    with pytest.raises(ValueError, match=f"value={bad!r}"):
        backend.set_epsilon(bad)
    assert backend.epsilon() == 1e-7


@pytest.mark.parametrize("bad", ["1e-7", True, None])
def test_non_numeric_epsilon_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="value="):
        backend.set_epsilon(bad)


@pytest.mark.parametrize("bad", ["float8", "int32", 32, None])
def test_bad_floatx_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=f"value={bad!r}"):
        backend.set_floatx(bad)
    assert backend.floatx() == "float32"


def test_backend_name_and_data_format_defaults_match_keras() -> None:
    from helpers import keras_or_skip

    keras = keras_or_skip()
    assert backend.backend() == keras.backend.backend() == "torch"
    assert backend.image_data_format() == "channels_last"


def test_set_image_data_format_round_trip_and_case() -> None:
    try:
        backend.set_image_data_format("Channels_First")
        assert backend.image_data_format() == "channels_first"
        assert backend.standardize_data_format(None) == "channels_first"
        assert backend.standardize_data_format("channels_last") == "channels_last"
    finally:
        backend.set_image_data_format("channels_last")
    assert backend.standardize_data_format(None) == "channels_last"


@pytest.mark.parametrize("bad", ["NHWC", "channels-last", None, 1, ""])
def test_bad_image_data_format_is_refused_and_the_old_value_kept(bad: object) -> None:
    with pytest.raises(ValueError, match=f"data_format={bad!r}"):
        backend.set_image_data_format(bad)
    assert backend.image_data_format() == "channels_last"


@pytest.mark.parametrize("bad", ["NCHW", 3, ["channels_last"]])
def test_standardize_data_format_names_the_argument(bad: object) -> None:
    with pytest.raises(ValueError, match="`data_format`"):
        backend.standardize_data_format(bad)



def _automatic_names(lib) -> list[str]:
    lib.backend.clear_session()
    made = [lib.layers.Dense(2).name, lib.layers.Dense(2).name]
    x = lib.layers.Input(shape=(3,))
    added = lib.layers.Add()([x, x])
    summed = x + x
    made += [added._keras_history.operation.name if hasattr(added, "_keras_history") else added.node.layer.name,
             summed._keras_history.operation.name if hasattr(summed, "_keras_history") else summed.node.layer.name]
    lib.backend.clear_session(free_memory=False)
    made.append(lib.layers.Dense(2).name)
    return made


def test_clear_session_restarts_layer_and_operation_names_as_keras_does() -> None:
    import keras

    import weightwise

    ours = _automatic_names(weightwise)
    # An Add layer and the ``+`` operation share the count for "add", as in Keras.
    assert ours == ["dense", "dense_1", "add", "add_1", "dense"]
    assert ours == _automatic_names(keras)
    assert weightwise.utils.clear_session is weightwise.backend.clear_session


def test_clear_session_refuses_a_non_bool_free_memory() -> None:
    with pytest.raises(ValueError, match="free_memory"):
        backend.clear_session(free_memory="no")


@pytest.mark.parametrize("shape", [(2, 3), [None, 4], (), (0, 5)])
def test_standardize_shape_matches_keras(shape) -> None:
    from helpers import keras_or_skip

    keras = keras_or_skip()
    assert backend.standardize_shape(shape) == keras.src.backend.standardize_shape(shape)


@pytest.mark.parametrize("shape", [None, 3, (2, -1), (2, 1.5), ("a",), (True,)])
def test_standardize_shape_refuses_what_keras_refuses(shape) -> None:
    from helpers import keras_or_skip

    keras = keras_or_skip()
    for fn in (backend.standardize_shape, keras.src.backend.standardize_shape):
        if shape == (True,) and fn is not backend.standardize_shape:
            continue  # Keras takes True as 1; a bool size is refused here
        with pytest.raises(ValueError, match="shape"):
            fn(shape)
