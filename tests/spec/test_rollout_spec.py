"""Rollout and AnalysisTemplate objects: Argo Rollouts' shapes, every problem named by its field
path, and the condition language (`result < 0.2 && !isNaN(result)`) parsed safely."""

from __future__ import annotations

import math

import pytest

from modelport.errors import ModelportError
from modelport.spec import Rollout, condition, load_objects

ROLLOUT = """
apiVersion: modelport/v1
kind: Rollout
metadata: {name: mnist}
spec:
  replicas: 2
  selector: {matchLabels: {app: mnist}}
  template:
    metadata: {labels: {app: mnist}}
    spec: {model: {name: mnist, basePath: /models/mnist}}
  strategy:
    canary:
      steps:
        - setWeight: 20
        - pause: {duration: 30s}
        - analysis: {templates: [{templateName: health}]}
        - pause: {}
"""
TEMPLATE = """
apiVersion: modelport/v1
kind: AnalysisTemplate
metadata: {name: health}
spec:
  metrics:
    - name: distance
      interval: 10s
      count: 3
      successCondition: result < 0.2
      provider: {modelport: {metric: classDistance}}
"""


def test_a_rollout_and_its_template_load_with_argo_defaults() -> None:
    rollout, template = load_objects(ROLLOUT + "---" + TEMPLATE)
    assert isinstance(rollout, Rollout)
    canary = rollout.spec.strategy.canary
    assert [s.set_weight for s in canary.steps] == [20, None, None, None]
    assert canary.abort_scale_down_delay_seconds == 30
    metric = template.spec.metrics[0]  # type: ignore[union-attr]
    assert (metric.failure_limit, metric.inconclusive_limit, metric.consecutive_error_limit) == (0, 0, 4)
    assert metric.provider.modelport is not None and metric.provider.modelport.min_samples == 20


BLUE_GREEN = "blueGreen: {activeService: a}"
SAME_SERVICES = "blueGreen: {activeService: a, previewService: a}"
CANARY = ROLLOUT[ROLLOUT.index("    canary:") :]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("- setWeight: 20", "- setWeight: 120"), "spec.strategy.canary.steps[0].setWeight"),
        (("    canary:\n", "    canary:\n      maxSurge: lots\n"), "spec.strategy.canary.maxSurge: must be"),
        (
            ("- setWeight: 20", "- {setWeight: 20, pause: {}}"),
            "spec.strategy.canary.steps[0]: needs exactly one",
        ),
        (("duration: 30s", "duration: soon"), "spec.strategy.canary.steps[1].pause.duration: 'soon'"),
        (("- pause: {}", "- setCanaryScale: {replicas: 1}"), "spec.strategy.canary.steps[3].setCanaryScale"),
        (("- pause: {}", "- setMirror: {percent: 120}"), "spec.strategy.canary.steps[3].setMirror.percent"),
        (
            (
                "- pause: {}",
                "- setHeaderRoute: {name: t, match: [{headerName: 'x y', headerValue: {exact: a}}]}",
            ),
            "spec.strategy.canary.steps[3].setHeaderRoute.match[0].headerName: 'x y' is not a header name",
        ),
        (
            ("- pause: {}", "- setHeaderRoute: {name: t, match: [{headerName: x, headerValue: {}}]}"),
            "setHeaderRoute.match[0].headerValue: needs exactly one of exact, prefix and regex",
        ),
        (
            (
                "- pause: {}",
                "- setHeaderRoute: {name: t, match: [{headerName: x, headerValue: {regex: '(a'}}]}",
            ),
            "setHeaderRoute.match[0].headerValue.regex: '(a' is not a regular expression",
        ),
        (("{app: mnist}}\n  template", "{app: other}}\n  template"), "spec.template.metadata.labels"),
        (
            ("  strategy:\n", "  strategy:\n    blueGreen: {activeService: a}\n"),
            "needs exactly one of canary and",
        ),
        (
            (
                "  strategy:\n    canary:\n",
                "  strategy:\n    blueGreen: {activeService: a, previewService: a}\n    x:\n",
            ),
            "spec.strategy.x",
        ),
    ],
)
def test_a_bad_rollout_is_refused_naming_the_field(change: tuple[str, str], named: str) -> None:
    with pytest.raises(ModelportError) as caught:
        load_objects(ROLLOUT.replace(*change))
    assert named in caught.value.message, caught.value.message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("result < 0.2", "__import__('os')"), "spec.metrics[0].successCondition: only isNaN"),
        (("result < 0.2", "results < 0.2"), "spec.metrics[0].successCondition: unknown name 'results'"),
        (("interval: 10s", "interval: 0"), "spec.metrics[0].interval: must be greater than 0"),
        (("{modelport: {metric: classDistance}}", "{}"), "spec.metrics[0].provider: needs exactly one"),
        (("metric: classDistance", "metric: vibes"), "spec.metrics[0].provider.modelport.metric"),
        (("      successCondition: result < 0.2\n", ""), "needs a successCondition, a failureCondition"),
    ],
)
def test_a_bad_analysis_template_is_refused_naming_the_field(change: tuple[str, str], named: str) -> None:
    with pytest.raises(ModelportError) as caught:
        load_objects(TEMPLATE.replace(*change))
    assert named in caught.value.message, caught.value.message


def test_conditions_read_as_argo_writes_them() -> None:
    assert condition("result < 0.2 && !isNaN(result)")(0.1)
    assert not condition("result < 0.2 && !isNaN(result)")(math.nan)
    assert condition("result >= 0.95 || result == 0")(0.0)
    assert condition("asFloat(result) * 100 != 3")(0.5)
    assert not condition("result / 0 > 1")(1.0)  # an error is "not met", never a crash
    with pytest.raises(ValueError, match="not allowed"):
        condition("[x for x in ()]")
    with pytest.raises(ValueError, match="only numbers"):
        condition("result == 'a'")
