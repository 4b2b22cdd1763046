"""The shipped Prometheus rules: promtool accepts them, and every alert's unit test
(rules_test.yml: a case that fires and a near miss that does not) passes under `promtool test rules`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from modelport.monitor.prometheus import rules_text

HERE = Path(__file__).parent


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [shutil.which("promtool") or "promtool", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(rules_text())
    done = _promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_passes_its_promtool_unit_tests(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(rules_text())
    shutil.copy(HERE / "rules_test.yml", tmp_path)
    done = _promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(rules_text())["groups"] for r in g["rules"] if "alert" in r}
    fired = {
        case["alertname"]
        for test in yaml.safe_load((HERE / "rules_test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert len(alerts) >= 7 and alerts == fired


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: with the error threshold at 50%, ModelportHighErrorRate's case does."""
    (tmp_path / "rules.yml").write_text(rules_text().replace("ratio_rate5m > 0.05", "ratio_rate5m > 0.5"))
    shutil.copy(HERE / "rules_test.yml", tmp_path)
    done = _promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert done.returncode != 0 and "ModelportHighErrorRate" in done.stdout + done.stderr
