from __future__ import annotations

import pytest

from atlas_core.errors import ConfigError, PermissionDenied, Unauthenticated
from atlas_core.rpc.auth import TokenAuthenticator, read_tokens_file, required_scope


def test_required_scope_from_method_names():
    assert required_scope("/atlas.data.v1.DataService/GetFeatures") == "data:read"
    assert required_scope("/atlas.data.v1.DataService/PutRecords") == "data:write"
    assert required_scope("/grpc.health.v1.Health/Check") is None


def test_tokens_file_and_scopes(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# comment\nabc data:read\nxyz data:*,trainer:write\n")
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
    f.write_text("lonely-token\n")
    with pytest.raises(ConfigError, match=":1"):
        read_tokens_file(f)
