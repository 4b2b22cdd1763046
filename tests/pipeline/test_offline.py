""" "Nothing is downloaded" (README, "From data to a served model"): training on mnist5k and
evaluating the result work with every network connection refused."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from modelport.pipeline.evaluate import evaluate
from modelport.pipeline.train import TrainConfig, train


def test_training_and_evaluating_open_no_network_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError(f"the network is off in this test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    folder = train(TrainConfig(epochs=1, out=str(tmp_path / "v")))
    report = evaluate(folder, out=tmp_path / "eval")
    assert report["data"]["size"] == 500 and report["export_check"]["agrees"] is True
    assert attempts == []
