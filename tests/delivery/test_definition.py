"""pipeline.yaml refused before anything runs: unknown fields by path, cycles and missing inputs
naming the stages, a gate on a metric evaluation does not produce; the order derived from inputs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelport.delivery.definition import load_pipeline, parse_pipeline
from modelport.delivery.graph import downstream, order
from modelport.errors import ModelportError

ROOT = Path(__file__).parents[2]
EXAMPLE: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "mnist" / "pipeline.yaml").read_text())


def _refused(change: Any) -> str:
    doc = copy.deepcopy(EXAMPLE)
    change(doc)
    with pytest.raises(ModelportError) as caught:
        parse_pipeline(doc, ROOT / "examples" / "mnist")
    return caught.value.message


def _stage(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in doc["spec"]["stages"] if s["name"] == name)
    return found


def test_the_example_is_valid_and_runs_in_the_order_its_inputs_give() -> None:
    definition = load_pipeline(ROOT / "examples" / "mnist" / "pipeline.yaml")
    stages = definition.pipeline.spec.stages
    assert order(stages) == [["train"], ["evaluate"], ["gate"], ["publish"], ["release"], ["promote"]]
    assert downstream(stages, "release") == {"release", "promote"}


def test_independent_stages_share_a_wave() -> None:
    doc = copy.deepcopy(EXAMPLE)
    doc["spec"]["stages"].append({"name": "image", "build": {}, "inputs": ["publish.version"]})
    stages = parse_pipeline(doc, ROOT).pipeline.spec.stages
    assert order(stages)[4] == ["release", "image"]


def test_unknown_fields_are_named_by_their_path() -> None:
    def change(doc: dict[str, Any]) -> None:
        _stage(doc, "train")["train"]["epoch"] = 3
        _stage(doc, "gate")["gate"]["maxdrop"] = {"accuracy": 0.1}
        doc["spec"]["workdir"] = "x"

    message = _refused(change)
    assert "spec.stages[0].train.epoch: Extra inputs are not permitted" in message
    assert "spec.stages[2].gate.maxdrop: Extra inputs are not permitted" in message
    assert "spec.workdir: Extra inputs are not permitted" in message


def test_a_cycle_is_refused_naming_its_stages() -> None:
    def change(doc: dict[str, Any]) -> None:
        _stage(doc, "train")["inputs"] = ["promote.label"]

    message = _refused(change)
    assert "stages train → promote → release → publish → evaluate → train form a cycle" in message


def test_missing_inputs_are_refused_naming_the_stages() -> None:
    def change(doc: dict[str, Any]) -> None:
        _stage(doc, "evaluate")["inputs"] = ["trainer.model"]
        _stage(doc, "release")["inputs"] = ["publish.image"]

    message = _refused(change)
    assert (
        "spec.stages[1].inputs[0]: stage 'evaluate' needs 'trainer.model', but no stage is named 'trainer'"
        in message
    )
    assert "stage 'release' needs 'publish.image', but stage 'publish' makes ['version']" in message


def test_a_stage_without_the_input_its_kind_needs_is_refused() -> None:
    def change(doc: dict[str, Any]) -> None:
        _stage(doc, "gate")["inputs"] = []

    message = _refused(change)
    assert (
        "spec.stages[2].inputs: a gate stage needs a evaluation input (e.g. evaluate.evaluation)" in message
    )


def test_a_publish_that_does_not_wait_for_the_gate_is_refused() -> None:
    def change(doc: dict[str, Any]) -> None:
        _stage(doc, "publish")["inputs"] = ["train.model", "evaluate.evaluation"]

    assert "stage 'publish' does not wait for gate 'gate': add gate.verdict to its inputs" in _refused(change)


def test_a_gate_on_a_metric_evaluation_does_not_produce_is_refused() -> None:
    def change(doc: dict[str, Any]) -> None:
        _stage(doc, "gate")["gate"] = {"metrics": {"f1": ">= 0.9"}, "maxDrop": {"auc": 0.01}}

    message = _refused(change)
    assert (
        "spec.stages[2].gate.metrics.f1: evaluation produces no metric 'f1' (it produces accuracy" in message
    )
    assert "spec.stages[2].gate.maxDrop.auc: evaluation produces no metric 'auc'" in message


def test_bad_rules_names_and_kinds() -> None:
    def change(doc: dict[str, Any]) -> None:
        _stage(doc, "gate")["gate"]["metrics"] = {"accuracy": "at least 0.9"}
        _stage(doc, "promote")["promote"]["label"] = "9lives"
        _stage(doc, "evaluate")["train"] = {}
        doc["spec"]["stages"][3]["name"] = "Publish!"

    message = _refused(change)
    assert "spec.stages[2].gate.metrics.accuracy: 'at least 0.9' is not a comparison like '>= 0.9'" in message
    assert "spec.stages[5].promote: label '9lives' must match" in message
    assert "spec.stages[1]: needs exactly one of train, evaluate, gate" in message
    assert "spec.stages[3].name: 'Publish!' must be a lowercase name" in message


def test_not_a_pipeline() -> None:
    with pytest.raises(ModelportError, match="kind: must be Pipeline, got 'Deployment'"):
        parse_pipeline({**EXAMPLE, "kind": "Deployment"}, ROOT)
