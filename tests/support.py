"""Shared by the tests: small real models, version folders, and a real server process."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import requests
from onnx import TensorProto, helper, numpy_helper

# Every wait in the tests is on a condition, and its deadline only bounds a failure: a passing test
# never waits for it. On a machine whose CPUs are busy (scripts/test-busy.sh, or a shared CI runner)
# start-ups and controllers take several times longer than idle, so each deadline is multiplied by
# this factor (MODELPORT_TEST_PATIENCE, default 3) rather than tuned to an idle machine.
PATIENCE = float(os.environ.get("MODELPORT_TEST_PATIENCE", "3"))
# Screenshots and other files a person may want to look at after a run (kept by CI).
ARTIFACTS = Path(
    os.environ.get(
        "MODELPORT_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "build" / "test-artifacts"
    )
)

# What a replica's last log line says when its memory limit (RLIMIT_AS) stops it: the dynamic
# loader cannot map a library, Python raises MemoryError, or OpenBLAS cannot get its buffers
# (which of them depends on the import order and the libraries' versions).
OUT_OF_MEMORY = ("failed to map segment", "MemoryError", "Memory allocation still failed")


def says_out_of_memory(text: str) -> bool:
    return any(sign in text for sign in OUT_OF_MEMORY)


def linear_onnx(
    path: Path, weights: np.ndarray, bias: np.ndarray, input_name: str = "x", output_name: str = "y"
) -> Path:
    """y = x @ weights + bias, float32, batch dimension free."""
    w = numpy_helper.from_array(weights.astype(np.float32), "W")
    b = numpy_helper.from_array(bias.astype(np.float32), "B")
    n_in, n_out = weights.shape
    graph = helper.make_graph(
        [helper.make_node("Gemm", [input_name, "W", "B"], [output_name])],
        "linear",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", n_out])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def half_plus_two(version_dir: Path, slope: float = 0.5, offset: float = 2.0) -> Path:
    """TF Serving's favourite test model: x [-1, 1] -> y = slope*x + offset."""
    return linear_onnx(version_dir / "model.onnx", np.array([[slope]]), np.array([offset]))


def mark_complete(version_dir: Path) -> None:
    (version_dir / "_COMPLETE").write_text("")


def cached_build(name: str, inputs: Sequence[Path], packages: Sequence[str], build: Any) -> Path:
    """What `build(folder)` makes, built once per content of what it is built from and kept in
    build/test-cache/ (git-ignored, deleted freely): the builds are seeded, so the same inputs give
    the same files. The key hashes `inputs` (the script, the data loader, the data), the versions
    of `packages` (what computes the weights) and Python's; any change to one builds anew. (CI
    starts from a fresh clone: there it saves the builds after the first of the run.)"""
    import hashlib
    import importlib.metadata

    key = hashlib.sha256()
    for path in inputs:
        key.update(Path(path).read_bytes())
    for package in packages:
        key.update(f"{package}=={importlib.metadata.version(package)};".encode())
    key.update(sys.version.encode())
    cached = Path(__file__).resolve().parents[1] / "build" / "test-cache" / f"{name}-{key.hexdigest()[:16]}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time (two xdist workers that both need it: the second waits, then reads it).
    with open(cached.with_name(f".{cached.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cached.is_dir():  # it is there only whole: built beside it, then renamed into place
            partial = cached.with_name(f".{cached.name}.{os.getpid()}")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            build(partial)
            os.rename(partial, cached)
    return cached


def publish(base: Path, version: int, build: Any) -> Path:
    """Write a version the way a careful publisher does: in a dot-folder, then rename."""
    tmp = base / f".{version}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    mark_complete(tmp)
    final = base / str(version)
    os.rename(tmp, final)
    return final


def port_below_the_ephemeral_range() -> int:
    """A free port for a test that must name its port (a server restarted on the same one, or
    the same number given to two flags). Taken below the kernel's ephemeral range (32768 and up
    by default), where port-0 binds (every other server here) and outgoing connections never
    land, so it stays free between this check and its use unless someone names it too."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 10000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port below {low}")


@contextmanager
def uvicorn_in_thread(app: Any, http: Any) -> Iterator[tuple[str, int]]:
    """`app` served by uvicorn with the protocol class `http` on a loopback port, in a thread of
    this process (for tests of the HTTP protocol itself); yields the address."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, loop="uvloop", http=http, lifespan="off", access_log=False, log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30 * PATIENCE
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for a condition, with a deadline
    assert server.started
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Server:
    """`modelport serve` as a real process on loopback, port 0, port read back from a file."""

    def __init__(self, args: Sequence[str], workdir: Path, host: str | None = "127.0.0.1") -> None:
        """`host`: the --host given (None: none, the server's default)."""
        self.workdir = workdir
        self.log_path = workdir / "server.log"
        port_file = workdir / "port.json"
        port_file.unlink(missing_ok=True)
        # gRPC on a free port too, unless the test chooses --port itself.
        grpc = [] if any(a == "--port" or a.startswith("--port=") for a in args) else ["--port", "0"]
        cmd = [
            sys.executable, "-m", "modelport", "serve", *(["--host", host] if host else []),
            "--rest_api_port", "0", *grpc, "--port_file", str(port_file), *args,
        ]  # fmt: skip
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30 * PATIENCE
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start:\n{self.log()}")
            time.sleep(0.02)
        ports = json.loads(port_file.read_text())
        self.port = ports["rest_api_port"]
        self.grpc_port: int | None = ports.get("grpc_port")
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        if body is not None and "data" not in kw:
            kw["json"] = body
        return requests.post(self.url + path, timeout=10, **kw)

    def wait_until(self, predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
        waited = poll(predicate, timeout, 0.05)
        if waited is not None:
            raise AssertionError(f"timed out waiting for {what}{waited}\n--- server log ---\n{self.log()}")

    def wait_ready(self, timeout: float = 20.0) -> None:
        self.wait_until(lambda: self.get("/readyz").status_code == 200, timeout, "/readyz 200")

    def versions(self, model: str) -> dict[int, str]:
        r = self.get(f"/v1/models/{model}")
        if r.status_code != 200:
            return {}
        return {int(s["version"]): s["state"] for s in r.json()["model_version_status"]}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def poll(predicate: Any, timeout: float, every: float) -> str | None:
    """Call `predicate` until it is true or `timeout` seconds have passed: None if it came true,
    else what the last call said. An exception counts as "not yet" (a status field the product
    has not written yet is a KeyError), and the last one is reported at the deadline. The deadline
    is `timeout` times PATIENCE."""
    deadline = time.monotonic() + timeout * PATIENCE
    last = ""
    while True:
        try:
            if predicate():
                return None
            last = ""
        except Exception as exc:
            last = "".join(traceback.format_exception_only(exc)).strip()
        if time.monotonic() >= deadline:
            return f" (the last check raised {last})" if last else ""
        time.sleep(every)


@contextmanager
def running(args: Sequence[str], workdir: Path) -> Iterator[Server]:
    server = Server(args, workdir)
    try:
        yield server
    finally:
        server.stop()


def half_and_mnist(root: Path) -> Path:
    """A repository of half_plus_two and the MNIST example, and the config file that serves both."""
    half_plus_two(root / "half" / "1")
    mark_complete(root / "half" / "1")
    from modelport.examples import write_mnist_repository

    write_mnist_repository(root / "mnist")
    config = root / "models.yaml"
    config.write_text(
        "model_config_list:\n  config:\n"
        f"    - {{name: half, base_path: {root / 'half'}}}\n"
        f"    - {{name: mnist, base_path: {root / 'mnist'}}}\n"
    )
    return config


class Load:
    """Steady load from background threads, every outcome kept in the order it came back: the
    answer's value (read from the JSON by `read`, or the answer header `header`) for a 200, `HTTP
    <code>` or the exception's name otherwise. Given `bodies`, each request's body is drawn at
    random from them (each thread seeded by its number), as real traffic comes: a fixed cycle
    beside HAProxy's fixed weighted round robin would send one replica the same few bodies.

        with Load(url, {"instances": [2.0]}) as load:
            ...                                   # kill something, roll something out
        assert load.failures() == []
    """

    def __init__(
        self,
        url: str,
        body: Any = None,
        threads: int = 4,
        read: Any = lambda answer: answer["predictions"][0][0],
        *,
        bodies: Sequence[Any] = (),
        header: str | None = None,
        send: dict[str, str] | None = None,
    ) -> None:
        """`send`: headers every request carries."""
        self.url, self.body, self.read, self.send = url, body, read, send
        self.bodies, self.header = list(bodies), header
        self.outcomes: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(random.Random(i),), daemon=True) for i in range(threads)
        ]
        self._t0 = time.monotonic()

    def _outcome(self, answer: requests.Response) -> Any:
        if answer.status_code != 200:
            return f"HTTP {answer.status_code}"
        if self.header is not None:
            return answer.headers.get(self.header, "?")
        return self.read(answer.json())

    def _work(self, rng: random.Random) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                body = rng.choice(self.bodies) if self.bodies else self.body
                try:
                    outcome = self._outcome(session.post(self.url, json=body, headers=self.send, timeout=10))
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                with self._lock:
                    self.outcomes.append((time.monotonic() - self._t0, outcome))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def values(self) -> list[Any]:
        return [outcome for _, outcome in sorted(self.outcomes, key=lambda x: x[0])]

    def failures(self, good: Any = lambda value: isinstance(value, float)) -> list[Any]:
        return [v for v in self.values() if not good(v)]

    def since(self, start: int) -> list[Any]:
        """The outcomes from the `start`th on, in the order they came back (`len(load.outcomes)`
        taken before something happens is where its effects begin)."""
        with self._lock:
            return [outcome for _, outcome in self.outcomes[start:]]

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` outcomes are in; fails at the deadline (a stalled load is a finding)."""
        if poll(lambda: len(self.outcomes) >= count, timeout, 0.05) is not None:
            raise AssertionError(f"{len(self.outcomes)} of {count} requests answered in {timeout:g} s")


class Plane:
    """A real control plane (`modelport up --detach`) in its own home, driven with the CLI as a
    person or a script would; short back-off and grace so faults play out in seconds."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "MODELPORT_HOME": str(home)}

    def cli(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "modelport", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"modelport {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "-o", "json").stdout)

    def up(self, *extra: str, grace: float = 5, metrics: float = 0.5) -> None:
        """Short back-off and sync; replicas sampled every `metrics` s (`top` needs two samples);
        `grace` from SIGTERM to SIGKILL when a replica is stopped."""
        self.cli("up", "--detach", "--backoff-seconds", "1", "--grace-seconds", f"{grace:g}",
                 "--sync-seconds", "0.1", "--metrics-seconds", f"{metrics:g}", *extra)  # fmt: skip

    @property
    def pid(self) -> int:
        return int(json.loads((self.home / "controlplane" / "api.json").read_text())["pid"])

    def client(self) -> Any:
        from modelport.controlplane.client import Client

        return Client.from_home(self.home)

    def replica_pids(self) -> set[int]:
        """Every `modelport serve` process this home's control planes started, alive now."""
        from modelport.dataplane.process import processes_with

        return {p.pid for p in processes_with(f"--port_file {self.home}/controlplane/pods/")}

    def service_url(self, name: str) -> str:
        service = self.get("Service", name)
        return f"http://127.0.0.1:{service['spec']['ports'][0]['port']}"

    def wait(self, predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
        """Poll `predicate` (use `get`/`items`, in-process: a CLI call costs 1.5 s) until true."""
        waited = poll(predicate, timeout, 0.1)
        if waited is not None:
            log = (self.home / "controlplane" / "controlplane.log").read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"timed out waiting for {what}{waited}\n{self.snapshot()}\n--- control plane log ---\n{log}"
            )

    def snapshot(self) -> str:
        """What a person would look at when a wait times out: Pods, Services, the latest events."""
        try:
            lines = ["--- pods ---"]
            for pod in self.items("Pod"):
                status = pod.get("status", {})
                lines.append(
                    f"{pod['metadata']['name']} ready={status.get('ready')} "
                    f"restarts={status.get('restartCount')} {status.get('message', '')}"
                )
            lines.append("--- services ---")
            for svc in self.items("Service"):
                status = svc.get("status", {})
                lines.append(
                    f"{svc['metadata']['name']} endpoints={status.get('endpoints')} "
                    f"conditions={status.get('conditions')}"
                )
            lines.append("--- latest events ---")
            events = sorted(self.items("Event"), key=lambda e: str(e.get("lastTimestamp", "")))
            for event in events[-15:]:
                lines.append(
                    f"{event.get('lastTimestamp')} {event.get('type')} {event.get('reason')} "
                    f"{event.get('involvedObject', {}).get('name')}: {event.get('message')}"
                )
            return "\n".join(lines)
        except Exception as exc:  # the control plane itself may be what failed
            return f"(no snapshot: {exc!r})"

    def get(self, kind: str, name: str) -> Any:
        """An object as `get <kind> <name> -o json` prints it, read in-process."""
        return self.client().get(kind, name)

    def items(self, kind: str) -> list[Any]:
        return list(self.client().list(kind)["items"])

    def stop(self) -> None:
        """`modelport down`, then make sure nothing of this home is left running."""
        from modelport.dataplane.process import processes_with

        self.cli("down", check=False)
        for proc in processes_with(str(self.home)):
            proc.kill()


def deployment_yaml(
    name: str,
    base_path: Path | str,
    replicas: int = 2,
    service_port: int | None = 0,
    model: str = "half",
    **spec: Any,
) -> str:
    """A Deployment of one model (and a Service of the same name, unless service_port is None)."""
    import yaml

    docs: list[dict[str, Any]] = [{
        "apiVersion": "modelport/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"model": {"name": model, "basePath": str(base_path)}}},
            **spec,
        },
    }]  # fmt: skip
    if service_port is not None:
        docs.append({"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": name},
                     "spec": {"selector": {"app": name}, "ports": [{"port": service_port}]}})  # fmt: skip
    return yaml.safe_dump_all(docs, sort_keys=False)


class WritesAfterReads:
    """A TCP relay in front of the control plane's API that holds every PUT until `reads` GETs
    have been answered. Two `modelport apply` processes through it both read the object before
    either writes: the race of two people applying at once, every time rather than by luck.
    (The API client opens one connection per request, so a connection's first bytes name its
    method.) Point a client at it with `home()`: a home whose api.json names the relay."""

    def __init__(self, api_url: str, token: Path, workdir: Path, reads: int = 2) -> None:
        from urllib.parse import urlsplit

        self._upstream = (urlsplit(api_url).hostname or "127.0.0.1", urlsplit(api_url).port or 80)
        self._reads, self._answered = reads, 0
        self._cond = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.home = workdir / "relayed-home"
        (self.home / "controlplane").mkdir(parents=True)
        port = self._listener.getsockname()[1]
        (self.home / "controlplane" / "api.json").write_text(json.dumps({"url": f"http://127.0.0.1:{port}"}))
        shutil.copy(token, self.home / "controlplane" / "token")
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self._upstream) as upstream:
            first = b""
            while len(first) < 4 and (chunk := conn.recv(4 - len(first))):
                first += chunk
            if first.startswith(b"PUT"):
                with self._cond:
                    self._cond.wait_for(lambda: self._answered >= self._reads, 30)
            upstream.sendall(first)
            back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
            back.start()
            _pipe(conn, upstream)
            back.join(30)
        if first.startswith(b"GET"):
            with self._cond:
                self._answered += 1
                self._cond.notify_all()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def flask_app(url: str):  # type: ignore[no-untyped-def]
    """The article's handler, character for character but for the URL."""
    from flask import Flask, jsonify, request

    app = Flask(__name__)

    @app.route("/", methods=["POST"])
    def predict():  # type: ignore[no-untyped-def]
        img_data = request.files["img"].read()
        encode_string = str(base64.b64encode(img_data))[2:-1]
        data = {"signature_name": "serving_default", "instances": [{"image_bytes": {"b64": encode_string}}]}
        headers = {"content-type": "application/json"}
        response = requests.post(url=url, data=json.dumps(data), headers=headers)
        result = json.loads(response.text)["predictions"][0]["classes"]
        return jsonify({"result": result})

    return app


@contextmanager
def chromium(width: int, height: int) -> Iterator[Any]:
    """Headless Chromium (Debian's chromium and chromedriver, driven by Selenium) with its
    background networking off: nothing leaves the machine."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-background-networking", "--disable-component-update"]  # fmt: skip
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=DriverService(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    )
    driver.set_window_size(width, height)
    try:
        yield driver
    finally:
        driver.quit()


FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")  # dataset-fashion-mnist


def fashion_instances(count: int) -> list[dict[str, Any]]:
    """The first `count` Fashion-MNIST test images as the MNIST example's instances (PNG, b64):
    clothes, where the model expects digits (input and prediction drift)."""
    import io

    from PIL import Image

    from modelport.pipeline.data.datasets import read_idx

    instances = []
    for pixels in read_idx(FASHION)[:count]:
        out = io.BytesIO()
        Image.fromarray(pixels, "L").save(out, "PNG")
        instances.append({"image_bytes": {"b64": base64.b64encode(out.getvalue()).decode()}})
    return instances


def listening_port(log: Path) -> int:
    """The port in Prometheus' `msg="Listening on" address=127.0.0.1:<port>` line."""
    found: list[int] = []

    def listening() -> bool:
        for line in log.read_text(errors="replace").splitlines():
            if 'msg="Listening on"' in line:
                found.append(int(line.rsplit(":", 1)[1]))
        return bool(found)

    if (waited := poll(listening, 30, 0.05)) is not None:
        raise AssertionError(f"Prometheus did not listen{waited}:\n{log.read_text(errors='replace')}")
    return found[0]


def articles_command_line(folder: Path, base_path: Path) -> tuple[list[str], int]:
    """The article's config.yaml (written into `folder`) and `tensorflow_model_server` command
    line, with only the paths changed; and the one port it serves REST on. --port equals
    --rest_api_port: the harness passes --rest_api_port 0 last-wins, so both get the same
    number explicitly."""
    config = folder / "config.yaml"
    config.write_text(
        "model_config_list:\n"
        "  config:\n"
        "    - name: mnist\n"
        f"      base_path: {base_path}\n"
        "      model_platform: tensorflow\n"
        "      version_policy:\n"
        "        specific:\n"
        "          versions: 1\n"
    )
    port = port_below_the_ephemeral_range()
    args = [f"--port={port}", f"--rest_api_port={port}", f"--model_config_file={config}",
            "--model_name=mnist", f"--model_base_path={base_path}"]  # fmt: skip
    return args, port
