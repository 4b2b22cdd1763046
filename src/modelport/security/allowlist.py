"""What a Deployment may ask its replicas to run: `apply` takes `args` only from an allow-list of
flags, and a model's `basePath` only from `registry://` or the control plane's model roots.

Anyone who may apply a Deployment would otherwise choose what runs on this machine: `--allow_pickle`
runs the code in a pickled model file; `--host 0.0.0.0` and `--auth=off` expose a replica beyond
loopback without keys; `--port_file` writes where the control plane reads; `--api_key_store` or a
gateway's `--token-file` swaps the credentials a replica trusts or holds. A control plane started with
`--allow-unsafe-args` takes any flag (its operator says every author of a Deployment is trusted).

    arg_problems(["--enable_batching", "--host", "0.0.0.0"], "serve", allow_unsafe=False)
    # ['spec.template.spec.args[1]: --host is not allowed: the control plane binds replicas to ...']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

ARGS = "spec.template.spec.args"
REGISTRY_SCHEME = "registry://"

# `modelport serve` flags a Deployment may set: how a replica serves, never where, as whom, or what
# code it runs.
SERVE_FLAGS = frozenset({
    "--file_system_poll_wait_seconds", "--version_settle_seconds", "--version_transition_policy",
    "--rest_api_num_threads", "--rest_api_timeout_in_ms", "--max_request_bytes", "--max_batch_size",
    "--max_bytes_elements", "--max_request_pixels", "--header_timeout_seconds", "--body_timeout_seconds",
    "--keep_alive_timeout_seconds", "--max_connections", "--intra_op_parallelism",
    "--tensorflow_intra_op_parallelism", "--inter_op_parallelism", "--tensorflow_inter_op_parallelism",
    "--enable_cors_support", "--enable_batching", "--batching_parameters_file", "--log_level",
    "--disable_model_monitoring", "--prediction_log_sample_rate", "--prediction_log_max_bytes",
    "--auth",  # on or auto; `off` is refused below
})  # fmt: skip
GATEWAY_FLAGS = frozenset({
    "--timeout", "--max-bytes", "--max-pixels", "--max-request-pixels", "--model-ca-file",
    # How much one client address may send, and whether callers need a key: limits, not exposure.
    "--per-client", "--per-client-burst", "--require-key",
})  # fmt: skip

# Why the flags people reach for are refused (any other flag off the list: "not on the allow-list").
WHY = {
    "--allow_pickle": "it runs the code inside pickled model files",
    "--trusted_types": "it lets skops files build types that may run code",
    "--host": "the control plane binds replicas to loopback; a Service's type decides exposure",
    "--port_file": "the control plane sets where a replica reports its ports",
    "--mirror_file": "the control plane says where a replica copies requests (a Rollout's setMirror)",
    "--auth=off": "a replica checks API keys as the control plane configured it",
    "--api_key_store": "a replica checks API keys against the control plane's store",
    "--model_config_file": "a replica serves the model in spec.template.spec.model",
    "--model_name": "a replica serves the model in spec.template.spec.model",
    "--model_base_path": "a replica serves spec.template.spec.model.basePath",
    "--prediction_log_dir": "a replica writes its prediction log where the control plane keeps its files",
    "--token-file": "a gateway replica is given its own services:get token",
    "--model-url": "a gateway replica calls spec.template.spec.gateway.service",
    "--api-key-file": "a gateway replica reads its key from the control plane's home (gateway.key)",
    "--workers": "a replica is one server process: give spec.replicas (or an HPA) more, each measured "
    "and restarted on its own",
}
OPT_IN = "start the control plane with `modelport up --allow-unsafe-args` to allow any flag"


def arg_problems(args: Sequence[str], program: str, allow_unsafe: bool) -> list[str]:
    """Each arg a replica of `program` ("serve" or "gateway") may not be given, by its index."""
    if allow_unsafe:
        return []
    allowed = SERVE_FLAGS if program == "serve" else GATEWAY_FLAGS
    problems = []
    after_flag = False
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            if after_flag:  # the value of the flag before it
                after_flag = False
                if args[i - 1] == "--auth" and arg == "off":
                    problems.append(
                        f"{ARGS}[{i - 1}]: --auth off is not allowed: {WHY['--auth=off']} ({OPT_IN})"
                    )
                continue
            problems.append(f"{ARGS}[{i}]: {arg!r} is not a flag (give --name=value or --name value)")
            continue
        flag, _, value = arg.partition("=")
        after_flag = "=" not in arg
        if flag == "--auth" and value == "off":
            problems.append(f"{ARGS}[{i}]: {arg} is not allowed: {WHY['--auth=off']} ({OPT_IN})")
        elif flag not in allowed:
            why = WHY.get(flag, f"not on the allow-list of `modelport {program}` flags a Deployment may set")
            problems.append(f"{ARGS}[{i}]: {flag} is not allowed: {why} ({OPT_IN})")
    return problems


def base_path_problem(base_path: str, roots: Sequence[Path], field: str) -> str | None:
    """Why `base_path` may not be served, or None: it is registry://..., or a folder inside one
    of `roots` once `..` and symbolic links are resolved. No roots: every folder is allowed."""
    if base_path.startswith(REGISTRY_SCHEME) or not roots:
        return None
    resolved = Path(base_path).resolve()
    if any(resolved.is_relative_to(root.resolve()) for root in roots):
        return None
    listed = ", ".join(str(r) for r in roots)
    return (
        f"{field}: {base_path!r} is outside the model roots ({listed}) and not {REGISTRY_SCHEME}MODEL@LABEL; "
        "publish it to the registry, move it under a root, or start the control plane with --model-root"
    )
