"""The control plane's dashboard in headless Chromium, with live data: the MNIST Deployment
under load scales up (its HPA decision marked on the replicas chart); the pages show its
figures, traffic by version and events, and its version page the evaluation report beside the
live figures; Fashion-MNIST images sent to it first show as drift. Screenshots are kept in
build/test-artifacts/."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
import yaml
from selenium import webdriver
from selenium.webdriver.common.by import By

from modelport.examples import write_mnist_repository
from support import ARTIFACTS, Load, Plane, chromium, deployment_yaml, fashion_instances

HPA = {"apiVersion": "modelport/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "mnist"},
       "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "mnist"}, "minReplicas": 1, "maxReplicas": 2,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                             "target": {"type": "Utilization", "averageUtilization": 20}}}]}}  # fmt: skip
EVALUATION = {
    "model": "mnist/1", "sha256": "0" * 64, "data": {"name": "mnist", "split": "test", "size": 1000},
    "metrics": {"accuracy": 0.971, "macro_f1": 0.970, "weighted_f1": 0.971},
    "details": {"per_class": {str(c): {"precision": 0.97, "recall": 0.97, "f1": 0.97, "support": 100}
                              for c in range(10)}},
    "diagnosis": {"verdict": "good fit", "reason": ""},
}  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Plane, str]]:
    """A control plane whose MNIST Deployment was scaled up by its HPA under load."""
    root = tmp_path_factory.mktemp("dashboard")
    write_mnist_repository(root / "mnist")
    (root / "mnist" / "1-evaluation").mkdir()
    (root / "mnist" / "1-evaluation" / "evaluation.json").write_text(json.dumps(EVALUATION))
    deployment, service = yaml.safe_load_all(
        deployment_yaml("mnist", root / "mnist", replicas=1, model="mnist")
    )
    deployment["spec"]["template"]["spec"]["resources"] = {"requests": {"cpu": "100m"}}
    (root / "deploy.yaml").write_text(yaml.safe_dump_all([deployment, service, HPA]))
    plane = Plane(root / "home")
    try:
        plane.up("--hpa-sync-seconds", "1")
        plane.cli("apply", "-f", str(root / "deploy.yaml"))
        plane.cli("rollout", "status", "deployment/mnist")
        url = plane.service_url("mnist") + "/v1/models/mnist:predict"
        clothes = fashion_instances(500)  # to the one replica there is yet: its drift window fills
        for start in range(0, len(clothes), 50):
            assert requests.post(url, json={"instances": clothes[start : start + 50]}, timeout=30).ok
        body = json.loads((root / "mnist" / "samples" / "request.json").read_text())
        with Load(url, body, threads=2, read=lambda answer: answer["predictions"][0]["classes"]) as load:
            plane.wait(lambda: plane.get("Deployment", "mnist")["status"].get("readyReplicas", 0) == 2, 60,
                       "the HPA to scale the Deployment to 2 under load")  # fmt: skip
        assert load.failures(good=lambda value: value == 7) == []
        yield plane, plane.cli("dashboard").stdout.strip()
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium(1280, 1000) as driver:
        yield driver


def _screenshot(driver: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"dashboard-{name}.png"))


def test_the_pages_need_the_token(site: tuple[Plane, str]) -> None:
    _, url = site
    bare = url.split("?", 1)[0]
    refused = requests.get(bare, timeout=5)
    assert refused.status_code == 401 and "token" in refused.json()["message"]
    wrong = requests.get(bare + "?token=nope", timeout=5)
    assert wrong.status_code == 401 and "Set-Cookie" not in wrong.headers


def test_the_dashboard_shows_the_deployment_live(site: tuple[Plane, str], browser: webdriver.Chrome) -> None:
    _, url = site
    browser.get(url)
    rows = browser.find_elements(By.CSS_SELECTOR, "table tr")
    assert any(row.text.startswith("mnist default 2/2") for row in rows), [r.text for r in rows]
    _screenshot(browser, "index")
    browser.find_element(By.LINK_TEXT, "mnist").click()  # the cookie carries the token from here on
    assert browser.find_element(By.TAG_NAME, "h1").text == "Deployment default/mnist"
    charts = {svg.get_attribute("aria-label"): svg for svg in browser.find_elements(By.CSS_SELECTOR, "svg")}
    assert {"Requests per second", "Latency (ms)", "Traffic by version (req/s)"} <= set(charts)
    replicas = charts["Replicas (dashed: HPA decisions)"]
    marks = replicas.find_elements(By.CSS_SELECTOR, "line.mark title")
    assert any("HPA mnist: 1 -> 2" in m.get_attribute("textContent") for m in marks), (
        replicas.get_attribute("outerHTML") + browser.find_element(By.TAG_NAME, "body").text
    )
    assert "mnist v1" in charts["Traffic by version (req/s)"].text
    # The MNIST example's reference profile carries its published accuracy: the replicas export it.
    assert "mnist v1 published" in charts["Live accuracy"].text
    assert "mnist v1 input threshold" in charts["Drift"].text  # the clothes sent before the load
    assert len(charts["Requests per second"].find_elements(By.TAG_NAME, "polyline")) >= 1
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "SuccessfulRescale" in page and "HPA mnist: 1 -> 2" in page
    _screenshot(browser, "deployment")


def test_a_version_page_shows_its_evaluation_beside_live_figures(
    site: tuple[Plane, str], browser: webdriver.Chrome
) -> None:
    _, url = site
    browser.get(url.replace("/dashboard?", "/dashboard/default/mnist?"))
    browser.find_element(By.LINK_TEXT, "mnist v1").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "mnist v1"
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "Accuracy 0.971 on mnist (1000 held-out rows)" in page and "good fit" in page
    live = [svg.get_attribute("aria-label") for svg in browser.find_elements(By.CSS_SELECTOR, "svg")]
    assert "mnist v1: requests per second" in live
    _screenshot(browser, "version")
    browser.get(url.replace("/dashboard?", "/dashboard/default/mnist/versions/x?"))
    assert "is not a version number" in browser.find_element(By.TAG_NAME, "body").text
