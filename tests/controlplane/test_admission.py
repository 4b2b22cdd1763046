"""`apply`'s admission with the defaults and the opt-ins: every example in the repository and the
shapes the tests apply pass the default allow-list; a refused Deployment names the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelport.controlplane.admission import Admission
from modelport.spec import KINDS, load_objects, parse_object, to_dict

EXAMPLES = sorted(
    p
    for p in (Path(__file__).parents[2] / "examples").glob("*/*.yaml")
    if "apiVersion: modelport/v1" in p.read_text()
)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_still_applies(example: Path) -> None:
    """Every object `modelport apply` takes (a Pipeline file is the pipeline command's)."""
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d and d.get("kind") in KINDS]
    for doc in docs:
        obj = to_dict(parse_object(doc, str(example)))
        assert Admission().problems(obj) == []
        assert Admission(model_roots=(Path("/tmp/tfserving"),)).problems(obj) == []


def _deployment(args: list[str], base: str = "/srv/models/mnist") -> dict[str, object]:
    (obj,) = load_objects(f"""
apiVersion: modelport/v1
kind: Deployment
metadata: {{name: m}}
spec:
  selector: {{matchLabels: {{app: m}}}}
  template:
    metadata: {{labels: {{app: m}}}}
    spec:
      model: {{name: m, basePath: {base}}}
      args: {args}
""")
    return to_dict(obj)


def test_refusals_name_the_field_and_the_opt_in_lifts_only_the_args() -> None:
    strict = Admission(model_roots=(Path("/srv/models"),))
    problems = strict.problems(_deployment(["--allow_pickle"], "/etc/models"))
    assert problems[0].startswith("spec.template.spec.args[0]: --allow_pickle is not allowed")
    assert problems[1].startswith(
        "spec.template.spec.model.basePath: '/etc/models' is outside the model roots"
    )
    trusting = Admission(model_roots=(Path("/srv/models"),), allow_unsafe_args=True)
    assert trusting.problems(_deployment(["--allow_pickle"])) == []
    assert len(trusting.problems(_deployment(["--allow_pickle"], "/etc/models"))) == 1


def test_a_rollout_is_held_to_the_same_list_as_a_deployment() -> None:
    rollout = {**_deployment(["--host=0.0.0.0"]), "kind": "Rollout"}
    (problem,) = Admission().problems(rollout)
    assert problem.startswith("spec.template.spec.args[0]: --host is not allowed")


def test_a_gateway_may_set_its_per_client_limit_and_require_keys_but_not_where_its_key_is_read() -> None:
    (obj,) = load_objects("""
apiVersion: modelport/v1
kind: Deployment
metadata: {name: page}
spec:
  selector: {matchLabels: {app: page}}
  template:
    metadata: {labels: {app: page}}
    spec:
      gateway: {service: mnist}
      args: [--per-client, 5/s, --per-client-burst=10, --require-key, --api-key-file=/etc/shadow]
""")
    (problem,) = Admission().problems(to_dict(obj))
    assert problem.startswith(
        "spec.template.spec.args[4]: --api-key-file is not allowed: a gateway replica reads its key"
    )
    assert Admission().problems(_deployment(["--auth=on"])) == []
