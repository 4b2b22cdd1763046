"""A real Prometheus (Debian's) for a control plane: its configuration, and starting and
stopping it beside the control plane (`modelport monitoring up|down`).

    home/monitoring/
        prometheus.yml     what render_config writes
        rules.yml          the rules shipped in this package (rules.yml beside this module)
        data/              Prometheus' database
        prometheus.log     its output
        prometheus.json    {"url", "pid"} of the running one

Targets come from the control plane's HTTP service discovery (GET /api/prometheus/targets, with
the API's token): every running replica (`component="replica"`, labelled with its namespace,
Deployment, Pod and the Pod's labels) and every Service's HAProxy exporter
(`component="loadbalancer"`); the control plane's own /metrics is a static target.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from modelport.dataplane.ports import free_port
from modelport.dataplane.process import AdoptedProcess
from modelport.errors import Code, ModelportError

RULES = "rules.yml"


def rules_text() -> str:
    """The rules file shipped in the package."""
    return resources.files("modelport.monitor").joinpath(RULES).read_text()


def render_config(api_url: str, token_file: Path, interval: str, rule_files: list[str]) -> dict[str, Any]:
    """prometheus.yml: replicas and load balancers by service discovery, the control plane itself."""
    auth = {"type": "Bearer", "credentials_file": str(token_file)}
    api = urllib.parse.urlsplit(api_url)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        **({"rule_files": rule_files} if rule_files else {}),
        "scrape_configs": [
            {
                "job_name": "modelport",
                "http_sd_configs": [
                    {
                        "url": f"{api_url}/api/prometheus/targets",
                        "refresh_interval": interval,
                        "authorization": auth,
                    }
                ],
                "relabel_configs": [
                    {"regex": "__meta_modelport_label_(.+)", "action": "labelmap", "replacement": "$1"}
                ],
            },
            {
                "job_name": "modelport-controlplane",
                "authorization": auth,
                "static_configs": [{"targets": [api.netloc], "labels": {"component": "controlplane"}}],
            },
        ],
    }


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ModelportError(
            Code.FAILED_PRECONDITION, f"{name} is not installed: apt-get install prometheus (Debian)"
        )
    return found


def check_config(config: Path) -> None:
    """`promtool check config` (which checks the rule files it names too); a refusal is an error
    with promtool's words."""
    done = subprocess.run(
        [binary("promtool"), "check", "config", str(config)], capture_output=True, text=True
    )
    if done.returncode != 0:
        said = " ".join(line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip())
        raise ModelportError(Code.INTERNAL, f"promtool refused {config}: {said}")


@dataclass(frozen=True)
class Running:
    url: str
    pid: int


class Monitoring:
    """The Prometheus of one home: written, checked, started, reloaded, stopped."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "monitoring"
        self.config = self.dir / "prometheus.yml"
        self.rules = self.dir / RULES
        self.log = self.dir / "prometheus.log"
        self.info = self.dir / "prometheus.json"

    def write(self, api_url: str, token_file: Path, interval: str) -> None:
        import yaml  # only here: a client that never writes a config does not pay for it

        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.rules.write_text(rules_text())
        config = render_config(api_url, token_file, interval, [str(self.rules)])
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        check_config(self.config)

    def running(self) -> Running | None:
        try:
            info = json.loads(self.info.read_text())
        except (OSError, ValueError):
            return None
        if AdoptedProcess.find(info.get("pid"), f"--config.file={self.config}") is None:
            return None
        return Running(str(info["url"]), int(info["pid"]))

    def start(self, port: int, timeout: float = 30.0) -> Running:
        """Start Prometheus on loopback (port 0: a free one), detached; return once it is ready,
        or reload the configuration of the one already running."""
        current = self.running()
        if current is not None:
            reload(current.pid)
            return current
        port = port or free_port()
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                [binary("prometheus"), f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                 "--storage.tsdb.retention.time=7d", "--web.enable-lifecycle"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(OSError):
                    proc.kill()
                tail = self.log.read_text(errors="replace").splitlines()[-3:]
                raise ModelportError(
                    Code.INTERNAL, f"Prometheus did not start ({self.log}): {' '.join(tail)}"
                )
            time.sleep(0.1)
        self.info.write_text(json.dumps({"url": url, "pid": proc.pid}))
        return Running(url, proc.pid)

    def stop(self, timeout: float = 20.0) -> Running | None:
        current = self.running()
        if current is not None:
            proc = AdoptedProcess.find(current.pid, f"--config.file={self.config}")
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        with contextlib.suppress(FileNotFoundError):
            self.info.unlink()
        return current


def reload(pid: int) -> None:
    """SIGHUP: Prometheus re-reads its configuration and rule files."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGHUP)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False
