"""The whole suite as `atlas up` runs it, for tests that call every service over the wire."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from pydantic import SecretStr

from atlas_core.launcher import Credentials, Launcher, RunState, ensure_credentials
from atlas_core.launcher._launcher import HTTP_APP
from atlas_core.rpc import ClientSettings, connect_sync


@dataclass
class RunningSuite:
    data_dir: Path
    state: RunState
    creds: Credentials

    def servers(self) -> list[tuple[str, str]]:
        """(name, address) of every gRPC server the suite runs (read endpoints included)."""
        out = []
        for p in self.state.processes:
            if p.full_name in ("s3", HTTP_APP):
                continue
            out.append((p.name, p.address))
            if p.read_address:
                out.append((f"{p.name}:read", p.read_address))
        return out

    def methods(self, address: str) -> list[MethodDescriptor]:
        """The methods the server at ``address`` lists through reflection (health and
        reflection excluded)."""
        token = SecretStr(self.creds.admin_token)
        channel = connect_sync(ClientSettings(target=address, token=token))
        try:
            database = ProtoReflectionDescriptorDatabase(channel)
            pool = descriptor_pool.DescriptorPool(database)
            found: list[MethodDescriptor] = []
            for name in database.get_services():
                if not name.startswith("grpc."):
                    found += list(pool.FindServiceByName(name).methods)
            return found
        except grpc.RpcError:
            return []  # a server without reflection (the native reader) lists nothing
        finally:
            channel.close()


@contextmanager
def running_suite(data_dir: Path) -> Iterator[RunningSuite]:
    """`atlas up` into ``data_dir`` (free ports), `atlas down` afterwards."""
    creds = ensure_credentials(data_dir)
    launcher = Launcher(data_dir, s3_port=0, base_port=0)
    state = launcher.up(echo=lambda *_: None)
    try:
        yield RunningSuite(data_dir, state, creds)
    finally:
        launcher.down(echo=lambda *_: None)


def method_path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def call_raw(
    channel: grpc.Channel,
    method: MethodDescriptor,
    request: bytes,
    token: str | None,
    *,
    timeout: float = 10.0,
) -> tuple[grpc.StatusCode, str]:
    """Call ``method`` with the serialized ``request`` (sent once on a request stream) and
    read at most one response; the status code and details."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    path = method_path(method)
    try:
        if method.client_streaming and method.server_streaming:
            stream = channel.stream_stream(path)(
                iter([request]), metadata=metadata, timeout=timeout
            )
            next(stream, None)
            stream.cancel()
        elif method.client_streaming:
            channel.stream_unary(path)(iter([request]), metadata=metadata, timeout=timeout)
        elif method.server_streaming:
            responses = channel.unary_stream(path)(request, metadata=metadata, timeout=timeout)
            next(responses, None)
            responses.cancel()
        else:
            channel.unary_unary(path)(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""
