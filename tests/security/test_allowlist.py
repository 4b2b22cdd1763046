"""The allow-list of what a Deployment may have its replicas run: args and basePath."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.security.allowlist import arg_problems, base_path_problem


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--rest_api_timeout_in_ms=5000"],
        ["--enable_batching", "--max_batch_size", "32"],
        ["--intra_op_parallelism=2", "--tensorflow_inter_op_parallelism", "1", "--log_level=debug"],
        ["--auth=on"],
        ["--auth", "auto"],
    ],
)
def test_what_serving_needs_is_allowed(args: list[str]) -> None:
    assert arg_problems(args, "serve", allow_unsafe=False) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--allow_pickle"], "spec.template.spec.args[0]: --allow_pickle is not allowed: it runs the code"),
        (["--enable_batching", "--host", "0.0.0.0"], "spec.template.spec.args[1]: --host is not allowed"),
        (["--host=::"], "spec.template.spec.args[0]: --host is not allowed"),
        (["--auth=off"], "spec.template.spec.args[0]: --auth=off is not allowed"),
        (["--auth", "off"], "spec.template.spec.args[0]: --auth off is not allowed"),
        (["--port_file", "/tmp/x"], "spec.template.spec.args[0]: --port_file is not allowed"),
        (["--api_key_store=/tmp/mine.db"], "--api_key_store is not allowed"),
        (["--workers=4"], "--workers is not allowed: a replica is one server process: give spec.replicas"),
        (
            ["--ssl_cert_file=/x"],
            "--ssl_cert_file is not allowed: not on the allow-list of `modelport serve`",
        ),
    ],
)
def test_what_changes_who_or_what_runs_is_refused_naming_the_arg(args: list[str], says: str) -> None:
    (problem,) = arg_problems(args, "serve", allow_unsafe=False)
    assert says in problem
    assert "modelport up --allow-unsafe-args" in problem
    assert arg_problems(args, "serve", allow_unsafe=True) == []


def test_a_word_that_is_no_flags_value_is_refused() -> None:
    (problem,) = arg_problems(["--enable_batching", "--log_level=info", "pickle"], "serve", False)
    assert problem == "spec.template.spec.args[2]: 'pickle' is not a flag (give --name=value or --name value)"


def test_a_gateway_replica_has_its_own_list() -> None:
    assert arg_problems(["--model-ca-file", "/ca.pem", "--timeout=3"], "gateway", allow_unsafe=False) == []
    (problem,) = arg_problems(["--token-file=/home/me/.modelport/controlplane/token"], "gateway", False)
    assert "--token-file is not allowed: a gateway replica is given its own services:get token" in problem
    assert arg_problems(["--enable_batching"], "gateway", False)  # a serve flag is not a gateway's


def test_base_path_inside_a_root_or_from_the_registry(tmp_path: Path) -> None:
    root = tmp_path / "models"
    (root / "mnist").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    field = "spec.template.spec.model.basePath"
    assert base_path_problem(str(root / "mnist"), [root], field) is None
    assert base_path_problem("registry://mnist@stable", [root], field) is None
    assert base_path_problem("/anywhere/at/all", [], field) is None  # no roots configured
    for outside in (tmp_path / "elsewhere", root / "mnist" / ".." / ".." / "elsewhere", root / "link"):
        problem = base_path_problem(str(outside), [root], field)
        assert problem is not None and problem.startswith(f"{field}: '{outside}' is outside the model roots")
