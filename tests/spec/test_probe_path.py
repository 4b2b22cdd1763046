"""A probe's `path` must start with "/" and hold no "@" or whitespace (README, "Probes"): it is
appended to the replica's http://127.0.0.1:PORT, where "@evil.example/x" would make the host
evil.example and a space would split the request line. `modelport apply` refuses the file with the
field named, before any server is asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from modelport.cli import cli
from modelport.errors import ModelportError
from modelport.spec import load_objects

DEPLOY = """
apiVersion: modelport/v1
kind: Deployment
metadata: {name: mnist, labels: {app: mnist}}
spec:
  selector: {matchLabels: {app: mnist}}
  template:
    metadata: {labels: {app: mnist}}
    spec:
      model: {name: mnist, basePath: registry://mnist@production}
      PROBE: {path: "PATH"}
"""
RULE = 'must start with "/" and hold no "@" or whitespace'


def _with(probe: str, path: str) -> str:
    return DEPLOY.replace("PROBE", probe).replace("PATH", path)


@pytest.mark.parametrize("path", ["@evil.example/readyz", "readyz", "/ready z", "/a@b", "/x\ty", ""])
@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_a_bad_probe_path_is_refused_with_its_field_named(probe: str, path: str) -> None:
    with pytest.raises(ModelportError) as caught:
        load_objects(_with(probe, path))
    assert f"spec.template.spec.{probe}.path: {RULE}" in caught.value.message
    assert caught.value.code.http_status == 400


@pytest.mark.parametrize("path", ["/readyz", "/v1/models/mnist", "/healthz?full=1", "/"])
def test_a_good_probe_path_is_kept(path: str) -> None:
    (deployment,) = load_objects(_with("readinessProbe", path))
    assert deployment.spec.template.spec.readiness_probe.path == path  # type: ignore[union-attr]


def test_modelport_apply_refuses_the_file_naming_the_field(tmp_path: Path) -> None:
    file = tmp_path / "deploy.yaml"
    file.write_text(_with("livenessProbe", "@evil.example/healthz"))
    # No control plane is running: the file is refused before any request would be made.
    result = CliRunner().invoke(cli, ["apply", "-f", str(file)], env={"MODELPORT_HOME": str(tmp_path)})
    assert result.exit_code != 0
    assert f"spec.template.spec.livenessProbe.path: {RULE}" in result.output


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_a_probe_timeout_over_60_s_is_refused(probe: str) -> None:
    """A probe waits at most 60 s for its answer (README, "Probes"): more is refused by name."""
    with pytest.raises(ModelportError) as caught:
        load_objects(DEPLOY.replace("PROBE", probe).replace('path: "PATH"', "timeoutSeconds: 61"))
    assert f"spec.template.spec.{probe}.timeoutSeconds: must be at most 60, got 61" in caught.value.message
    (deployment,) = load_objects(DEPLOY.replace("PROBE", probe).replace('path: "PATH"', "timeoutSeconds: 60"))
    assert deployment.spec.template.spec.model_dump(by_alias=True)[probe]["timeoutSeconds"] == 60  # type: ignore[union-attr]
