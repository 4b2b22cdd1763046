"""A Service's port comes from outside the kernel's ephemeral range, where every replica's own
port (bound as port 0) and every outgoing connection's comes from."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from modelport.dataplane.ports import ephemeral_range, service_port, service_ports


@pytest.mark.parametrize(
    ("ephemeral", "wanted"),
    [
        ((32768, 60999), (30000, 32767)),  # Linux's default: all of Kubernetes' NodePort range
        ((31000, 60999), (30000, 30999)),  # widened down into it: what is left below
        ((10000, 40000), (40001, 65535)),  # over it: the larger gap left, above
        ((1024, 65535), None),  # everything ephemeral: nothing left
    ],
)
def test_service_ports_avoid_the_ephemeral_range(
    ephemeral: tuple[int, int], wanted: tuple[int, int] | None
) -> None:
    found = service_ports(range(ephemeral[0], ephemeral[1] + 1))
    assert ((found[0], found[-1]) if found else None) == wanted


def test_the_ephemeral_range_is_read_from_the_kernel(tmp_path: Path) -> None:
    (tmp_path / "range").write_text("40000\t50000\n")
    assert ephemeral_range(tmp_path / "range") == range(40000, 50001)
    assert ephemeral_range(tmp_path / "missing") == range(32768, 61000)  # Linux's default


def test_a_service_port_is_free_and_outside_the_ephemeral_range() -> None:
    port = service_port()
    assert port in service_ports(ephemeral_range()) and port not in ephemeral_range()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free: it binds
