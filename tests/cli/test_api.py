"""How a command reports an error: kubectl's `Error from server (Reason): message` on stderr and
exit code 1, with the reason the control plane's API names for the code (one table for both)."""

from __future__ import annotations

import pytest

from modelport.cli.api import reporting, split_ref
from modelport.errors import REASONS, Code, ModelportError, code_of


@pytest.mark.parametrize(
    ("code", "printed"),
    [
        (Code.NOT_FOUND, 'Error from server (NotFound): deployments "mnist" not found'),
        (Code.ABORTED, 'Error from server (Conflict): deployments "mnist" not found'),
        (Code.UNAVAILABLE, 'Error from server (Unavailable): deployments "mnist" not found'),
        (Code.DEADLINE_EXCEEDED, 'Error from server (InternalError): deployments "mnist" not found'),
    ],
)
def test_an_error_is_printed_as_kubectl_does_and_exits_1(
    code: Code, printed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited, reporting():
        raise ModelportError(code, 'deployments "mnist" not found')
    assert exited.value.code == 1
    assert capsys.readouterr().err == printed + "\n"


def test_the_client_reads_back_the_code_the_api_named() -> None:
    # The API answers `reason`; the CLI's client turns it back into the code it came from.
    assert {code: code_of(code.reason) for code in REASONS} == {code: code for code in REASONS}
    assert code_of("SomethingNew") is Code.INTERNAL


def test_an_object_is_named_as_kubectl_names_it() -> None:
    assert split_ref("deploy/mnist", None) == ("Deployment", "mnist")
    assert split_ref("svc", "mnist") == ("Service", "mnist")
    assert split_ref("pods", None) == ("Pod", None)
    with pytest.raises(ModelportError, match='the server doesn\'t have a resource type "foos"'):
        split_ref("foos", None)
