"""`modelport build` for real: the MNIST example, published and labelled production, built into an
image by Docker with no network, run, asked to predict real MNIST digits, and stopped.

No image registry is reachable here, so the base image is made locally: a Debian root file system
with Python 3 from debootstrap (scripts/debian-python-rootfs.sh, cached under build/test-cache/,
as is dockerd's data: the imported base image and the build's layer cache) `docker import`ed. The
engine is a dockerd of this test's own, started with networking switched off (it would otherwise
rewrite the machine's bridge and iptables) and stopped at the end. The container runs with
`--network none` and a read-only root file system; requests come from inside its network
namespace (`docker exec`), so its ports are the image's own (8501) and clash with nothing here.

Podman and Buildah build the same context on a storage of their own (no daemon).

Measured on a 2-core machine shared with other work (load average 7 to 13): once cached, the
module takes one to two minutes (a change to modelport's code rebuilds its small layer and the
final stages, about a minute more); from a fresh clone, the set-up's debootstrap takes 2 min 40 s
and the module 4 min 15 s (every wheel installed into the images, by Docker and by Podman)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from modelport.examples import write_mnist_repository
from modelport.kube import layout
from modelport.kube.pods import Models, PodOptions
from modelport.kube.render import load_objects_from, render_kubernetes
from modelport.registry import Registry
from support import poll

ROOT = Path(__file__).resolve().parents[2]
# Resolved: runc refuses a container root file system whose path goes through a symlink.
CACHE = (ROOT / "build" / "test-cache" / "docker").resolve()
BASE_IMAGE = "local/debian-python:bookworm"
IMAGE = "modelport-test/mnist:1"
EXAMPLE = ROOT / "examples" / "mnist"
SAMPLES = ROOT / "src" / "modelport" / "examples" / "mnist" / "samples"
pytestmark = pytest.mark.timeout(1200)  # a first run debootstraps and installs every wheel
Done = subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class Engine:
    env: dict[str, str]
    tool: str = "docker"  # or podman: the same command line

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> Done:
        done = subprocess.run(
            [self.tool, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            said = f"{done.stdout}\n{done.stderr}"
            raise AssertionError(f"docker {' '.join(args)}: exit {done.returncode}\n{said}")
        return done


def _stop_stale(pidfile: Path) -> None:
    """A dockerd an interrupted run left on our data-root would refuse a new one: stop it."""
    try:
        proc = psutil.Process(int(pidfile.read_text().strip()))
        if str(CACHE) in " ".join(proc.cmdline()):
            proc.terminate()
            proc.wait(30)
    except (OSError, ValueError, psutil.Error):
        pass
    pidfile.unlink(missing_ok=True)


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """One run at a time on the cache (two checkouts may share build/): a second one waits."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:

        def taken() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        late = poll(taken, 900, 1)
        assert late is None, f"another run held {lock} for 15 minutes"
        yield


@pytest.fixture(scope="module")
def base_tarball() -> Iterator[Path]:
    """The cache, held for the module's duration, with the base root file system in it."""
    with _exclusive(CACHE / "lock"):
        tarball = CACHE / "debian-python.tar"
        script = ROOT / "scripts" / "debian-python-rootfs.sh"
        subprocess.run(["bash", str(script), str(tarball)], check=True, timeout=900)
        yield tarball


@pytest.fixture(scope="module")
def engine(base_tarball: Path) -> Iterator[Engine]:
    yield from _engine(base_tarball)


def _engine(tarball: Path) -> Iterator[Engine]:
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    run = CACHE / "run"
    run.mkdir(parents=True, exist_ok=True)
    _stop_stale(run / "dockerd.pid")
    socket = run / "docker.sock"
    # Exactly the flags of shared/INFRA.md: no bridge, no iptables, no forwarding, no masquerade.
    args = [dockerd, "--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
            f"--data-root={CACHE / 'data'}", f"--exec-root={run / 'exec'}", f"--host=unix://{socket}",
            f"--pidfile={run / 'dockerd.pid'}"]  # fmt: skip
    log = open(CACHE / "dockerd.log", "ab")  # noqa: SIM115 (closed below, after the process)
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    engine = Engine({**os.environ, "DOCKER_HOST": f"unix://{socket}"})
    try:
        late = poll(lambda: engine.docker("version", timeout=10, check=False).returncode == 0, 60, 0.2)
        assert late is None, f"dockerd did not answer in 60 s{late}; see {CACHE / 'dockerd.log'}"
        if engine.docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
            engine.docker("import", str(tarball), BASE_IMAGE, timeout=300)
        yield engine
    finally:
        proc.send_signal(signal.SIGTERM)  # dockerd stops its containerd, and with it any container
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _drop_older_builds(engine: Engine, build_output: str) -> None:
    """Keep the cache dir from growing with every change of the code: untagged images this
    build did not make or reuse (an older build's install stage) are removed; its own stay as
    the next run's layer cache."""
    # Docker's classic builder says ` ---> 5b8db0ab20e0`, Podman and Buildah `--> Using cache
    # 5b8db0ab20e0...` or `--> 5b8db0ab20e`: compared on their first 11 digits.
    used = {i[:11] for i in re.findall(r"--> (?:Using cache )?([0-9a-f]{11,})", build_output)}
    if not used:  # another builder's output: leave everything
        return
    dangling = engine.docker("images", "--quiet", "--filter", "dangling=true").stdout.split()
    stale = sorted(i for i in set(dangling) if i[:11] not in used)
    if stale:
        engine.docker("rmi", *stale, check=False)


def _modelport(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport", *args], env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip


def _predict(engine: Engine, container: str, png: Path, path: str = "mnist") -> dict[str, object]:
    """The article's request (a PNG as b64 under image_bytes), sent from inside the container."""
    client = (
        "import json, sys, urllib.request\n"
        "body = sys.stdin.read().encode()\n"
        f"req = urllib.request.Request('http://127.0.0.1:8501/v1/models/{path}:predict', body,"
        " {'Content-Type': 'application/json'})\n"
        "print(urllib.request.urlopen(req, timeout=30).read().decode())\n"
    )
    image = {"b64": base64.b64encode(png.read_bytes()).decode()}
    body = json.dumps({"signature_name": "serving_default", "instances": [{"image_bytes": image}]})
    done = subprocess.run([engine.tool, "exec", "-i", container, "python3", "-c", client], input=body,
                          env=engine.env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _ready(engine: Engine, container: str, url: str = "http://127.0.0.1:8501/readyz") -> bool:
    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2)"
    return engine.docker("exec", container, "python3", "-c", probe, timeout=30, check=False).returncode == 0


@dataclass(frozen=True)
class Built:
    image: str
    sha256: str  # the registry's, of the published version
    output: str  # what `modelport build` printed


@pytest.fixture(scope="module")
def built(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The README's command: the MNIST example published, labelled production, built."""
    tmp = tmp_path_factory.mktemp("build")
    registry = Registry.open(tmp / "home")
    example = write_mnist_repository(tmp / "example" / "mnist")
    registry.publish("mnist", example, metrics={"accuracy": 0.96})
    registry.label("mnist", "production", 1)
    env = {**engine.env, "MODELPORT_HOME": str(tmp / "home")}
    done = _modelport("build", "registry://mnist@production", "-t", IMAGE, "--base-image", BASE_IMAGE,
                      "--offline", "--network", "none", env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _drop_older_builds(engine, done.stdout)
    return Built(IMAGE, registry.version("mnist", 1).sha256, done.stdout + done.stderr)


def test_the_mnist_image_builds_offline_serves_digits_as_non_root_and_stops_on_sigterm(
    engine: Engine, built: Built
) -> None:
    assert f"built {IMAGE}" in built.output
    inspected = engine.docker("image", "inspect", "--format", "{{json .Config.Labels}}", IMAGE)
    labels = json.loads(inspected.stdout)
    assert labels["modelport.model.name"] == "mnist" and labels["modelport.model.version"] == "1"
    assert labels["modelport.model.sha256"] == built.sha256

    name = f"modelport-test-{os.getpid()}"
    engine.docker("run", "-d", "--name", name, "--pull", "never", "--network", "none", "--read-only", IMAGE)
    try:
        late = poll(lambda: _ready(engine, name), 120, 0.5)
        assert late is None, f"not ready in 120 s{late}\n" + engine.docker("logs", name, check=False).stderr
        for digit in (7, 2, 0):
            answer = _predict(engine, name, SAMPLES / f"digit-{digit}.png")
            assert answer["predictions"][0]["classes"] == digit  # type: ignore[index]
        # the registry's label is a version label in the image's model config
        answer = _predict(engine, name, SAMPLES / "digit-4.png", "mnist/labels/production")
        assert answer["predictions"][0]["classes"] == 4  # type: ignore[index]
        # PID 1 is the server itself (so SIGTERM reaches it), run by the image's non-root user.
        status = engine.docker("exec", name, "cat", "/proc/1/status").stdout
        uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        assert int(uid) == layout.RUN_AS_USER != 0
        assert "modelport" in engine.docker("exec", name, "cat", "/proc/1/cmdline").stdout
        health = ("inspect", "--format", "{{.State.Health.Status}}", name)
        late = poll(lambda: engine.docker(*health).stdout.strip() == "healthy", 90, 1)
        assert late is None, "the HEALTHCHECK never said healthy"

        # SIGTERM, and SIGKILL after the grace period the rendered Pods get: exit code 0 means
        # the server finished on its own (a SIGKILL would be 137).
        started = time.monotonic()
        engine.docker("stop", "-t", str(layout.GRACE_SECONDS), name, timeout=layout.GRACE_SECONDS + 60)
        stopped_in = time.monotonic() - started
        state = json.loads(engine.docker("inspect", "--format", "{{json .State}}", name).stdout)
        assert (state["ExitCode"], state["OOMKilled"]) == (0, False), (state, stopped_in)
        assert "server stopped" in engine.docker("logs", name).stderr
    finally:
        engine.docker("rm", "--force", name, check=False)


def test_a_context_tampered_after_it_was_written_fails_the_image_build(
    engine: Engine, tmp_path: Path
) -> None:
    """The image build verifies the models again (its models stage), so an edit between
    `--dockerfile-only` and `docker build` is caught there too."""
    write_mnist_repository(tmp_path / "mnist")
    context = tmp_path / "context"
    written = _modelport("build", str(tmp_path / "mnist"), "--dockerfile-only", "-o", str(context),
                         "--base-image", BASE_IMAGE, "--offline", env=engine.env)  # fmt: skip
    assert written.returncode == 0, written.stderr
    onnx = context / "models" / "mnist" / "1" / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[100] ^= 0xFF
    onnx.write_bytes(bytes(data))
    tag = "modelport-test/tampered:1"
    done = engine.docker("build", "--force-rm", "--network", "none", "-t", tag, str(context),
                         timeout=900, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "/models/mnist/1/model.onnx: sha256" in done.stdout + done.stderr


def _rendered(image: str, models: Models) -> dict[str, str]:
    return dict(
        render_kubernetes(
            load_objects_from([EXAMPLE / "deploy.yaml", EXAMPLE / "hpa.yaml"]), PodOptions(image, models)
        ).files
    )


def _start_rendered(engine: Engine, name: str, image: str, pod: dict[str, Any], *extra: str) -> None:
    """Start a rendered Pod's one container the way the kubelet would: its command and args, its
    security context (uid and gid, read-only root, every capability dropped, no privilege
    escalation), /tmp a scratch volume; `extra`: mounts and the network."""
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert not container["securityContext"]["allowPrivilegeEscalation"]
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    engine.docker(
        "run", "-d", "--name", name, "--pull", "never", "--read-only", "--user", user,
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--tmpfs", "/tmp", *extra,
        "--entrypoint", container["command"][0], image, *container["args"],
    )  # fmt: skip


def _wait_ready(engine: Engine, name: str, container: dict[str, Any]) -> None:
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    ready = f"http://127.0.0.1:{port}{container['readinessProbe']['httpGet']['path']}"
    late = poll(lambda: _ready(engine, name, ready), 120, 0.5)
    assert late is None, (
        f"{name} not ready in 120 s{late}\n" + engine.docker("logs", name, check=False).stderr
    )


def _stop_like_the_kubelet(engine: Engine, name: str, pod: dict[str, Any]) -> None:
    """The preStop command, then SIGTERM with the grace period: exit code 0 (137 would be SIGKILL)."""
    (container,) = pod["containers"]
    engine.docker("exec", name, *container["lifecycle"]["preStop"]["exec"]["command"])
    grace = pod["terminationGracePeriodSeconds"]
    engine.docker("stop", "-t", str(grace), name, timeout=grace + 60)
    assert json.loads(engine.docker("inspect", "--format", "{{json .State.ExitCode}}", name).stdout) == 0


@contextmanager
def _rendered_server(
    engine: Engine, image: str, models: Models, tmp_path: Path, *mounts: str
) -> Iterator[str]:
    """The model server `modelport render --models MODELS` writes for examples/mnist, on `image`,
    its ConfigMap mounted read-only over /etc/modelport; ready by its readiness probe and
    answering the right digit; stopped as the kubelet stops it on the way out."""
    files = _rendered(image, models)
    pod = yaml.safe_load(files["deployment-mnist.yaml"])["spec"]["template"]["spec"]
    etc = tmp_path / "etc"
    etc.mkdir()
    etc.chmod(0o755)  # the Pod's user reads it
    config = yaml.safe_load(files["configmap-mnist-model-config.yaml"])["data"][layout.CONFIG_FILE]
    (etc / layout.CONFIG_FILE).write_text(config)
    (etc / layout.CONFIG_FILE).chmod(0o644)
    name = f"modelport-test-pod-{os.getpid()}"
    config_mount = f"{etc}:{layout.CONFIG_DIR}:ro"
    _start_rendered(engine, name, image, pod, "--network", "none", "--volume", config_mount, *mounts)
    try:
        _wait_ready(engine, name, pod["containers"][0])
        answer = _predict(engine, name, SAMPLES / "digit-3.png")
        assert answer["predictions"][0]["classes"] == 3  # type: ignore[index]
        yield name
        _stop_like_the_kubelet(engine, name, pod)
    finally:
        engine.docker("rm", "--force", name, check=False)


def _post_image(engine: Engine, container: str, png: Path) -> dict[str, Any]:
    """The article's Flask client's request: the image as multipart/form-data in the field img."""
    client = (
        "import sys, urllib.request\n"
        "data = sys.stdin.buffer.read()\n"
        'body = (b\'--b\\r\\nContent-Disposition: form-data; name="img"; filename="d.png"\\r\\n\'\n'
        "        b'Content-Type: image/png\\r\\n\\r\\n' + data + b'\\r\\n--b--\\r\\n')\n"
        "req = urllib.request.Request('http://127.0.0.1:5000/', body,"
        " {'Content-Type': 'multipart/form-data; boundary=b'})\n"
        "print(urllib.request.urlopen(req, timeout=30).read().decode())\n"
    )
    command = [engine.tool, "exec", "-i", container, "python3", "-c", client]
    done = subprocess.run(command, input=png.read_bytes(), env=engine.env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_rendered_pods_run_on_the_built_image(engine: Engine, built: Built, tmp_path: Path) -> None:
    """The model server's Pod, and the gateway's (the same image, `modelport gateway`) beside
    it in its network namespace, as a Pod of the gateway Deployment reaches the model Service;
    the article's client posts a digit to the gateway and gets it back."""
    with _rendered_server(engine, built.image, "image", tmp_path) as server:
        files = _rendered(built.image, "image")
        pod = yaml.safe_load(files["deployment-gateway.yaml"])["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        # The Service's name resolves on a cluster; here the server is on the shared loopback.
        container["args"] = [a.replace("http://mnist:", "http://127.0.0.1:") for a in container["args"]]
        name = f"modelport-test-gateway-{os.getpid()}"
        _start_rendered(engine, name, built.image, pod, "--network", f"container:{server}")
        try:
            _wait_ready(engine, name, container)
            assert _post_image(engine, name, SAMPLES / "digit-5.png") == {"result": [5]}
            _stop_like_the_kubelet(engine, name, pod)
        finally:
            engine.docker("rm", "--force", name, check=False)


def test_a_no_model_image_serves_the_models_volume_render_mounts(engine: Engine, tmp_path: Path) -> None:
    """`modelport build --no-model`: the server alone; `render --models volume` mounts the
    claim's MODEL/VERSION/ folders read-only at /models (here a folder of this machine)."""
    image = "modelport-test/server:1"
    context = tmp_path / "context"  # -o with a build: the context is kept
    done = _modelport("build", "--no-model", "-t", image, "--base-image", BASE_IMAGE, "--offline",
                      "--network", "none", "-o", str(context), env=engine.env)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (context / "Dockerfile").is_file() and f"built {image}" in done.stdout
    listing = engine.docker("run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "ls",
                            image, "-a", "/", check=False).stdout.split()  # fmt: skip
    assert "models" not in listing  # nothing baked in
    models = tmp_path / "claim"
    write_mnist_repository(models / "mnist")
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    mount = f"{models}:{layout.MODELS_DIR}:ro"
    with _rendered_server(engine, image, "volume", tmp_path, "--volume", mount):
        pass  # ready, the right digit, stopped cleanly


@pytest.fixture(scope="module")
def podman(base_tarball: Path) -> dict[str, str]:
    """Podman and Buildah (no daemon) on a storage of their own in the cache, the base image
    imported into it. Their default open-file and process limits fail here (root may not raise
    them): containers.conf sets ones that work, as a machine's own configuration would."""
    root = CACHE / "podman"
    root.mkdir(parents=True, exist_ok=True)
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "storage"}"\nrunroot = "{root / "run"}"\n'
    )
    (root / "containers.conf").write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
    )
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
           "CONTAINERS_CONF": str(root / "containers.conf")}  # fmt: skip
    assert shutil.which("podman") and shutil.which("buildah"), "scripts/system-packages.sh podman buildah"
    exists = subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=env, timeout=60, check=False)
    if exists.returncode != 0:
        subprocess.run(["podman", "import", str(base_tarball), BASE_IMAGE], env=env, check=True,
                       capture_output=True, timeout=300)  # fmt: skip
    return env


def test_podman_and_buildah_build_it_too(podman: dict[str, str], tmp_path: Path) -> None:
    """--builder podman and --builder buildah: the same Dockerfile, in the Docker format (the
    HEALTHCHECK kept); Podman's image serves the right digit as uid 10001 and stops with 0."""
    engine = Engine(podman, "podman")
    write_mnist_repository(tmp_path / "mnist")
    outputs: list[str] = []
    for builder in ("buildah", "podman"):
        image = f"modelport-test/mnist-{builder}:1"
        done = _modelport("build", str(tmp_path / "mnist"), "-t", image, "--builder", builder,
                          "--base-image", BASE_IMAGE, "--offline", "--network", "none",
                          env=podman)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        outputs.append(done.stdout + done.stderr)
        check = engine.docker("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image)
        assert "/healthz" in " ".join(json.loads(check.stdout)["Test"])
    _drop_older_builds(engine, "\n".join(outputs))
    name = f"modelport-test-podman-{os.getpid()}"
    engine.docker("run", "-d", "--name", name, "--network", "none", "--read-only", image)
    try:
        late = poll(lambda: _ready(engine, name), 120, 0.5)
        logs = engine.docker("logs", name, check=False).stderr if late is not None else ""
        assert late is None, f"not ready in 120 s{late}\n{logs}"
        answer = _predict(engine, name, SAMPLES / "digit-7.png")
        assert answer["predictions"][0]["classes"] == 7  # type: ignore[index]
        status = engine.docker("exec", name, "cat", "/proc/1/status").stdout
        assert next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")) == "10001"
        engine.docker("stop", "-t", str(layout.GRACE_SECONDS), name, timeout=layout.GRACE_SECONDS + 60)
        assert engine.docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    finally:
        engine.docker("rm", "--force", name, check=False)
