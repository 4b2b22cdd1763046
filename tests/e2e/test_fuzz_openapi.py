"""Schemathesis against the document a live `modelport serve` publishes at /openapi.json (README,
"The REST API"): every operation, with data that fits the document and data that does not,
gets an answer that is not a 5xx and that the document allows (a documented status code,
content type, headers and body schema), and data the document forbids is refused with a 4xx.
Model names, versions and labels are the served ones most of the time (a schemathesis
dictionary), so requests reach the models, not only the 404 for unknown names.

Deterministic (no seed, no example database) and bounded (the coverage phase's boundary cases,
then 12 fuzzed examples per operation, one worker): the same ~1,500 cases every run, about 15 s."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fuzz_support import fuzz_repository
from support import Server, running

CONFIG = """\
[dictionaries.models]
values = ["half", "mnist", "mixed"]
[dictionaries.versions]
values = [1, "1"]
[dictionaries.labels]
values = ["stable"]
[parameters]
"path.model_name" = { dictionary = "models", probability = 0.8 }
"path.version" = { dictionary = "versions", probability = 0.5 }
"path.model_version" = { dictionary = "versions", probability = 0.5 }
"path.label" = { dictionary = "labels", probability = 0.5 }
"""
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance,"
    # and the other way: what the document forbids (a wrong type, a missing required field or
    # header) is refused with a 4xx, not served
    "negative_data_rejection,missing_required_header"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzz_openapi")
    with running(["--model_config_file", str(fuzz_repository(root))], root) as srv:
        srv.wait_ready()
        yield srv


def _requests_by(server: Server) -> dict[tuple[str, str, str], float]:
    """modelport_requests_total by (model, api, status)."""
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(server.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "modelport_requests_total":
                key = (sample.labels["model"], sample.labels["api"], sample.labels["status"])
                counts[key] = counts.get(key, 0) + sample.value
    return counts


def test_schemathesis_finds_no_5xx_and_no_answer_the_document_does_not_allow(
    server: Server, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
        "run", f"{server.url}/openapi.json", "--checks", CHECKS, "--mode", "all",
        "--phases", "examples,coverage,fuzzing", "--max-examples", "12", "--workers", "1",
        "--generation-deterministic", "--request-timeout", "10", "--no-color",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=170)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"{output}\n--- server log ---\n{server.log()}"
    # Every operation of the document was selected and tested.
    counts = re.search(r"Operations:\s+(\d+) selected / (\d+) total", output)
    tested = re.search(r"Tested:\s+(\d+)", output)
    assert counts and tested and counts[1] == counts[2] == tested[1] and int(tested[1]) > 30, output
    # The fuzzer reached the models: good and bad requests to each, on both protocols.
    counts = _requests_by(server)
    for model in ("half", "mnist", "mixed"):
        for api in ("predict", "infer"):
            statuses = {status for (m, a, status), n in counts.items() if m == model and a == api and n}
            assert "400" in statuses, (model, api, counts)
    assert not [key for key in counts if key[2].startswith("5")], counts
