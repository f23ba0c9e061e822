"""weightwise.config: Keras's keras.config names and the switches it holds."""

from __future__ import annotations

import pytest
from helpers import keras_or_skip

from weightwise import backend, config


def test_every_name_is_a_keras_config_name() -> None:
    keras = keras_or_skip()
    assert set(config.__all__) <= set(dir(keras.config))
    assert config.backend() == keras.config.backend()
    for name in ("epsilon", "floatx", "image_data_format", "is_traceback_filtering_enabled"):
        assert getattr(config, name)() == getattr(keras.config, name)(), name


def test_settings_are_backend_settings() -> None:
    for name in ("epsilon", "floatx", "image_data_format", "set_epsilon", "set_floatx", "set_image_data_format",
                 "backend"):
        assert getattr(config, name) is getattr(backend, name)


def test_traceback_filtering_switch() -> None:
    assert config.is_traceback_filtering_enabled()
    config.disable_traceback_filtering()
    try:
        assert not config.is_traceback_filtering_enabled()
    finally:
        config.enable_traceback_filtering()
    assert config.is_traceback_filtering_enabled()


def test_enable_unsafe_deserialization_sets_the_global_safe_mode_off() -> None:
    assert config.in_safe_mode() is None
    config.enable_unsafe_deserialization()
    try:
        assert config.in_safe_mode() is False
    finally:
        config.set_safe_mode(None)
    assert config.in_safe_mode() is None


def test_set_safe_mode_takes_bools_and_none_only() -> None:
    with pytest.raises(ValueError, match="value='no'"):
        config.set_safe_mode("no")
    assert config.in_safe_mode() is None
    config.set_safe_mode(True)
    try:
        assert config.in_safe_mode() is True
    finally:
        config.set_safe_mode(None)


def test_set_image_data_format_through_config() -> None:
    config.set_image_data_format("channels_first")
    try:
        assert backend.image_data_format() == "channels_first"
    finally:
        config.set_image_data_format("channels_last")
