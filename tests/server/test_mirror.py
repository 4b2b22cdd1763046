"""Shadow traffic's pure parts: which answers say the same, which requests are copied (exactly N
of every 100), and the rules file the control plane writes and the replica reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from modelport.server.mirror import MIRRORED, Mirror, MirrorRule, agrees, read_rules, write_rules


@pytest.mark.parametrize(
    ("stable", "canary", "same"),
    [
        ({"predictions": [[0.1, 0.7, 0.2]]}, {"predictions": [[0.12, 0.66, 0.22]]}, True),  # class 1 both
        ({"predictions": [[0.1, 0.7, 0.2]]}, {"predictions": [[0.5, 0.3, 0.2]]}, False),
        (
            {"predictions": [{"classes": 3, "scores": [0.9, 0.1]}]},
            {"predictions": [{"classes": 4, "scores": [0.9, 0.1]}]},
            False,
        ),
        ({"predictions": [2.0001]}, {"predictions": [2.0]}, True),  # a number within 1e-3
        ({"predictions": [2.5]}, {"predictions": [2.0]}, False),
        ({"predictions": ["cat"]}, {"predictions": ["dog"]}, False),
        ({"predictions": [1, 2]}, {"predictions": [1]}, False),
        ({"predictions": [True]}, {"predictions": [1.0]}, False),
        # v2 answers name the version that answered: not a difference
        (
            {"model_version": "1", "id": "a", "outputs": [{"data": [3]}]},
            {"model_version": "2", "id": "b", "outputs": [{"data": [3]}]},
            True,
        ),
    ],
)
def test_answers_agree_on_the_predicted_class_and_on_numbers_within_tolerance(
    stable: object, canary: object, same: bool
) -> None:
    assert agrees(stable, canary) is same


def test_exactly_n_of_every_100_answers_are_copied_and_never_a_copy(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path / "m.json", CollectorRegistry())
    mirror._rules = {"m": MirrorRule("m", 20, ("http://127.0.0.1:1",))}
    picked = [mirror.wants("m", []) for _ in range(100)]
    assert sum(picked) == 20 and picked[:5] == [False, False, False, False, True]
    assert not any(mirror.wants("m", [(MIRRORED, b"1")]) for _ in range(100))
    assert not any(mirror.wants("other", []) for _ in range(100))
    mirror._rules = {"m": MirrorRule("m", 50, ())}  # no canary replica ready: nothing copied
    assert not any(mirror.wants("m", []) for _ in range(10))


def test_rules_round_trip_and_no_rule_removes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.mirror.json"
    assert read_rules(path) == {}
    rule = MirrorRule("mnist", 50, ("http://127.0.0.1:4001", "http://127.0.0.1:4002"))
    write_rules(path, [rule])
    assert read_rules(path) == {"mnist": rule}
    write_rules(path, [])
    assert not path.exists()
    path.write_text('{"rules": [{"model": "m", "percent": 150, "targets": []}]}')
    with pytest.raises(ValueError, match="percent 150"):
        read_rules(path)


def test_a_copy_goes_out_again_on_a_new_connection_when_the_kept_one_was_closed() -> None:
    """A canary replica closes an idle keep-alive connection (its keep-alive timeout) without
    saying so: the next copy finds it closed and is sent again on a new connection, once."""
    from modelport.server.mirror import _Link

    async def scenario() -> list[tuple[int, bytes]]:
        connections = 0

        async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(v for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                              if k.lower() == b"content-length"))  # fmt: skip
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
            writer.close()  # then gone, as after an idle keep-alive timeout

        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        target = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        link = _Link()
        got = [await link.post(target, "/v1/models/m:predict", [], b"{}") for _ in range(3)]
        link.close()
        server.close()
        await server.wait_closed()
        assert connections == 3
        return got

    assert asyncio.run(scenario()) == [(200, b"{}")] * 3
