"""The gateway as a person uses it, in headless Chromium (Debian's chromium and chromedriver,
driven by Selenium): the gateway resolves the Service `mnist` through a real control plane; a
person uploads a PNG, draws a digit with the mouse, sends a file that is not an image, and does
it all again on a phone-sized screen. Screenshots are kept in build/test-artifacts/."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from modelport.examples import write_mnist_repository
from support import ARTIFACTS, Plane, chromium, deployment_yaml


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A control plane running the MNIST Deployment and Service, and a gateway in front of it
    by the Service's name. Yields the gateway's URL and the sample digits' folder."""
    root = tmp_path_factory.mktemp("site")
    write_mnist_repository(root / "mnist")
    plane = Plane(root / "home")
    proc = None
    try:
        plane.up()
        (root / "deploy.yaml").write_text(deployment_yaml("mnist", root / "mnist", replicas=1, model="mnist"))
        plane.cli("apply", "-f", str(root / "deploy.yaml"))
        plane.cli("rollout", "status", "deployment/mnist")
        port_file = root / "gateway.json"
        with open(root / "gateway.log", "wb") as log:  # the child keeps its own copy of the handle
            proc = subprocess.Popen(
                [sys.executable, "-m", "modelport", "gateway", "--service", "mnist", "--port", "0",
                 "--port-file", str(port_file)],
                env=plane.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        plane.wait(port_file.exists, 20, "the gateway to listen")
        yield f"http://127.0.0.1:{json.loads(port_file.read_text())['port']}", root / "mnist" / "samples"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        plane.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium(1100, 900) as driver:
        yield driver


def answer_text(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.ID, "answer").text)


def wait_answer(driver: webdriver.Chrome) -> str:
    WebDriverWait(driver, 15).until(
        lambda d: answer_text(d) not in ("?", "…") or d.find_element(By.ID, "error").text
    )
    return answer_text(driver)


def shot(driver: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"gateway-{name}.png"))


def test_upload_a_png_and_see_the_class_the_chart_and_the_version(
    site: tuple[str, Path], browser: webdriver.Chrome
) -> None:
    url, samples = site
    browser.get(url + "/")
    browser.find_element(By.ID, "file").send_keys(str(samples / "digit-7.png"))
    assert wait_answer(browser) == "7"
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart .bar")
    assert len(bars) == 10
    assert browser.find_element(By.CSS_SELECTOR, "#chart .bar.top").get_attribute("data-class") == "7"
    assert "model mnist version 1" in browser.find_element(By.ID, "meta").text
    shot(browser, "upload")


def test_draw_a_digit_with_the_mouse(site: tuple[str, Path], browser: webdriver.Chrome) -> None:
    url, _ = site
    browser.get(url + "/")
    canvas = browser.find_element(By.ID, "canvas")
    size = canvas.size["width"]
    # A "1": one stroke down the middle.
    ActionChains(browser).move_to_element_with_offset(canvas, 0, -size * 0.35).click_and_hold() \
        .move_by_offset(0, size * 0.35).move_by_offset(0, size * 0.35).release().perform()  # fmt: skip
    browser.find_element(By.ID, "predict-drawing").click()
    assert wait_answer(browser) == "1"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart .bar")) == 10
    shot(browser, "drawing")


def test_a_file_that_is_not_an_image_is_explained_on_the_page(
    site: tuple[str, Path], browser: webdriver.Chrome, tmp_path: Path
) -> None:
    url, _ = site
    browser.get(url + "/")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a digit")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    WebDriverWait(browser, 15).until(lambda d: d.find_element(By.ID, "error").text)
    assert "notes.txt: not an image" in browser.find_element(By.ID, "error").text
    assert answer_text(browser) == "?"


def test_on_a_phone_sized_screen(site: tuple[str, Path], browser: webdriver.Chrome) -> None:
    url, samples = site
    browser.set_window_size(390, 844)
    try:
        browser.get(url + "/")
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        browser.find_element(By.ID, "file").send_keys(str(samples / "digit-3.png"))
        assert wait_answer(browser) == "3"
        canvas = browser.find_element(By.ID, "canvas")
        assert canvas.size["width"] <= 390 and canvas.is_displayed()
        # The screenshot once the chart is drawn at this width (its bars are laid out by script).
        WebDriverWait(browser, 15).until(
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, "#chart .bar")) == 10
                and d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
            )
        )
        shot(browser, "phone")
    finally:
        browser.set_window_size(1100, 900)
