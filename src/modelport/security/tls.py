"""TLS settings for a server: a certificate, its private key and, for mutual TLS, the CA that
client certificates must be signed by; each read once at start-up and checked before anything
listens, so a wrong file is a message naming the flag and the file, not a traceback later.

    identity = server_identity(read_pem("--ssl_cert_file", cert), read_pem("--ssl_key_file", key))
    check_identity(identity)        # ModelportError naming the flag and file at fault

Used by the model server (REST through uvicorn, gRPC through grpcio), the gateway and the Service
load balancer; knows nothing of them.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelport.errors import Code, ModelportError

_CERT_MARK = b"-----BEGIN CERTIFICATE-----"
_KEY_MARK = b"PRIVATE KEY-----"


@dataclass(frozen=True)
class Pem:
    """PEM text and where it came from, for messages: `--ssl_cert_file /etc/tls/cert.pem`."""

    where: str
    data: bytes
    path: str | None = None  # the file, when it came from one


@dataclass(frozen=True)
class TlsIdentity:
    cert: Pem
    key: Pem
    # Given: every client must present a certificate this CA signed (mutual TLS).
    client_ca: Pem | None = None


def tls_error(message: str) -> ModelportError:
    return ModelportError(Code.INVALID_ARGUMENT, message)


def read_pem(flag: str, path: str | os.PathLike[str]) -> Pem:
    """The file given to `flag`, read; a missing or unreadable one is an error naming both."""
    where = f"{flag} {path}"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise tls_error(f"{where}: cannot read it: {exc.strerror}") from None
    return Pem(where, data, str(path))


def check_identity(identity: TlsIdentity) -> ssl.SSLContext:
    """A server-side SSL context from `identity`, or the error that names what is wrong with it:
    a file that holds no PEM certificate or key, a key that is not the certificate's, a CA that
    does not parse."""
    if _CERT_MARK not in identity.cert.data:
        raise tls_error(f"{identity.cert.where}: holds no PEM certificate ({_CERT_MARK.decode()})")
    if _KEY_MARK not in identity.key.data:
        raise tls_error(f"{identity.key.where}: holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain reads files only: PEM text given inline (TF Serving's ssl_config_file) goes
    # through a private temporary folder, removed at once.
    with tempfile.TemporaryDirectory(prefix="modelport-tls-") as folder:
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert.write_bytes(identity.cert.data)
        key.touch(mode=0o600)
        key.write_bytes(identity.key.data)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                raise tls_error(
                    f"{identity.key.where}: is not the private key of the certificate in "
                    f"{identity.cert.where}"
                ) from None
            raise tls_error(
                f"{identity.cert.where} / {identity.key.where}: OpenSSL refused them: {exc.reason or exc}"
            ) from None
    if identity.client_ca is not None:
        ca = identity.client_ca
        if _CERT_MARK not in ca.data:
            raise tls_error(f"{ca.where}: holds no PEM CA certificate ({_CERT_MARK.decode()})")
        try:
            context.load_verify_locations(cadata=ca.data.decode("ascii", "replace"))
        except ssl.SSLError as exc:
            raise tls_error(f"{ca.where}: OpenSSL refused it: {exc.reason or exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def server_identity(cert: Pem, key: Pem, client_ca: Pem | None = None) -> TlsIdentity:
    """`cert`, `key` and `client_ca` as one identity, checked (see `check_identity`)."""
    identity = TlsIdentity(cert, key, client_ca)
    check_identity(identity)
    return identity


def client_context(ca: Pem | None, cert: Pem | None = None, key: Pem | None = None) -> ssl.SSLContext:
    """A client-side context that trusts `ca` (the system's CAs when None), presenting `cert`
    and `key` when given (a server that asks for client certificates)."""
    context = ssl.create_default_context()
    if ca is not None:
        if _CERT_MARK not in ca.data:
            raise tls_error(f"{ca.where}: holds no PEM CA certificate ({_CERT_MARK.decode()})")
        context = ssl.create_default_context(cadata=ca.data.decode("ascii", "replace"))
    if cert is not None and key is not None:
        if cert.path is None or key.path is None:
            raise tls_error(f"{cert.where}: a client certificate must be given as a file")
        try:
            context.load_cert_chain(cert.path, key.path)
        except ssl.SSLError as exc:
            raise tls_error(
                f"{cert.where} / {key.where}: OpenSSL refused them: {exc.reason or exc}"
            ) from None
    return context
