"""The control plane's scoped tokens: who a bearer token is, and what each scope may do."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.errors import ModelportError
from modelport.security.tokens import ADMIN_PRINCIPAL, SERVICES_GET, Principal, TokenFile

READER = Principal("0123abcd", "gw", SERVICES_GET, "default")


@pytest.mark.parametrize(
    ("method", "kind", "namespace", "allowed"),
    [
        ("GET", "Service", "default", True),  # get, list or watch in its namespace
        ("GET", "Service", "prod", False),  # another namespace
        ("GET", "Service", None, False),  # every namespace at once
        ("GET", "Deployment", "default", False),
        ("GET", "Pod", "default", False),
        ("PUT", "Service", "default", False),
        ("DELETE", "Service", "default", False),
        ("POST", "", None, False),  # /api/shutdown
        ("GET", "", None, False),  # /api/top, /metrics
    ],
)
def test_services_get_reads_services_of_its_namespace_only(
    method: str, kind: str, namespace: str | None, allowed: bool
) -> None:
    assert READER.allows(method, kind, namespace) is allowed
    assert ADMIN_PRINCIPAL.allows(method, kind, namespace)


def test_a_token_is_kept_hashed_checked_and_revoked(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    secret = tokens.create("gw", SERVICES_GET, "default")
    assert secret not in (tmp_path / "tokens.json").read_text()
    assert (tmp_path / "tokens.json").stat().st_mode & 0o777 == 0o600
    who = tokens.authenticate(secret, "the-admin-secret")
    assert who is not None and (who.name, who.scope, who.namespace) == ("gw", SERVICES_GET, "default")
    assert tokens.authenticate("the-admin-secret", "the-admin-secret") == ADMIN_PRINCIPAL
    assert tokens.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B"), "x") is None
    assert tokens.authenticate("", "x") is None
    with pytest.raises(ModelportError, match='token "gw" already exists'):
        tokens.create("gw", SERVICES_GET, "default")
    with pytest.raises(ModelportError, match="needs a --namespace"):
        tokens.create("other", SERVICES_GET, None)
    tokens.revoke("gw")
    assert tokens.authenticate(secret, "x") is None
