"""Container health check (HEALTHCHECK, compose): exit 0 when this container's ATLAS process
answers. A gRPC service is asked for its overall health (the standard health service, no
token needed) on ATLAS_<SVC>_SERVER__PORT; the annotator web app answers GET /healthz on
ATLAS_LABELING_WEB_PORT. Kubernetes uses its native gRPC probes instead."""

import os
import sys
import urllib.request

web_port = os.environ.get("ATLAS_LABELING_WEB_PORT")
if web_port:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=4) as resp:
        sys.exit(0 if resp.status == 200 else 1)

ports = [v for k, v in os.environ.items() if k.startswith("ATLAS_") and k.endswith("_SERVER__PORT")]
if len(ports) != 1:
    sys.exit(f"atlas-healthcheck: expected one ATLAS_<SVC>_SERVER__PORT, found {len(ports)}")

import grpc  # noqa: E402  (only the gRPC branch pays the import)
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

with grpc.insecure_channel(f"127.0.0.1:{ports[0]}") as channel:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=4)
sys.exit(0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1)
