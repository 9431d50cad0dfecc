"""Settings come from the environment and flags, with errors that name the variable."""

from __future__ import annotations

import argparse

import pytest

from platform_common.settings import BaseSettings, SettingsError


def test_environment_values_are_converted_to_field_types() -> None:
    settings = BaseSettings.from_env({"PORT": "9000", "CORS_ORIGINS": "https://a.example, https://b.example"})
    assert settings.port == 9000
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_invalid_value_names_the_environment_variable() -> None:
    with pytest.raises(SettingsError, match="PORT"):
        BaseSettings.from_env({"PORT": "not-a-number"})
    with pytest.raises(SettingsError, match="AUTH_MODE"):
        BaseSettings.from_env({"AUTH_MODE": "maybe"})


def test_flags_override_environment_and_help_names_the_variable() -> None:
    parser = argparse.ArgumentParser()
    BaseSettings.add_arguments(parser)
    args = parser.parse_args(["--port", "7000"])
    settings = BaseSettings.from_args(args, {"PORT": "9000", "LOG_LEVEL": "DEBUG"})
    assert settings.port == 7000
    assert settings.log_level == "DEBUG"
    assert "[env METRICS_PORT]" in " ".join(parser.format_help().split())


def test_forwarded_allow_ips_takes_addresses_and_networks_and_names_a_bad_entry() -> None:
    assert BaseSettings.from_env({}).forwarded_allow_ips == ["127.0.0.1"]
    settings = BaseSettings.from_env({"FORWARDED_ALLOW_IPS": "10.0.0.0/8, 127.0.0.1, fd00::/8"})
    assert settings.forwarded_allow_ips == ["10.0.0.0/8", "127.0.0.1", "fd00::/8"]
    # Host bits set: uvicorn would read it as a literal that never matches, silently trusting nobody.
    with pytest.raises(SettingsError, match=r"FORWARDED_ALLOW_IPS: '10\.0\.0\.1/8'"):
        BaseSettings.from_env({"FORWARDED_ALLOW_IPS": "10.0.0.0/8,10.0.0.1/8"})
    with pytest.raises(SettingsError, match="FORWARDED_ALLOW_IPS: 'ingress-nginx'"):
        BaseSettings.from_env({"FORWARDED_ALLOW_IPS": "ingress-nginx"})
