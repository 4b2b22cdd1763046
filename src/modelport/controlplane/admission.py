"""What `apply` checks beyond the schema, against this control plane's own settings: a Service's
TLS files exist and pair up. Each problem names its field path; any problem refuses the object
(a 400 with reason Invalid), before anything is stored.

    admission = Admission(secrets_dir(home))
    admission.problems(obj)   # [] or ["spec.tls.secretName: home/secrets/default/x/tls.crt: ..."]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.controlplane.secrets import check_tls_files
from modelport.errors import ModelportError
from modelport.spec import Service

Obj = dict[str, Any]


@dataclass(frozen=True)
class Admission:
    secrets: Path | None = None  # where `spec.tls.secretName`s live; None: none are checked

    def problems(self, obj: Obj) -> list[str]:
        if obj.get("kind") == "Service":
            return self._service(Service.model_validate(obj))
        return []

    def _service(self, service: Service) -> list[str]:
        if service.spec.tls is None or self.secrets is None:
            return []
        try:
            check_tls_files(service.spec.tls, service.metadata.namespace, self.secrets)
        except ModelportError as exc:
            return [exc.message]
        return []
