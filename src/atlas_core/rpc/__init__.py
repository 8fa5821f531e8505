"""gRPC plumbing shared by every service: server factory, auth, metrics, status mapping,
client channels."""

from atlas_core.rpc.auth import TokenAuthenticator, required_scope
from atlas_core.rpc.channel import ClientSettings, connect, connect_sync
from atlas_core.rpc.server import AtlasServer, ServiceDef, create_server
from atlas_core.rpc.status import error_from_rpc

__all__ = [
    "AtlasServer",
    "ClientSettings",
    "ServiceDef",
    "TokenAuthenticator",
    "connect",
    "connect_sync",
    "create_server",
    "error_from_rpc",
    "required_scope",
]
