"""`modelport serve`'s (and the gateway's) TLS flags: a missing, wrong or mismatched file is a
usage error at start-up naming the flag and the file (exit 2, no traceback); good files reach the
server's config."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from claims_support import serve_config
from modelport.cli import cli
from tls_support import Pki, make_pki, ssl_config_text


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _refused(tmp_path: Path, *flags: str) -> str:
    args = ["serve", "--model_name", "m", "--model_base_path", str(tmp_path), *flags]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def test_good_files_give_rest_and_grpc_the_same_identity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki
) -> None:
    config = serve_config(
        monkeypatch, "--model_name", "m", "--model_base_path", str(tmp_path),
        "--ssl_cert_file", str(pki.server_cert), "--ssl_key_file", str(pki.server_key),
    )  # fmt: skip
    assert config.rest_tls is not None and config.rest_tls.cert.path == str(pki.server_cert)
    assert config.grpc_tls == config.rest_tls and config.rest_tls.client_ca is None
    plain = serve_config(monkeypatch, "--model_name", "m", "--model_base_path", str(tmp_path))
    assert plain.rest_tls is None and plain.grpc_tls is None


def test_the_ssl_config_file_is_grpcs_and_client_verify_needs_its_ca(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki
) -> None:
    config_file = tmp_path / "ssl.config"
    config_file.write_text(ssl_config_text(pki, client_verify=True))
    config = serve_config(
        monkeypatch, "--model_name", "m", "--model_base_path", str(tmp_path),
        "--ssl_config_file", str(config_file),
    )  # fmt: skip
    assert config.rest_tls is None  # as in TF Serving: the SSLConfig is the gRPC port's
    assert config.grpc_tls.client_ca.data == pki.ca.read_bytes()
    config_file.write_text(ssl_config_text(pki, client_verify=False) + "client_verify: true\n")
    out = _refused(tmp_path, "--ssl_config_file", str(config_file))
    assert f"--ssl_config_file {config_file}: custom_ca: needed with client_verify: true" in out
    config_file.write_text('server_cert: "x"\nserver_crt: "y"\n')
    out = _refused(tmp_path, "--ssl_config_file", str(config_file))
    assert "server_crt: unknown field" in out


def test_a_missing_file_names_the_flag_and_the_file(tmp_path: Path, pki: Pki) -> None:
    gone = tmp_path / "nope.pem"
    out = _refused(tmp_path, "--ssl_cert_file", str(gone), "--ssl_key_file", str(pki.server_key))
    assert f"--ssl_cert_file {gone}: cannot read it: No such file or directory" in out
    out = _refused(tmp_path, "--ssl_cert_file", str(pki.server_cert))
    assert "--ssl_cert_file needs --ssl_key_file too" in out


def test_a_key_that_is_not_the_certificates_is_named(tmp_path: Path, pki: Pki) -> None:
    out = _refused(tmp_path, "--ssl_cert_file", str(pki.server_cert), "--ssl_key_file", str(pki.client_key))
    assert f"--ssl_key_file {pki.client_key}: is not the private key of the certificate in" in out
    out = _refused(tmp_path, "--ssl_cert_file", str(pki.server_key), "--ssl_key_file", str(pki.server_key))
    assert f"--ssl_cert_file {pki.server_key}: holds no PEM certificate" in out
    out = _refused(
        tmp_path, "--ssl_cert_file", str(pki.server_cert), "--ssl_key_file", str(pki.server_key),
        "--ssl_client_ca_file", str(pki.client_key),
    )  # fmt: skip
    assert f"--ssl_client_ca_file {pki.client_key}: holds no PEM CA certificate" in out


def test_the_gateways_tls_files_are_checked_at_start_up_too(tmp_path: Path, pki: Pki) -> None:
    def refused(*flags: str) -> str:
        result = CliRunner().invoke(cli, ["gateway", "--model-url", "https://127.0.0.1:1", *flags])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        return result.output

    gone = tmp_path / "nope.pem"
    out = refused("--ssl-cert-file", str(gone), "--ssl-key-file", str(pki.server_key))
    assert f"--ssl-cert-file {gone}: cannot read it: No such file or directory" in out
    out = refused("--ssl-cert-file", str(pki.server_cert), "--ssl-key-file", str(pki.client_key))
    assert f"--ssl-key-file {pki.client_key}: is not the private key of the certificate in" in out
    assert "holds no PEM CA certificate" in refused("--model-ca-file", str(pki.client_key))
    assert "--ssl-cert-file and --ssl-key-file go together" in refused(
        "--ssl-cert-file", str(pki.server_cert)
    )
