"""`modelport up` and `modelport down`: start and stop the local control plane."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from modelport.controlplane.client import Client
from modelport.controlplane.home import default_home, make_state_dir, state_dir
from modelport.errors import ModelportError

if TYPE_CHECKING:  # the composition root loads every controller: only `up` needs it
    from modelport.controlplane.main import Options


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.command()
@click.option("--detach", "-d", is_flag=True, help="Run in the background; return once it answers.")
@click.option(
    "--port", type=int, default=0, show_default=True, help="API port on 127.0.0.1 (0: pick a free one)."
)
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="State folder [$MODELPORT_HOME or ~/.modelport].",
)
@click.option(
    "--backoff-seconds",
    type=float,
    default=10.0,
    show_default=True,
    help="First restart delay of a crashed replica.",
)
@click.option(
    "--grace-seconds",
    type=float,
    default=10.0,
    show_default=True,
    help="SIGTERM to SIGKILL when stopping a replica.",
)
@click.option(
    "--sync-seconds",
    type=float,
    default=0.2,
    show_default=True,
    help="How often controllers probe and reconcile.",
)
@click.option(
    "--metrics-seconds",
    type=float,
    default=5.0,
    show_default=True,
    help="How often each replica's CPU, memory and /metrics are sampled.",
)
@click.option(
    "--metrics-window",
    type=float,
    default=30.0,
    show_default=True,
    help="Rates and latency quantiles are taken over this many seconds.",
)
@click.option(
    "--hpa-sync-seconds",
    type=float,
    default=15.0,
    show_default=True,
    help="How often each HorizontalPodAutoscaler decides.",
)
@click.option("--prometheus-url", default=None, help="Prometheus for Object/External HPA metrics (PromQL).")
@click.option(
    "--container-log-max-size",
    default="10Mi",
    show_default=True,
    callback=lambda _ctx, _param, value: _log_size(value),
    help="A replica's log is rotated once it is larger (bytes, or a quantity like 10Mi).",
)
@click.option(
    "--container-log-max-files",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Log files kept per replica: the live one and the rotated parts.",
)
@click.option(
    "--model-root",
    "model_roots",
    multiple=True,
    type=click.Path(file_okay=False, path_type=str),
    help="A folder Deployments may serve models from (repeat for more); registry:// is always "
    "allowed. [default: any folder]",
)
@click.option(
    "--allow-unsafe-args",
    is_flag=True,
    help="Let a Deployment's args hold any `modelport serve` flag (--allow_pickle, --host, --auth=off, "
    "...): only when everyone who may apply is trusted with this machine.",
)
@click.option(
    "--prometheus", "with_prometheus", is_flag=True,
    help="Also start Prometheus with modelport's alert rules, as `modelport monitoring up` does.",
)  # fmt: skip
def up(detach: bool, home: Path | None, with_prometheus: bool, **settings: Any) -> None:
    """Start the control plane: the API on loopback and the controllers."""
    from modelport.controlplane.main import ControlPlane, Options

    home = home or default_home()
    settings["model_roots"] = tuple(str(Path(r).resolve()) for r in settings["model_roots"])
    options = Options(**settings)
    if detach:
        url = _detach(home, options)
        if with_prometheus:
            _monitoring_up(home, url)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        plane = ControlPlane(home, options)
    except ModelportError as exc:
        fail(exc.message)
    click.echo(f"control plane listening on http://127.0.0.1:{plane.port} (home {home})", err=True)
    if with_prometheus:  # its service discovery retries until the API below answers
        _monitoring_up(home, f"http://127.0.0.1:{plane.port}")
    try:
        plane.run()
    finally:
        if with_prometheus:
            from modelport.monitor.prometheus import Monitoring

            Monitoring(home).stop()


def _monitoring_up(home: Path, api_url: str) -> None:
    from modelport.monitor.prometheus import Monitoring

    watch = Monitoring(home)
    try:
        watch.write(api_url, state_dir(home) / "token", "5s")
        running = watch.start(0)
    except ModelportError as exc:
        fail(exc.message)
    click.echo(f"prometheus: {running.url} (pid {running.pid}); config {watch.config}", err=True)


def _log_size(value: str) -> str:
    from modelport.spec import quantity

    try:
        size = quantity(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if size < 1:
        raise click.BadParameter(f"{value!r} must be at least 1 byte")
    return value


def _detach(home: Path, options: Options) -> str:
    """Start the control plane in the background; its API's URL once it answers."""
    state = make_state_dir(home)  # 0700 before the child writes its log there
    info = state / "api.json"
    log_path = state / "controlplane.log"
    args = [sys.executable, "-m", "modelport", "up", "--home", str(home)]
    for name, value in dataclasses.asdict(options).items():
        flag = f"--{name.replace('_', '-')}"
        if name == "model_roots":
            for root in value:
                args += ["--model-root", root]
        elif isinstance(value, bool):
            args += [flag] if value else []
        elif value is not None:
            args += [flag, str(value)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            fail("the control plane did not start:\n  " + "\n  ".join(tail))
        try:
            url = json.loads(info.read_text())
        except (OSError, ValueError):
            url = None
        if url and url.get("pid") == proc.pid and Client.from_home(home).healthy():
            click.echo(f"control plane running at {url['url']} (pid {proc.pid}); log: {log_path}")
            return str(url["url"])
        time.sleep(0.1)
    proc.kill()
    fail(f"the control plane did not answer within 60 s; see {log_path}")


@click.command()
@click.option("--keep-replicas", is_flag=True, help="Leave replicas and load balancers running.")
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="State folder [$MODELPORT_HOME or ~/.modelport].",
)
def down(keep_replicas: bool, home: Path | None) -> None:
    """Stop the control plane (and, unless --keep-replicas, every replica and load balancer, and
    the Prometheus `monitoring up` started)."""
    home = home or default_home()
    if not keep_replicas:
        from modelport.monitor.prometheus import Monitoring  # here: `--help` and `get` stay light

        stopped = Monitoring(home).stop()
        if stopped is not None:
            click.echo(f"prometheus (pid {stopped.pid}) stopped")
    try:
        client = Client.from_home(home)
        pid = json.loads((state_dir(home) / "api.json").read_text())["pid"]
        client.request("POST", "/api/shutdown", {"keepReplicas": keep_replicas})
    except (ModelportError, OSError, ValueError):
        click.echo("control plane is not running")
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            click.echo("control plane stopped" + (" (replicas kept running)" if keep_replicas else ""))
            return
        time.sleep(0.1)
    fail(f"the control plane (pid {pid}) did not stop within 60 s")
