"""What `apply` checks beyond the schema, against this control plane's own settings: a Service's
TLS files exist and pair up; a Deployment's args are on the allow-list and its model's basePath is
registry:// or inside a model root (security/allowlist.py says why). Each problem names its field
path; any problem refuses the object (a 400 with reason Invalid), before anything is stored.

    admission = Admission(secrets_dir(home))
    admission.problems(obj)   # [] or ["spec.tls.secretName: home/secrets/default/x/tls.crt: ..."]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.controlplane.secrets import check_tls_files
from modelport.errors import ModelportError
from modelport.security.allowlist import arg_problems, base_path_problem
from modelport.spec import ReplicaSpec, Service

Obj = dict[str, Any]


@dataclass(frozen=True)
class Admission:
    secrets: Path | None = None  # where `spec.tls.secretName`s live; None: none are checked
    model_roots: tuple[Path, ...] = ()  # empty: any folder may be a basePath
    allow_unsafe_args: bool = False  # the operator's opt-in: any flag in a Deployment's args

    def problems(self, obj: Obj) -> list[str]:
        if obj.get("kind") == "Service":
            return self._service(Service.model_validate(obj))
        if obj.get("kind") in ("Deployment", "Rollout"):  # a Rollout: a Deployment with a canary
            return self._replicas(ReplicaSpec.model_validate(obj["spec"]["template"]["spec"]))
        return []

    def _replicas(self, replica: ReplicaSpec) -> list[str]:
        program = "gateway" if replica.gateway is not None else "serve"
        problems = arg_problems(replica.args, program, self.allow_unsafe_args)
        if replica.model is not None:
            field = "spec.template.spec.model.basePath"
            found = base_path_problem(replica.model.base_path, self.model_roots, field)
            problems += [found] if found else []
        return problems

    def _service(self, service: Service) -> list[str]:
        if service.spec.tls is None or self.secrets is None:
            return []
        try:
            check_tls_files(service.spec.tls, service.metadata.namespace, self.secrets)
        except ModelportError as exc:
            return [exc.message]
        return []
