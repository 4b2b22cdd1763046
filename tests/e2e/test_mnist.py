"""The MNIST example as our users call it: the article's Flask handler, its config, its flags."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelport.examples import write_mnist_repository
from support import Server, articles_command_line, flask_app, running


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tfserving") / "saved_model"
    write_mnist_repository(base)
    return base


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    with running(["--model_name", "mnist", "--model_base_path", str(repo)], repo.parent) as srv:
        srv.wait_ready()
        yield srv


def _samples(repo: Path) -> list[tuple[int, bytes]]:
    paths = sorted((repo / "samples").glob("digit-?.png"))
    assert len(paths) == 10
    return [(int(p.stem[-1]), p.read_bytes()) for p in paths]


def test_the_articles_flask_handler_gets_the_right_digit(server: Server, repo: Path) -> None:
    client = flask_app(server.url + "/v1/models/mnist:predict").test_client()
    for digit, png in _samples(repo):
        response = client.post("/", data={"img": (io.BytesIO(png), "digit.png")})
        assert response.status_code == 200
        assert response.get_json() == {"result": digit}


def test_predict_answers_classes_and_probabilities(server: Server, repo: Path) -> None:
    body = json.loads((repo / "samples" / "request.json").read_text())
    r = server.post("/v1/models/mnist:predict", body)
    (row,) = r.json()["predictions"]
    assert row["classes"] == 7
    assert len(row["probabilities"]) == 10
    assert sum(row["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert int(np.argmax(row["probabilities"])) == 7


def test_batch_of_images_in_one_request(server: Server, repo: Path) -> None:
    samples = _samples(repo)
    instances = [{"image_bytes": {"b64": base64.b64encode(png).decode()}} for _, png in samples]
    r = server.post("/v1/models/mnist:predict", {"instances": instances})
    assert [row["classes"] for row in r.json()["predictions"]] == [d for d, _ in samples]
    columnar = {"inputs": {"image_bytes": [i["image_bytes"] for i in instances]}}
    assert server.post("/v1/models/mnist:predict", columnar).json()["outputs"]["classes"] == [
        d for d, _ in samples
    ]


def test_dark_ink_on_paper_is_inverted_automatically(server: Server, repo: Path) -> None:
    papers = sorted((repo / "samples").glob("digit-?-paper.png"))
    assert papers
    for path in papers:
        b64 = base64.b64encode(path.read_bytes()).decode()
        r = server.post("/v1/models/mnist:predict", {"instances": [{"image_bytes": {"b64": b64}}]})
        assert r.json()["predictions"][0]["classes"] == int(path.stem.split("-")[1])


def test_jpeg_and_rgb_are_converted(server: Server, repo: Path) -> None:
    digit, png = _samples(repo)[3]
    image = Image.open(io.BytesIO(png)).convert("RGB").resize((56, 56))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    b64 = base64.b64encode(out.getvalue()).decode()
    r = server.post("/v1/models/mnist:predict", {"instances": [{"image_bytes": {"b64": b64}}]})
    assert r.json()["predictions"][0]["classes"] == digit


def test_classify_lists_every_class(server: Server, repo: Path) -> None:
    digit, png = _samples(repo)[5]
    body = {"examples": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}]}
    (result,) = server.post("/v1/models/mnist:classify", body).json()["results"]
    assert [label for label, _ in result] == [str(i) for i in range(10)]
    assert max(result, key=lambda pair: pair[1])[0] == str(digit)


def test_metadata_declares_the_image_input(server: Server) -> None:
    doc = server.get("/v1/models/mnist/metadata").json()
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert set(sig["outputs"]) == {"classes", "probabilities", "logits"}
    assert sig["outputs"]["classes"]["dtype"] == "DT_INT64"
    assert doc["metadata"]["modelport"]["images"]["serving_default.image_bytes"]["width"] == 28


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"b64": base64.b64encode(b"this is not a png").decode()}, "cannot decode image"),
        ({"b64": ""}, "empty image"),
        ({"b64": "%%%not base64"}, "Unable to base64 decode"),
        ({"b64": "aGk=", "extra": 1}, "not formatted correctly for base64 data"),
        ([[0.0] * 28] * 28, 'takes {"b64": ...} or a string'),
        (12, "is not of expected type: DT_STRING"),
    ],
)
def test_bad_images(server: Server, value: object, message: str) -> None:
    r = server.post("/v1/models/mnist:predict", {"instances": [{"image_bytes": value}]})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


def test_truncated_png(server: Server, repo: Path) -> None:
    png = _samples(repo)[0][1]
    b64 = base64.b64encode(png[: len(png) // 2]).decode()
    r = server.post("/v1/models/mnist:predict", {"instances": [{"image_bytes": {"b64": b64}}]})
    assert r.status_code == 400
    assert "cannot decode image: image file is truncated" in r.json()["error"], r.text


def test_huge_image_refused_before_decoding(server: Server) -> None:
    # 10000 x 10000 pixels would decode to 100 MB. Only the file's first 200 bytes are sent: the
    # header, then a cut that decoding would report as truncated (as for the 28 x 28 one below,
    # noise so that its file is longer than the cut), so the answer shows only the header was read.
    def cut(image: Image.Image) -> dict[str, object]:
        out = io.BytesIO()
        image.save(out, "PNG")
        assert len(out.getvalue()) > 200
        return {"instances": [{"image_bytes": {"b64": base64.b64encode(out.getvalue()[:200]).decode()}}]}

    r = server.post("/v1/models/mnist:predict", cut(Image.new("L", (10000, 10000))))
    assert r.status_code == 400
    assert "100000000 pixels, more than the limit" in r.json()["error"]
    noise = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    r = server.post("/v1/models/mnist:predict", cut(Image.fromarray(noise)))
    assert r.status_code == 400, r.text
    assert "cannot decode image: image file is truncated" in r.json()["error"], r.text


def test_the_articles_config_file_and_command_line(repo: Path, tmp_path: Path) -> None:
    """`--port=8501 --rest_api_port=8501 --model_config_file=... --model_name=... --model_base_path=...`
    with the article's config.yaml (model_platform: tensorflow) serves the ONNX model."""
    args, port = articles_command_line(tmp_path, repo)
    with running(args, tmp_path) as server:
        assert server.port == port
        server.wait_ready()
        body = json.loads((repo / "samples" / "request.json").read_text())
        assert server.post("/v1/models/mnist:predict", body).json()["predictions"][0]["classes"] == 7
        log = server.log()
        assert f"--port (gRPC) and --rest_api_port are both {port}" in log
        assert "--model_name/--model_base_path are ignored" in log
