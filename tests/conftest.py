"""Suite-wide rules: markers by where a test lives, the longest modules first, and no test may
leave a process behind.

A leak check runs after each module's fixtures are torn down and once more at the end of the
session. A process counts as leaked when it is still alive and either descends from this pytest
process (a `serve`, a gateway, chromedriver and its Chromium, Prometheus) or names this run's
temporary folder on its command line: `modelport up --detach` double-forks, so the control
plane and the replicas and HAProxy it starts are no descendants of ours, but each of them is
given a path under the test's home (`--port_file <home>/...`, `-f <home>/.../haproxy.cfg`).
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

# Modules outside tests/e2e whose tests start real processes (servers, CLIs, browsers).
PROCESS_MODULES = (
    "tests/cli/test_home.py",
    "tests/cli/test_registry_cli.py",
    "tests/cli/test_startup.py",
    "tests/controlplane/test_analysis_prometheus.py",
    "tests/controlplane/test_home.py",
    "tests/controlplane/test_metrics.py",
    "tests/dataplane/test_haproxy.py",
    "tests/delivery/test_ci.py",
    "tests/delivery/test_run.py",
    "tests/dataplane/test_logs.py",
    "tests/dataplane/test_replica_faults.py",
    "tests/dataplane/test_supervisor.py",
    "tests/gateway/test_gateway.py",
    "tests/kube/test_build_image.py",
    "tests/kube/test_dockerfile_lint.py",
    "tests/kube/test_render_kustomize.py",
    "tests/kube/test_render_serves.py",
    "tests/pipeline/evaluate/test_report_browser.py",
    "tests/pipeline/train/test_environment.py",
    "tests/pipeline/train/test_train.py",
    "tests/registry/test_registry.py",
    "tests/security/test_audit.py",
    "tests/server/test_config_reload.py",
    "tests/server/test_enable_batching.py",
    "tests/server/test_grpc_beside_tritonclient.py",
    "tests/server/test_timeout_and_cors.py",
    "tests/server/test_workers.py",
)
# The longest modules, longest first (seconds in CI's runs, setup included): they run before the
# rest, so that two workers each given whole modules (`--dist loadfile --no-loadscope-reorder`,
# scripts/test.sh) end together instead of one running a long module alone at the end. (xdist's
# own order, by number of tests, put these last: they have few tests each.) Each run writes the
# seconds every module took to build/test-artifacts/module-seconds.txt: refresh this from it.
LONG_FIRST = (
    "tests/kube/test_build_image.py",
    "tests/e2e/test_controlplane.py",
    "tests/e2e/test_canary.py",
    "tests/e2e/test_tensorflow.py",
    "tests/e2e/test_autoscaling.py",
    "tests/e2e/test_batching.py",
    "tests/e2e/test_progressive.py",
    "tests/e2e/test_pipeline.py",
    "tests/gateway/test_gateway.py",
    "tests/e2e/test_lifecycle.py",
    "tests/e2e/test_fuzz_openapi.py",
    "tests/e2e/test_fuzz_memory.py",
    "tests/e2e/test_replica_faults.py",
    "tests/e2e/test_dashboard_browser.py",
    "tests/e2e/test_monitoring.py",
    "tests/delivery/test_run.py",
    "tests/pipeline/train/test_cnn.py",
)
MODULE_SECONDS: collections.Counter[str] = collections.Counter()
# Helpers a library keeps for its own pool, not started by a test: multiprocessing's resource
# tracker and fork server outlive the pools that started them, by design.
LIBRARY_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
# A stopped process may take a moment to go (Chromium's children after `quit()`, a replica
# finishing its SIGTERM): only what is still alive after this many seconds is a leak.
GRACE_SECONDS = 5.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    rank = {module: i for i, module in enumerate(LONG_FIRST)}
    ranks = {}
    for item in items:
        where = item.path.relative_to(root).as_posix()
        if where.startswith("tests/e2e/"):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)
        elif where in PROCESS_MODULES:
            item.add_marker(pytest.mark.slow)
        ranks[item.nodeid] = rank.get(where, len(LONG_FIRST))
    items.sort(key=lambda item: ranks[item.nodeid])  # stable: the rest keep their order


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Setup, call and teardown, summed per module (with xdist: in the controller, every worker's)."""
    MODULE_SECONDS[report.nodeid.split("::")[0]] += report.duration


def _suspects(basetemp: Path) -> list[psutil.Process]:
    me = psutil.Process()
    marker = f"{basetemp}/"
    found = {p.pid: p for p in me.children(recursive=True)}
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid != me.pid and marker in " ".join(proc.info.get("cmdline") or []):
            found[proc.pid] = proc
    return [p for p in found.values() if _alive(p) and not _library_helper(p)]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _library_helper(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return any(helper in cmdline for helper in LIBRARY_HELPERS)


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:300]}"
    except psutil.Error:
        return f"pid {proc.pid}: (gone)"


def leaked_processes(basetemp: Path) -> list[str]:
    """What is still alive after the grace period, killed so that it cannot leak further."""
    suspects = _suspects(basetemp)
    if not suspects:
        return []
    _, alive = psutil.wait_procs(suspects, timeout=GRACE_SECONDS)
    alive = [p for p in alive if _alive(p)]
    found = [_describe(p) for p in alive]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=GRACE_SECONDS)
    return found


@pytest.fixture(scope="module", autouse=True)
def no_leaked_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Autouse, so torn down after the module's own fixtures (its servers, planes, browsers)."""
    yield
    leaked = leaked_processes(tmp_path_factory.getbasetemp())
    assert not leaked, "processes left running by this module:\n" + "\n".join(leaked)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The same check once everything, session fixtures included, is torn down; and the seconds
    each module took, written for LONG_FIRST (by the controller, with xdist)."""
    if MODULE_SECONDS and "PYTEST_XDIST_WORKER" not in os.environ:
        from support import ARTIFACTS

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        lines = [f"{seconds:8.1f}  {module}" for module, seconds in MODULE_SECONDS.most_common()]
        (ARTIFACTS / "module-seconds.txt").write_text("\n".join(lines) + "\n")
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        basetemp = factory.getbasetemp()
    except (OSError, ValueError):
        return
    leaked = leaked_processes(basetemp)
    if leaked:
        session.config.get_terminal_writer().line(
            "processes left running at the end of the session:\n" + "\n".join(leaked), red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
