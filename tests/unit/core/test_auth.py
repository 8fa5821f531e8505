from __future__ import annotations

import logging
import os

import pytest

from atlas_core.config import AuthSettings
from atlas_core.errors import ConfigError, PermissionDenied, Unauthenticated
from atlas_core.rpc.auth import TokenAuthenticator, read_tokens_file, required_scope
from atlas_core.secret_files import write_private


def test_required_scope_from_method_names():
    assert required_scope("/atlas.data.v1.DataService/GetFeatures") == "data:read"
    assert required_scope("/atlas.data.v1.DataService/PutRecords") == "data:write"
    assert required_scope("/grpc.health.v1.Health/Check") is None


def test_tokens_file_and_scopes(tmp_path):
    f = tmp_path / "tokens"
    write_private(f, "# comment\nabc data:read\nxyz data:*,trainer:write\n")
    auth = TokenAuthenticator(read_tokens_file(f))
    assert auth.authenticate("Bearer abc", "/atlas.data.v1.DataService/GetFeatures")
    with pytest.raises(PermissionDenied):
        auth.authenticate("Bearer abc", "/atlas.data.v1.DataService/PutRecords")
    assert auth.authenticate("Bearer xyz", "/atlas.data.v1.DataService/PutRecords")
    assert auth.authenticate("Bearer xyz", "/atlas.trainer.v1.TrainerService/GetTrainingJob")
    with pytest.raises(Unauthenticated, match="malformed"):
        auth.authenticate("Basic abc", "/atlas.data.v1.DataService/GetFeatures")


def test_bad_tokens_file_line_names_location(tmp_path):
    f = tmp_path / "tokens"
    write_private(f, "lonely-token\n")
    with pytest.raises(ConfigError, match=":1") as err:
        read_tokens_file(f)
    assert "lonely-token" not in err.value.message


def test_a_tokens_file_others_can_read_is_refused_at_start(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("abc *\n")
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError) as err:
        TokenAuthenticator.from_settings(AuthSettings(tokens_file=f))
    assert err.value.reason == "SECRETS_FILE_EXPOSED"
    assert "chmod 600" in err.value.message and "abc" not in err.value.message


def test_tokens_rotate_without_a_restart(tmp_path, caplog):
    f = tmp_path / "tokens"
    write_private(f, "old-token data:*\n")
    auth = TokenAuthenticator.from_settings(
        AuthSettings(tokens_file=f, tokens={"fixed-token": ["*"]}, tokens_reload_seconds=0)
    )
    method = "/atlas.data.v1.DataService/PutRecords"
    assert auth.authenticate("Bearer old-token", method)
    write_private(f, "new-token data:write\n")
    assert auth.authenticate("Bearer new-token", method)
    with pytest.raises(Unauthenticated):
        auth.authenticate("Bearer old-token", method)  # revoked by the rotation
    assert auth.authenticate("Bearer fixed-token", method)  # settings tokens stay
    # A broken or exposed file keeps the tokens in force, and says why in the log.
    for broken in ("token-without-scope\n", None):
        if broken is None:
            os.chmod(f, 0o644)
        else:
            write_private(f, broken)
        with caplog.at_level(logging.ERROR, logger="atlas.auth"):
            for _ in range(3):
                assert auth.authenticate("Bearer new-token", method)
    errors = [r.error for r in caplog.records if r.levelno == logging.ERROR]  # type: ignore[attr-defined]
    assert len(errors) == 2 and "SECRETS" not in errors[0]
    assert "other users" in errors[1]
    assert not any("token-without-scope" in e or "new-token" in e for e in errors)


def test_reload_checks_are_rate_limited(tmp_path):
    f = tmp_path / "tokens"
    write_private(f, "a *\n")
    auth = TokenAuthenticator.from_settings(AuthSettings(tokens_file=f, tokens_reload_seconds=3600))
    write_private(f, "bb *\n")
    with pytest.raises(Unauthenticated):
        auth.authenticate("Bearer bb", "/atlas.data.v1.DataService/PutRecords")
    assert auth.reload_if_changed()  # what the next check, an hour later, does
    assert auth.authenticate("Bearer bb", "/atlas.data.v1.DataService/PutRecords")
