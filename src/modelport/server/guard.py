"""API keys at the model server's door, for every protocol: which scope each call needs, where
the key is read from, and the per-key counts in /metrics.

    predict   v1 :predict :classify :regress, v2 /infer, gRPC ModelInfer
    read      v1 status and /metadata, v2 model metadata and /ready, v2 server metadata,
              gRPC ModelMetadata, ModelReady, ServerMetadata
    metrics   /metrics
    (open)    /healthz /readyz /v2/health/live|ready, gRPC ServerLive|ServerReady, /openapi.json

The key comes as `Authorization: Bearer <key>` or `x-api-key: <key>` (REST headers, gRPC
metadata alike).
"""

from __future__ import annotations

import ipaddress

from modelport.security.auth import Authenticator, Refused
from modelport.security.keys import ApiKey
from modelport.server.metrics import ServerMetrics


class Guard:
    def __init__(self, auth: Authenticator, metrics: ServerMetrics) -> None:
        self._auth = auth
        self._metrics = metrics

    def admit(self, token: str | None, scope: str, model: str | None, client: str) -> ApiKey:
        try:
            key = self._auth.check(token, scope, model, client)
        except Refused as exc:
            self._metrics.key_request(exc.key_id, exc.http_status)
            raise
        self._metrics.key_request(key.id, 200)
        return key


def is_loopback(host: str) -> bool:
    """127.0.0.1, ::1, localhost: reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def compute_auth_required(host: str, auth: str) -> bool:
    """Whether calls need a key. `auth`: on | off | auto (the default): keys are required when
    the server listens beyond this machine, so the article's one-machine command line works as
    it is and a server reachable from the network is not open to it.

        auto, 127.0.0.1 -> False     auto, 0.0.0.0 -> True     on, any -> True     off, any -> False
    """
    if auth == "auto":
        return not is_loopback(host)
    return auth == "on"
