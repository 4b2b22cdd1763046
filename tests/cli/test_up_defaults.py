"""`modelport up`'s documented defaults (README, "Autoscaling" and the fault table): each replica
sampled every 5 s over a 30 s window, each HPA deciding every 15 s, the first restart after 10 s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelport.cli import cli


def _options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *flags: str) -> Any:
    captured: list[Any] = []
    monkeypatch.setattr("modelport.cli.cluster._detach", lambda home, options: captured.append(options))
    result = CliRunner().invoke(
        cli, ["up", "--detach", "--home", str(tmp_path), *flags], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    (options,) = captured
    return options


def test_up_samples_every_5_s_over_30_s_and_autoscalers_decide_every_15_s(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    options = _options(monkeypatch, tmp_path)
    assert (options.metrics_seconds, options.metrics_window, options.hpa_sync_seconds) == (5.0, 30.0, 15.0)
    assert options.backoff_seconds == 10.0 and options.prometheus_url is None
    tuned = _options(
        monkeypatch, tmp_path, "--metrics-seconds", "1", "--metrics-window", "10", "--hpa-sync-seconds", "3"
    )
    assert (tuned.metrics_seconds, tuned.metrics_window, tuned.hpa_sync_seconds) == (1.0, 10.0, 3.0)


def test_up_rotates_each_replicas_log_at_10_mi_keeping_5_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    options = _options(monkeypatch, tmp_path)
    assert (options.container_log_max_size, options.container_log_max_files) == ("10Mi", 5)
    tuned = _options(
        monkeypatch, tmp_path, "--container-log-max-size", "64Ki", "--container-log-max-files", "2"
    )
    assert (tuned.container_log_max_size, tuned.container_log_max_files) == ("64Ki", 2)
    bad = CliRunner().invoke(cli, ["up", "--home", str(tmp_path), "--container-log-max-size", "lots"])
    assert bad.exit_code == 2 and "not a quantity: 'lots'" in bad.output
