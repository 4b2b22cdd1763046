"""Where `modelport serve` listens by default, and when it wants keys: loopback and open (the
article's command line works unchanged); every interface and keys required; every interface
with --auth=off, open and warned about."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from support import Server, half_plus_two, mark_complete

HALF = {"instances": [[1.0]]}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bind")
    half_plus_two(root / "half" / "1")
    mark_complete(root / "half" / "1")
    return root / "half"


def _listening(server: Server) -> set[tuple[str, int]]:
    """Listening addresses; gRPC's IPv6 sockets read as IPv4 (::ffff:127.0.0.1, and :: for every
    interface, dual-stack)."""
    found = set()
    for c in psutil.Process(server.proc.pid).net_connections():
        if c.status == psutil.CONN_LISTEN:
            ip = c.laddr.ip.removeprefix("::ffff:")
            found.add(("0.0.0.0" if ip == "::" else ip, c.laddr.port))
    return found


@pytest.mark.parametrize(
    "host,flags,bound,status,said",
    [
        (None, [], "127.0.0.1", 200, "REST API at http://127.0.0.1:"),
        ("0.0.0.0", [], "0.0.0.0", 401, "API keys required (0 in "),
        ("0.0.0.0", ["--auth=off"], "0.0.0.0", 200, "--auth=off on 0.0.0.0: anyone who can reach this port"),
    ],
)
def test_where_serve_listens_and_whether_it_wants_a_key(
    base: Path, tmp_path: Path, host: str | None, flags: list[str], bound: str, status: int, said: str
) -> None:
    args = ["--model_name", "half", "--model_base_path", str(base),
            "--api_key_store", str(tmp_path / "keys.db"), *flags]  # fmt: skip
    server = Server(args, tmp_path, host=host)
    try:
        server.wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 20, "ready")
        listening = _listening(server)
        assert {(bound, server.port), (bound, server.grpc_port)} <= listening, listening
        assert server.post("/v1/models/half:predict", HALF).status_code == status
    finally:
        server.stop()
    assert said in server.log()
