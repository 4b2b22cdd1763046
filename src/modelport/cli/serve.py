"""`modelport serve`: the model server, with the flags a TensorFlow Serving user types from habit."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelport.errors import ModelportError

if TYPE_CHECKING:  # imported where used: `modelport --help` must not load numpy (server.batching)
    from modelport.repository.config import ModelServerConfig
    from modelport.security.tls import TlsIdentity
    from modelport.server.batching import BatchingParameters

log = logging.getLogger("modelport.cli")

_TRANSITIONS = click.Choice(["availability_preserving", "resource_preserving"])


class _Workers(click.ParamType[int]):
    """A count of at least 1, or `auto`: the CPUs this process may use."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from modelport.server.cpus import usable_cpus

        if isinstance(value, int) or (str(value).isdigit() and int(value) >= 1):
            return int(value)
        if value == "auto":
            return usable_cpus()
        self.fail(f"{value!r}: give a number of workers (1 or more) or auto", param, ctx)


@click.command()
@click.option(
    "--port",
    "--grpc_port",
    "port",
    default=8500,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="gRPC port (the v2 inference service); 0 picks a free one. Equal to --rest_api_port: REST only.",
)
@click.option(
    "--rest_api_port",
    default=8501,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="REST port; 0 picks a free one (see --port_file).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface; then API keys are required, see --auth).",
)
@click.option(
    "--auth",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="API keys (`modelport keys create`) required: auto = when --host is not a loopback address.",
)
@click.option(
    "--model_name", default=None, help="Name of the model (with --model_base_path). [default: default]"
)
@click.option(
    "--model_base_path",
    default=None,
    help="Folder holding <version>/ sub-folders, or registry://MODEL@LABEL (a registry label).",
)
@click.option(
    "--model_config_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="TF Serving model config (text format or YAML); wins over --model_name.",
)
@click.option(
    "--model_config_file_poll_wait_seconds",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Re-read the config file this often (0: never).",
)
@click.option(
    "--file_system_poll_wait_seconds",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Look for new versions this often.",
)
@click.option(
    "--version_settle_seconds",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="A version folder without a _COMPLETE mark loads once unchanged this long.",
)
@click.option(
    "--version_transition_policy",
    type=_TRANSITIONS,
    default=None,
    help="availability_preserving (load new, then unload old; the default) or "
    "resource_preserving (unload first: never two versions in memory). Overrides the config.",
)
@click.option(
    "--rest_api_num_threads",
    default=max(2, os.cpu_count() or 1),
    show_default=True,
    type=click.IntRange(min=1),
    help="Threads that run slow models (fast ones run inline); gRPC calls get one more, at least 5.",
)
@click.option(
    "--workers",
    default="1",
    type=_Workers(),
    help="Server processes sharing the REST and gRPC ports, each a whole server that loads every "
    "model (memory: N times; :feedback is taken only for requests its own worker answered). auto: the "
    "CPUs this process may use (its CPU affinity, capped by its cgroup's quota). [default: 1; "
    "replicas under `modelport apply` are one process each, Kubernetes pods are given their CPU "
    "limit]",
)
@click.option(
    "--rest_api_timeout_in_ms",
    default=30000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Per-request deadline (answers 504 when exceeded).",
)
@click.option(
    "--max_request_bytes",
    default=32 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="Larger bodies are refused with 413.",
)
@click.option(
    "--max_batch_size",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows a request may have (a model's model.yaml max_batch_size wins); more is a 400.",
)
@click.option(
    "--max_bytes_elements",
    default=65_536,
    show_default=True,
    type=click.IntRange(min=1),
    help="BYTES (string) elements a request may hold; more is a 400, refused before parsing them.",
)
@click.option(
    "--max_request_pixels",
    default=40_000_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Pixels of all of a request's images together, read from their headers; more is a 400.",
)
@click.option(
    "--header_timeout_seconds",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="A request's headers must be in this long after its first byte (or the connection's "
    "start); else 408 and the connection is closed.",
)
@click.option(
    "--body_timeout_seconds",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="A request's body must be in this long after its headers, plus 1 s per 64 KiB received; "
    "else 408 and the connection is closed.",
)
@click.option(
    "--keep_alive_timeout_seconds",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="An idle keep-alive connection is closed after this long.",
)
@click.option(
    "--max_connections",
    default=None,
    type=click.IntRange(min=1),
    help="Open connections at most; more get 503 with Retry-After (health checks are answered) "
    "and are closed. Also the most gRPC calls at once (more: RESOURCE_EXHAUSTED). "
    "[default: 1024, or fewer if the open-file limit is low]",
)
@click.option(
    "--intra_op_parallelism",
    "--tensorflow_intra_op_parallelism",
    "intra_op",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="ONNX Runtime and TensorFlow threads within an operator (0: one per core).",
)
@click.option(
    "--inter_op_parallelism",
    "--tensorflow_inter_op_parallelism",
    "inter_op",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="ONNX Runtime and TensorFlow threads across operators (0: runtime default).",
)
@click.option("--allow_pickle", is_flag=True, help="Load scikit-learn .joblib/.pkl files (runs their code).")
@click.option("--trusted_types", default="", help="Comma-separated types skops files may build.")
@click.option("--enable_cors_support", is_flag=True, help="Answer CORS preflight and add CORS headers.")
@click.option(
    "--enable_batching", is_flag=True, help="Merge concurrent requests to a model version into one call."
)
@click.option(
    "--batching_parameters_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TF Serving batching parameters (text format or YAML); implies --enable_batching.",
)
@click.option(
    "--port_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the bound REST port here as JSON once listening.",
)
@click.option(
    "--mirror_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Copy a share of answered predictions to a canary as this JSON file says (a Rollout's "
    "setMirror; the control plane writes it), and count whether the canary answered the same.",
)
@click.option(
    "--ssl_cert_file",
    default=None,
    help="PEM certificate (chain): REST and gRPC serve TLS (gRPC: unless --ssl_config_file).",
)
@click.option("--ssl_key_file", default=None, help="PEM private key of --ssl_cert_file.")
@click.option(
    "--ssl_client_ca_file",
    default=None,
    help="PEM CA: REST (and gRPC) clients must present a certificate it signed (mutual TLS).",
)
@click.option(
    "--ssl_config_file",
    default=None,
    help="TF Serving's SSLConfig (text format: server_key, server_cert, custom_ca, client_verify) "
    "for the gRPC API.",
)
@click.option(
    "--disable_model_monitoring",
    is_flag=True,
    help="Do not watch answers for drift and feedback (the prediction log is off too; :feedback is a 400).",
)
@click.option(
    "--prediction_log_sample_rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Share of requests written to the prediction log, for versions whose model.yaml sets no logging.",
)
@click.option(
    "--prediction_log_max_bytes",
    default=64 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=4096),
    help="Disk a version's prediction log may take (its rotated files included), unless model.yaml says.",
)
@click.option(
    "--prediction_log_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where prediction logs go (<dir>/<model>/<version>.jsonl). "
    "[default: $MODELPORT_HOME/prediction-logs]",
)
@click.option(
    "--log_level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@click.option(
    "--api_key_store",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The SQLite file API keys are read from. [default: $MODELPORT_HOME/registry.db]",
)
def serve(**flags: Any) -> None:
    """Serve models over TensorFlow Serving's REST API (plus health and Prometheus metrics).

    \b
    modelport serve --rest_api_port=8501 --model_name=mnist --model_base_path=/models/mnist
    modelport serve --port=8501 --rest_api_port=8501 --model_config_file=/models/config.yaml
    """
    from modelport.runtimes.limits import RequestLimits
    from modelport.server.app import ServerOptions
    from modelport.server.http_limits import ConnectionLimits
    from modelport.server.main import ServeConfig, default_max_connections
    from modelport.server.main import serve as run
    from modelport.server.monitor import MonitorOptions
    from modelport.server.seat import LOG_FORMAT

    logging.basicConfig(level=flags["log_level"].upper(), format=LOG_FORMAT)
    try:
        models = _models(flags)
        batching = _batching(flags)
        rest_tls, grpc_tls = _tls(flags)
    except ModelportError as exc:
        raise click.UsageError(exc.message) from exc
    config = ServeConfig(
        models=models,
        host=flags["host"],
        rest_api_port=flags["rest_api_port"],
        grpc_port=flags["port"],
        model_config_file=str(flags["model_config_file"]) if flags["model_config_file"] else None,
        model_config_file_poll_wait_seconds=flags["model_config_file_poll_wait_seconds"],
        file_system_poll_wait_seconds=flags["file_system_poll_wait_seconds"],
        version_settle_seconds=flags["version_settle_seconds"],
        inference_threads=flags["rest_api_num_threads"],
        onnx_options={"intra_op_threads": flags["intra_op"], "inter_op_threads": flags["inter_op"]},
        allow_pickle=flags["allow_pickle"],
        trusted_types=tuple(t for t in flags["trusted_types"].split(",") if t),
        port_file=flags["port_file"],
        mirror_file=flags["mirror_file"],
        batching=batching,
        options=ServerOptions(
            max_request_bytes=flags["max_request_bytes"],
            request_timeout_seconds=flags["rest_api_timeout_in_ms"] / 1000,
            enable_cors=flags["enable_cors_support"],
            limits=RequestLimits(
                flags["max_batch_size"], flags["max_bytes_elements"], flags["max_request_pixels"]
            ),
        ),
        connections=ConnectionLimits(
            header_timeout=flags["header_timeout_seconds"],
            body_timeout=flags["body_timeout_seconds"],
            max_connections=flags["max_connections"] or default_max_connections(),
        ),
        keep_alive_timeout_seconds=flags["keep_alive_timeout_seconds"],
        auth=flags["auth"],
        key_store=flags["api_key_store"],
        rest_tls=rest_tls,
        grpc_tls=grpc_tls,
        workers=flags["workers"],
        monitoring=MonitorOptions(
            enabled=not flags["disable_model_monitoring"],
            log_dir=flags["prediction_log_dir"],
            sample_rate=flags["prediction_log_sample_rate"],
            max_bytes=flags["prediction_log_max_bytes"],
        ),
    )
    run(config)


def _tls(flags: dict[str, Any]) -> tuple[TlsIdentity | None, TlsIdentity | None]:
    """REST's and gRPC's TLS identities from the flags, each file checked now: a bad one is a
    usage error naming the flag and the file."""
    from modelport.security.tls import read_pem, server_identity
    from modelport.server.ssl_config import load_ssl_config_file

    cert, key, ca = flags["ssl_cert_file"], flags["ssl_key_file"], flags["ssl_client_ca_file"]
    if bool(cert) != bool(key):
        pair = ["--ssl_cert_file", "--ssl_key_file"]
        given, missing = pair if cert else pair[::-1]
        raise click.UsageError(f"{given} needs {missing} too")
    if ca and not cert:
        raise click.UsageError("--ssl_client_ca_file needs --ssl_cert_file and --ssl_key_file")
    rest = None
    if cert:
        client_ca = read_pem("--ssl_client_ca_file", ca) if ca else None
        rest = server_identity(read_pem("--ssl_cert_file", cert), read_pem("--ssl_key_file", key), client_ca)
    grpc = load_ssl_config_file(flags["ssl_config_file"]) if flags["ssl_config_file"] else rest
    return rest, grpc


def _batching(flags: dict[str, Any]) -> BatchingParameters | None:
    from modelport.server.batching import BatchingParameters, load_batching_parameters

    path = flags["batching_parameters_file"]
    if path is not None:
        return load_batching_parameters(path)
    return BatchingParameters() if flags["enable_batching"] else None


def _models(flags: dict[str, Any]) -> ModelServerConfig:
    from modelport.registry import REGISTRY_SCHEME, resolve_base_path
    from modelport.repository.config import ModelServerConfig, load_model_config_file, single_model_config

    config_file = flags["model_config_file"]
    if config_file is not None:
        if flags["model_name"] or flags["model_base_path"]:
            log.warning(
                "--model_config_file %s is given: --model_name/--model_base_path are ignored", config_file
            )
        models = load_model_config_file(config_file)
    elif flags["model_base_path"] is not None:
        base = str(flags["model_base_path"])
        base = base if base.startswith(REGISTRY_SCHEME) else str(Path(base).resolve())
        models = single_model_config(flags["model_name"] or "default", base)
    else:
        raise click.UsageError("give --model_config_file, or --model_base_path (and --model_name)")
    # registry://MODEL@LABEL: the folder the registry keeps holding what the label points at.
    models = ModelServerConfig(
        tuple(replace(m, base_path=resolve_base_path(m.base_path)) for m in models.models)
    )
    transition = flags["version_transition_policy"]
    if transition:
        models = ModelServerConfig(tuple(replace(m, transition=transition) for m in models.models))
    return models
