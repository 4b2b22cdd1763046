"""What `modelport render` writes builds with kustomize (`kubectl kustomize`, offline; `kubectl
apply -k` runs the same build before it sends anything to the cluster)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from modelport.kube.pods import PodOptions
from modelport.kube.render import KUSTOMIZATION, load_objects_from, render_kubernetes, write_output

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"


def test_kubectl_kustomize_builds_every_resource(tmp_path: Path) -> None:
    # The served example (the Rollout beside it is its alternative, rendered on its own).
    served = [EXAMPLE / "deploy.yaml", EXAMPLE / "hpa.yaml"]
    example = render_kubernetes(load_objects_from(served), PodOptions("mnist:1"))
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: scripts/system-packages.sh kubernetes-client installs Debian's"
    write_output(example, tmp_path / "k8s")
    built = subprocess.run(
        [kubectl, "kustomize", str(tmp_path / "k8s")], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in yaml.safe_load_all(built.stdout))
    listed = yaml.safe_load(example.files[KUSTOMIZATION])["resources"]
    rendered = [yaml.safe_load(example.files[name]) for name in listed]
    assert kinds == sorted(f"{d['kind']}/{d['metadata']['name']}" for d in rendered)
    assert len(kinds) == 8  # 2 Deployments, 2 PodDisruptionBudgets, 2 Services, the HPA, the ConfigMap
