"""The REST API as an OpenAPI 3.0 document, served at `GET /openapi.json`: what clients,
generators and fuzzers read. Tests keep it true (tests/server/test_openapi.py): it validates,
every route the server answers is in it and nothing else, and schemathesis checks the server's
answers against it.

Built once from tables, so the 15 TF Serving paths (3 ways to name a version x status,
metadata, :predict, :classify, :regress) and the v2 ones cannot drift apart; the bodies' schemas
are in openapi_schemas.py.
"""

from __future__ import annotations

from typing import Any

from modelport import __version__
from modelport.server.openapi_schemas import PARAMETERS, SCHEMAS, json_response, obj, ref

_ERROR = {"$ref": "#/components/responses/Error"}
# The three ways TF Serving names a version: (path suffix, its parameters, how it reads).
_V1_SPECS: list[tuple[str, list[str], str]] = [
    ("", [], "the latest available version"),
    ("/versions/{version}", ["version"], "version {version}"),
    ("/labels/{label}", ["label"], "the version labelled {label}"),
]
_V2_SPECS: list[tuple[str, list[str]]] = [("", []), ("/versions/{model_version}", ["model_version"])]

_MODEL_VERSION_HEADER = {
    "X-Model-Version": {
        "description": "The version that answered (on JSON answers).",
        "schema": {"type": "string"},
    }
}
_INFER_ERRORS = {
    "400": _ERROR,
    "404": _ERROR,
    "413": _ERROR,
    "503": _ERROR,
    "504": _ERROR,
}
_LOOKUP_ERRORS = {"400": _ERROR, "404": _ERROR}


def _parameters(names: list[str]) -> list[dict[str, str]]:
    return [{"$ref": f"#/components/parameters/{n}"} for n in names]


def _v1_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for suffix, params, which in _V1_SPECS:
        base = "/v1/models/{model_name}" + suffix
        common = {"parameters": _parameters(["model_name", *params])}
        paths[base] = {
            **common,
            "get": {
                "operationId": "v1Status" + _tag(suffix),
                "summary": f"Status of {which}" if params else "Status of every version",
                "tags": ["TensorFlow Serving"],
                "responses": {"200": json_response(ref("ModelStatus"), "Version states."), **_LOOKUP_ERRORS},
            },
        }
        paths[base + "/metadata"] = {
            **common,
            "get": {
                "operationId": "v1Metadata" + _tag(suffix),
                "summary": f"Signatures of {which}",
                "tags": ["TensorFlow Serving"],
                "responses": {"200": json_response(ref("ModelMetadata"), "Signatures."), **_LOOKUP_ERRORS},
            },
        }
        for verb, request, response in (
            ("predict", "PredictRequest", "PredictResponse"),
            ("classify", "ExamplesRequest", "ClassifyResponse"),
            ("regress", "ExamplesRequest", "RegressResponse"),
        ):
            paths[f"{base}:{verb}"] = {
                **common,
                "post": {
                    "operationId": f"v1{verb.title()}{_tag(suffix)}",
                    "summary": f":{verb} with {which}",
                    "tags": ["TensorFlow Serving"],
                    "requestBody": _request(request),
                    "responses": {
                        "200": json_response(
                            ref(response), "The model's answer.", headers=_MODEL_VERSION_HEADER
                        ),
                        **_INFER_ERRORS,
                    },
                },
            }
        paths.update(_quality_paths(base, common, "v1", _tag(suffix), which, head=False))
    return paths


def _quality_paths(
    base: str, common: dict[str, Any], prefix: str, tag: str, which: str, head: bool
) -> dict[str, Any]:
    """Feedback (true labels for answered requests) and the quality report (server/monitor.py)."""
    feedback = base + (":feedback" if prefix == "v1" else "/feedback")
    report = {
        "operationId": f"{prefix}Quality{tag}",
        "summary": f"Drift, live accuracy and the confusion matrix of {which}",
        "tags": ["Model quality"],
        "responses": {"200": json_response(ref("QualityReport"), "Quality per version."), **_LOOKUP_ERRORS},
    }
    return {
        feedback: {
            **common,
            "post": {
                "operationId": f"{prefix}Feedback{tag}",
                "summary": f"True labels for requests answered by {which}",
                "tags": ["Model quality"],
                "requestBody": _request("FeedbackRequest"),
                "responses": {
                    "200": json_response(ref("FeedbackResponse"), "The labels taken."),
                    "400": _ERROR,
                    "404": _ERROR,
                    "413": _ERROR,
                },
            },
        },
        base + "/quality": {**common, **(_get(report) if head else {"get": report})},
    }


def _tag(suffix: str) -> str:
    return "" if not suffix else ("ByVersion" if "versions" in suffix else "ByLabel")


def _request(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": "JSON; `Content-Encoding: gzip` is accepted.",
        "content": {"application/json": {"schema": ref(schema)}},
    }


def _empty(description: str) -> dict[str, Any]:
    return {"description": description}


def _get(operation: dict[str, Any]) -> dict[str, Any]:
    """GET, and HEAD answering the same status with no body."""
    head = {
        **operation,
        "operationId": operation["operationId"] + "Head",
        "responses": {code: _empty(r.get("description", "")) for code, r in operation["responses"].items()},
    }
    return {"get": operation, "head": head}


def _v2_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v2": _get(
            {
                "operationId": "v2ServerMetadata",
                "tags": ["Open Inference Protocol v2"],
                "responses": {"200": json_response(ref("V2ServerMetadata"), "Server metadata.")},
            }
        ),
        "/v2/health/live": _get(
            {
                "operationId": "v2Live",
                "tags": ["Open Inference Protocol v2"],
                "responses": {"200": _empty("Alive (no body).")},
            }
        ),
        "/v2/health/ready": _get(
            {
                "operationId": "v2Ready",
                "tags": ["Open Inference Protocol v2"],
                "responses": {"200": _empty("Every model ready."), "400": _empty("Not ready.")},
            }
        ),
    }
    binary = {
        "application/octet-stream": {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "JSON of Inference-Header-Content-Length bytes, then raw tensor data.",
            }
        }
    }
    for suffix, params in _V2_SPECS:
        base = "/v2/models/{model_name}" + suffix
        common = {"parameters": _parameters(["v2_model_name", *params])}
        name = "ByVersion" if params else ""
        paths[base] = {
            **common,
            **_get(
                {
                    "operationId": "v2ModelMetadata" + name,
                    "tags": ["Open Inference Protocol v2"],
                    "responses": {
                        "200": json_response(ref("V2ModelMetadata"), "Model metadata."),
                        **_LOOKUP_ERRORS,
                    },
                }
            ),
        }
        paths[base + "/ready"] = {
            **common,
            **_get(
                {
                    "operationId": "v2ModelReady" + name,
                    "tags": ["Open Inference Protocol v2"],
                    "responses": {
                        "200": _empty("Ready (no body)."),
                        "400": json_response(ref("Error"), "Not ready, or a malformed version: why."),
                    },
                }
            ),
        }
        paths[base + "/infer"] = {
            **common,
            "post": {
                "operationId": "v2Infer" + name,
                "tags": ["Open Inference Protocol v2"],
                "parameters": _parameters(["header_length"]),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("V2InferRequest")}, **binary},
                },
                "responses": {
                    "200": {
                        "description": "Outputs; with binary outputs, the JSON part then their bytes.",
                        "headers": {
                            "Inference-Header-Content-Length": {
                                "description": "Length of the JSON part, when binary outputs follow.",
                                "schema": {"type": "integer"},
                            },
                            **_MODEL_VERSION_HEADER,
                        },
                        "content": {"application/json": {"schema": ref("V2InferResponse")}, **binary},
                    },
                    **_INFER_ERRORS,
                },
            },
        }
        paths.update(_quality_paths(base, common, "v2", name, "the model", head=True))
    return paths


def _plain_paths() -> dict[str, Any]:
    return {
        "/healthz": _get(
            {
                "operationId": "healthz",
                "tags": ["Health"],
                "responses": {
                    "200": json_response(
                        obj({"status": {"type": "string", "enum": ["ok"]}}, ["status"]), "Alive."
                    )
                },
            }
        ),
        "/readyz": _get(
            {
                "operationId": "readyz",
                "tags": ["Health"],
                "responses": {
                    "200": json_response(
                        ref("Readiness"), "Every configured model has an available version."
                    ),
                    "503": json_response(ref("Readiness"), "Not ready, with each model's reason."),
                },
            }
        ),
        "/metrics": _get(
            {
                "operationId": "metrics",
                "tags": ["Health"],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                    }
                },
            }
        ),
        "/openapi.json": _get(
            {
                "operationId": "openapi",
                "tags": ["Health"],
                "responses": {"200": json_response({"type": "object"}, "This document.")},
            }
        ),
    }


_DESCRIPTION = """\
modelport's model server: TensorFlow Serving's REST API (v1) and the Open Inference Protocol v2.

Paths match TF Serving's: case-insensitive verbs, an optional trailing slash. A method a path does
not take is a 404 (`Malformed request`), as in TF Serving. Errors are `{"error": "message"}`.
A request body over `--max_request_bytes` is a 413; one over `--rest_api_timeout_in_ms` a 504.

Before any route, the connection layer may answer any request in text/plain and close: 431 for a
header block over 64 KiB, 408 for headers or a body that do not arrive in time
(`--header_timeout_seconds`, `--body_timeout_seconds`), 503 with `Retry-After: 1` beyond
`--max_connections` (health routes are still answered), 400 for bytes that are not HTTP."""


# Answered without a key when keys are required (server/guard.py's table).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/openapi.json"})
_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}


def _require_keys(paths: dict[str, Any]) -> None:
    """Every operation but health and this document: a key (either header), and the refusals."""
    for path, item in paths.items():
        if path in OPEN_PATHS:
            continue
        for method in ("get", "post"):
            if method in item:
                item[method]["security"] = [{"bearer": []}, {"apiKey": []}]
                item[method]["responses"].update({"401": _ERROR, "403": _ERROR, "429": _ERROR})


def document(enable_cors: bool = False, api_keys: bool = False) -> dict[str, Any]:
    """The whole document. With CORS on, every /v1 path also answers OPTIONS (a preflight); with
    `api_keys`, every operation but health says it needs a key and may answer 401, 403, 429."""
    paths = {**_v1_paths(), **_v2_paths(), **_plain_paths()}
    if api_keys:
        _require_keys(paths)
    if enable_cors:
        for path, item in paths.items():
            if path.startswith("/v1/"):
                operation = next(op for m, op in item.items() if m in ("get", "post"))
                item["options"] = {
                    "operationId": operation["operationId"] + "Preflight",
                    "tags": ["TensorFlow Serving"],
                    "responses": {"200": _empty("CORS preflight (no body).")},
                }
    return {
        "openapi": "3.0.3",
        "info": {"title": "modelport model server", "version": __version__, "description": _DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "parameters": PARAMETERS,
            "responses": {"Error": json_response(ref("Error"), "An error, named.")},
            **({"securitySchemes": _SECURITY_SCHEMES} if api_keys else {}),
        },
    }
