"""Typed settings: defaults, file, env, unknown keys rejected with the key named."""

from __future__ import annotations

import pytest

from atlas_core.config import ServiceSettings, load_settings
from atlas_core.errors import ConfigError


def test_defaults_are_embedded():
    s = load_settings(ServiceSettings, env_prefix="ATLAS_DATA", env={})
    assert s.database.url.startswith("sqlite:///")
    assert s.s3.endpoint == "127.0.0.1:8333"


def test_env_overrides_nested_fields_and_parses_json():
    env = {
        "ATLAS_DATA_SERVER__PORT": "7001",
        "ATLAS_DATA_S3__ENDPOINT": "minio:9000",
        "ATLAS_DATA_SERVER__AUTH__TOKENS": '{"t": ["data:read"]}',
        "ATLAS_OTHER_SERVER__PORT": "1",  # another service's key: ignored
    }
    s = load_settings(ServiceSettings, env_prefix="ATLAS_DATA", env=env)
    assert s.server.port == 7001
    assert s.s3.endpoint == "minio:9000"
    assert s.server.auth.tokens == {"t": ["data:read"]}


def test_file_then_env_precedence(tmp_path):
    cfg = tmp_path / "data.yaml"
    cfg.write_text("server:\n  port: 7100\n  log_level: DEBUG\n")
    s = load_settings(
        ServiceSettings, env_prefix="ATLAS_DATA", env={"ATLAS_DATA_SERVER__PORT": "7200"}, file=cfg
    )
    assert s.server.port == 7200 and s.server.log_level == "DEBUG"


def test_unknown_env_key_is_rejected_naming_it():
    with pytest.raises(ConfigError) as err:
        load_settings(ServiceSettings, env_prefix="ATLAS_DATA", env={"ATLAS_DATA_SERVR__PORT": "1"})
    assert "servr" in str(err.value) and "ATLAS_DATA_SERVR" in str(err.value)


def test_unknown_file_key_and_bad_type_are_rejected(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("s3:\n  endpont: x\nserver:\n  port: not-a-number\n")
    with pytest.raises(ConfigError) as err:
        load_settings(ServiceSettings, env_prefix="ATLAS_DATA", env={}, file=cfg)
    msg = str(err.value)
    assert "s3.endpont" in msg and "server.port" in msg


def test_unreadable_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(ServiceSettings, env_prefix="X", env={}, file=tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(ServiceSettings, env_prefix="X", env={}, file=bad)


def test_secrets_are_not_printed():
    s = load_settings(ServiceSettings, env_prefix="X", env={"X_S3__SECRET_KEY": "hunter2"})
    assert "hunter2" not in repr(s)
    assert s.s3.secret_key.get_secret_value() == "hunter2"


def test_a_nested_apps_variables_are_left_to_it():
    # the labeling service (ATLAS_LABELING_) and its web app (ATLAS_LABELING_WEB_) in one shell
    env = {"ATLAS_LABELING_SERVER__PORT": "7104", "ATLAS_LABELING_WEB_PORT": "7180"}
    s = load_settings(ServiceSettings, env_prefix="ATLAS_LABELING", env=env)
    assert s.server.port == 7104
    with pytest.raises(ConfigError, match="ATLAS_LABELING_WEBB"):
        load_settings(
            ServiceSettings, env_prefix="ATLAS_LABELING", env={"ATLAS_LABELING_WEBB": "1"}
        )
