"""Where a Service's TLS certificate and key are: a secret's two files under the control plane's
home, or the files its spec names; checked as a pair (security/tls.py) with messages that name the
field.

    home/secrets/<namespace>/<secretName>/tls.crt     the certificate (chain), PEM
    home/secrets/<namespace>/<secretName>/tls.key     its private key, PEM (mode 600)

The names are a Kubernetes TLS Secret's keys, so `modelport render` and a cluster agree.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelport.errors import Code, ModelportError
from modelport.security.tls import check_identity, read_pem, server_identity
from modelport.spec.objects import ServiceTLS


def secrets_dir(home: Path) -> Path:
    return home / "secrets"


def tls_files(tls: ServiceTLS, namespace: str, secrets: Path) -> tuple[Path, Path, str]:
    """(certificate, key, the field they come from) for a Service's `spec.tls`."""
    if tls.secret_name is not None:
        folder = secrets / namespace / tls.secret_name
        return folder / "tls.crt", folder / "tls.key", "spec.tls.secretName"
    assert tls.cert_file is not None and tls.key_file is not None  # validation: one of the two
    return Path(tls.cert_file), Path(tls.key_file), "spec.tls.certFile"


def check_tls_files(tls: ServiceTLS, namespace: str, secrets: Path) -> bytes:
    """The certificate and key as one PEM (what HAProxy's `crt` reads), or an error naming the
    field and the file: missing, not PEM, or a key that is not the certificate's."""
    cert, key, field = tls_files(tls, namespace, secrets)
    try:
        identity = server_identity(read_pem(f"{field}: {cert}", cert), read_pem(f"{field}: {key}", key))
        check_identity(identity)
    except ModelportError as exc:
        raise ModelportError(Code.INVALID_ARGUMENT, exc.message) from None
    return identity.cert.data.rstrip(b"\n") + b"\n" + identity.key.data


def write_pem(path: Path, data: bytes) -> Path:
    """`data` at `path`, readable by this user only, replaced whole (HAProxy never reads half)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
    return path
