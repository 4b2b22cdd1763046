"""TensorFlow Serving's `--ssl_config_file`: its SSLConfig message in protobuf text format, the
PEM texts inline, for the gRPC API.

    server_key: "-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----\\n"
    server_cert: "-----BEGIN CERTIFICATE-----\\n...\\n-----END CERTIFICATE-----\\n"
    custom_ca: "-----BEGIN CERTIFICATE-----\\n..."      # with client_verify: the clients' CA
    client_verify: true                                   # clients must present a certificate
"""

from __future__ import annotations

import os
from pathlib import Path

from modelport.errors import ModelportError
from modelport.repository.config import _TextParser, _unlist
from modelport.security.tls import Pem, TlsIdentity, server_identity, tls_error

_FIELDS = ("server_key", "server_cert", "custom_ca", "client_verify")


def parse_ssl_config(text: str, source: str) -> TlsIdentity:
    """The identity an SSLConfig text describes, checked; errors name the file and the field."""
    where = f"--ssl_config_file {source}"
    try:
        doc = _unlist(_TextParser(text, where).message(None), frozenset())
    except ModelportError as exc:
        raise tls_error(exc.message) from None
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise tls_error(f"{where}: {unknown[0]}: unknown field; SSLConfig has {', '.join(_FIELDS)}")
    for field in ("server_key", "server_cert"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            raise tls_error(f"{where}: {field}: the PEM text is needed (a quoted string)")
    verify = doc.get("client_verify", "false")
    if verify not in ("true", "false", 1, 0, "True", "False", "t", "f"):
        raise tls_error(f"{where}: client_verify: must be true or false, got {verify!r}")
    ca = doc.get("custom_ca")
    if verify in ("true", 1, "True", "t"):
        if not isinstance(ca, str) or not ca:
            raise tls_error(f"{where}: custom_ca: needed with client_verify: true (the clients' CA)")
        client_ca: Pem | None = Pem(f"{where}: custom_ca", ca.encode())
    else:
        client_ca = None
    cert = Pem(f"{where}: server_cert", doc["server_cert"].encode())
    key = Pem(f"{where}: server_key", doc["server_key"].encode())
    return server_identity(cert, key, client_ca)


def load_ssl_config_file(path: str | os.PathLike[str]) -> TlsIdentity:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise tls_error(f"--ssl_config_file {path}: cannot read it: {reason}") from None
    return parse_ssl_config(text, str(path))
