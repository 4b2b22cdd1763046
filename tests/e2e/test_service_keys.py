"""API keys behind a 2-replica NodePort Service of a real control plane: the Service listens on
every interface and its replicas require keys; a revoked key stops working on both replicas within
5 s; a rate limit holds across the replicas (2x the rate for 10 s: the rate's worth accepted,
+-10%, the rest 429, no 5xx); a daily quota survives the replicas' restart; no secret reaches a
Pod's args, events or `describe`."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml
from click.testing import CliRunner

from modelport.cli import cli
from support import Plane, half_plus_two, mark_complete

HALF = {"instances": [[1.0]]}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    plane = Plane(tmp_path_factory.mktemp("home"))
    plane.up()
    models = tmp_path_factory.mktemp("models")
    half_plus_two(models / "half" / "1")
    mark_complete(models / "half" / "1")
    docs = [
        {"apiVersion": "modelport/v1", "kind": "Deployment", "metadata": {"name": "open"},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "open"}},
                  "template": {"metadata": {"labels": {"app": "open"}},
                               "spec": {"model": {"name": "half", "basePath": str(models / "half")}}}}},
        {"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": "open"},
         "spec": {"type": "NodePort", "selector": {"app": "open"}, "ports": [{"port": 0}]}},
    ]  # fmt: skip
    path = models / "open.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    plane.cli("apply", "-f", str(path))
    plane.cli("rollout", "status", "deployment/open")
    plane.wait(lambda: len(plane.get("Service", "open")["status"]["endpoints"]) == 2, 60, "2 endpoints")
    yield plane
    plane.stop()


def keys_cli(plane: Plane, *args: str) -> str:
    """`modelport keys ...` in this process (a CLI process costs 1.5 s on a busy machine)."""
    result = CliRunner().invoke(cli, ["keys", *args], env={"MODELPORT_HOME": str(plane.home)})
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def create_key(plane: Plane, name: str, *flags: str) -> str:
    return keys_cli(plane, "create", name, "--model", "half", *flags)


def listed(plane: Plane) -> dict[str, Any]:
    return {k["name"]: k for k in json.loads(keys_cli(plane, "list", "-o", "json"))}


def replica_urls(plane: Plane) -> list[str]:
    pods = [p for p in plane.items("Pod") if p["metadata"]["labels"].get("app") == "open"]
    return [f"http://127.0.0.1:{p['status']['port']}" for p in pods]


def predict(url: str, key: str | None) -> int:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return requests.post(url + "/v1/models/half:predict", json=HALF, headers=headers, timeout=10).status_code


def test_a_nodeport_service_listens_on_every_interface_and_its_replicas_require_keys(plane: Plane) -> None:
    service = plane.get("Service", "open")
    pid, port = service["status"]["haproxyPid"], service["spec"]["ports"][0]["port"]
    listening = {c.laddr for c in psutil.Process(pid).net_connections() if c.status == psutil.CONN_LISTEN}
    assert ("0.0.0.0", port) in listening
    assert all(p["status"]["apiKeys"] for p in plane.items("Pod"))
    key = create_key(plane, "caller")
    url = plane.service_url("open")
    assert predict(url, None) == 401
    assert [predict(url, key) for _ in range(4)] == [200] * 4
    # The secret is in no Pod's args, events or description; replicas get only --auth=on.
    described = plane.cli("describe", "pods").stdout + plane.cli("get", "events").stdout
    assert described.count("API Keys:       required") == 2
    args = " ".join(" ".join(psutil.Process(p["status"]["pid"]).cmdline()) for p in plane.items("Pod"))
    assert "--auth=on" in args
    for text in (described, args, *(Path(p["status"]["logPath"]).read_text() for p in plane.items("Pod"))):
        assert key not in text and key[13:] not in text


def test_a_revoked_key_is_refused_by_every_replica_within_5_s(plane: Plane) -> None:
    key = create_key(plane, "short-lived")
    urls = replica_urls(plane)
    assert [predict(u, key) for u in urls] == [200, 200]
    keys_cli(plane, "revoke", "short-lived")
    revoked_at = time.monotonic()
    refused_after: dict[str, float] = {}

    def all_refuse() -> bool:
        for u in urls:
            if u not in refused_after and predict(u, key) == 401:
                refused_after[u] = time.monotonic() - revoked_at
        return len(refused_after) == 2

    plane.wait(all_refuse, 10, "both replicas to refuse the revoked key")
    assert max(refused_after.values()) < 5.0, refused_after


def test_a_rate_limit_holds_across_both_replicas(plane: Plane) -> None:
    """40/s, burst 4; 80 requests a second for 10 s through the Service (round robin over 2)."""
    key = create_key(plane, "metered", "--rate", "40/s", "--burst", "4")
    url = plane.service_url("open")
    seconds, rate = 10.0, 80
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = time.monotonic() + 0.2

    def sender(offset: int) -> None:
        with requests.Session() as session:
            for i in range(offset, int(seconds * rate), 2):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the load, not waiting for a condition
                answer = session.post(url + "/v1/models/half:predict", json=HALF,
                                      headers={"x-api-key": key}, timeout=10)  # fmt: skip
                with lock:
                    statuses[answer.status_code] += 1

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) <= {200, 429}, statuses
    expected = 40 * seconds + 4
    assert expected * 0.9 <= statuses[200] <= expected * 1.1, statuses


def test_a_daily_quota_survives_a_restart_of_the_replicas(plane: Plane) -> None:
    key = create_key(plane, "daily", "--quota", "30/day")
    url = plane.service_url("open")
    assert [predict(url, key) for _ in range(20)] == [200] * 20
    pids = {p["status"]["pid"] for p in plane.items("Pod") if p["metadata"]["labels"].get("app") == "open"}
    for pid in pids:
        psutil.Process(pid).kill()

    def restarted() -> bool:
        pods = [p for p in plane.items("Pod") if p["metadata"]["labels"].get("app") == "open"]
        fresh = [p for p in pods if p["status"].get("ready") and p["status"]["pid"] not in pids]
        return len(fresh) == 2 and len(plane.get("Service", "open")["status"]["endpoints"]) == 2

    plane.wait(restarted, 60, "both replicas restarted and back in the Service")
    after = Counter(predict(url, key) for _ in range(20))
    assert after == Counter({200: 10, 429: 10})


def test_the_control_plane_reads_the_metrics_of_replicas_that_require_keys(plane: Plane) -> None:
    """`top` (and an HPA) read each replica's /metrics with the control plane's own key."""
    key = create_key(plane, "counted")
    for _ in range(10):
        assert predict(plane.service_url("open"), key) == 200

    def counted() -> bool:
        # Traffic all along: a rate needs two scrapes with requests between them, and the
        # replicas restarted by the test before may not have been scraped before the first 10.
        for _ in range(4):
            assert predict(plane.service_url("open"), key) == 200
        items = plane.client().request("GET", "/api/top")["items"]
        mine = [i for i in items if i["pod"].startswith("open-")]
        return len(mine) == 2 and sum(i["requests_per_second"] for i in mine) > 0

    plane.wait(counted, 30, "top to show the keyed replicas' request rates")
    made = listed(plane)["controlplane-metrics"]
    assert made["scopes"] == ["metrics"] and made["models"] == ["*"]


def test_a_key_shows_when_it_was_last_used(plane: Plane) -> None:
    key = create_key(plane, "used")
    assert predict(plane.service_url("open"), key) == 200
    plane.wait(lambda: listed(plane)["used"]["last_used"] is not None, 10, "keys list to show it used")


def test_replicas_an_exposed_service_comes_to_select_are_restarted_requiring_keys(
    plane: Plane, tmp_path: Path
) -> None:
    """A ClusterIP Service's replicas take calls without keys; made a NodePort Service, its
    replicas are restarted requiring keys and none is in its rotation before."""
    (deployment,) = [d for d in plane.items("Deployment") if d["metadata"]["name"] == "open"]
    base = deployment["spec"]["template"]["spec"]["model"]["basePath"]
    docs = [
        {"apiVersion": "modelport/v1", "kind": "Deployment", "metadata": {"name": "late"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "late"}},
                  "template": {"metadata": {"labels": {"app": "late"}},
                               "spec": {"model": {"name": "half", "basePath": base}}}}},
        {"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": "late"},
         "spec": {"selector": {"app": "late"}, "ports": [{"port": 0}]}},
    ]  # fmt: skip
    path = tmp_path / "late.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    plane.cli("apply", "-f", str(path))
    plane.cli("rollout", "status", "deployment/late")
    plane.wait(lambda: len(plane.get("Service", "late")["status"]["endpoints"]) == 1, 30, "1 endpoint")
    url = plane.service_url("late")
    assert predict(url, None) == 200  # ClusterIP: this machine only, no key
    docs[1]["spec"]["type"] = "NodePort"
    docs[1]["spec"]["ports"] = [{"port": int(url.rsplit(":", 1)[1])}]
    path.write_text(yaml.safe_dump_all(docs))
    plane.cli("apply", "-f", str(path))

    def keyed() -> bool:
        pods = [p for p in plane.items("Pod") if p["metadata"]["labels"].get("app") == "late"]
        status = plane.get("Service", "late")["status"]
        (listening,) = status["conditions"]  # the new HAProxy, on every interface (the old one
        # may hold the port a moment: the new one then starts on the controller's next try)
        return (
            len(pods) == 1 and bool(pods[0]["status"].get("apiKeys")) and len(status["endpoints"]) == 1
            and listening["status"] == "True" and listening["message"].startswith("0.0.0.0:")
        )  # fmt: skip

    plane.wait(keyed, 60, "the replica restarted with keys and back in the rotation")
    assert predict(url, None) == 401
    assert predict(url, create_key(plane, "late-caller")) == 200
