"""The REST API as an OpenAPI 3.0 document, served at `GET /openapi.json`: what clients,
generators and fuzzers read. Tests keep it true (tests/server/test_openapi.py): it validates,
every route the server answers is in it and nothing else, and schemathesis checks the server's
answers against it.

Built once from tables, so the 15 TF Serving paths (3 ways to name a version x status,
metadata, :predict, :classify, :regress) and the v2 ones cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from modelport import __version__

_ERROR = {"$ref": "#/components/responses/Error"}
_STATES = ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]
_V2_DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip

# The three ways TF Serving names a version: (path suffix, its parameters, how it reads).
_V1_SPECS: list[tuple[str, list[str], str]] = [
    ("", [], "the latest available version"),
    ("/versions/{version}", ["version"], "version {version}"),
    ("/labels/{label}", ["label"], "the version labelled {label}"),
]
_V2_SPECS: list[tuple[str, list[str]]] = [("", []), ("/versions/{model_version}", ["model_version"])]


def _obj(properties: dict[str, Any], required: list[str] | None = None, **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **more}
    if required:
        schema["required"] = required
    return schema


def _json(schema: dict[str, Any], description: str, **more: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **more}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_PARAMETERS: dict[str, dict[str, Any]] = {
    "model_name": {
        "name": "model_name",
        "in": "path",
        "required": True,
        "description": "The model's name, as configured (TF Serving paths: no `/` or `:`).",
        "schema": {"type": "string", "pattern": "^[^/:]+$"},
    },
    "v2_model_name": {
        "name": "model_name",
        "in": "path",
        "required": True,
        "description": "The model's name, as configured.",
        "schema": {"type": "string", "pattern": "^[^/]+$"},
    },
    "version": {
        "name": "version",
        "in": "path",
        "required": True,
        "description": "A version number; 0 or less is a 400.",
        "schema": {"type": "integer"},
    },
    "label": {
        "name": "label",
        "in": "path",
        "required": True,
        "description": "A version label (`version_labels` in the model config).",
        "schema": {"type": "string", "pattern": "^[^/:]+$"},
    },
    "model_version": {
        "name": "model_version",
        "in": "path",
        "required": True,
        "description": "A version number (positive; anything else is a 400).",
        "schema": {"type": "string", "pattern": "^[^/]+$"},
    },
    "header_length": {
        "name": "Inference-Header-Content-Length",
        "in": "header",
        "required": False,
        "description": (
            "The binary tensor data extension: the body is this many bytes of JSON, then each "
            "input's raw bytes in the order the inputs are listed, `parameters.binary_data_size` "
            "bytes each (little-endian, row-major; a BYTES element is a 4-byte little-endian "
            "length and its bytes)."
        ),
        "schema": {"type": "integer", "minimum": 0},
    },
}

_ANY: dict[str, Any] = {}  # any JSON value: a tensor as nested lists, a number, a string, an object

_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj({"error": {"type": "string", "minLength": 1}}, ["error"]),
    "PredictRequest": {
        **_obj(
            {
                "signature_name": {"type": "string"},
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "description": "Row format: one entry per example (an object of named inputs, or "
                    'the value of the only input). Binary values are {"b64": ...}.',
                },
                "inputs": {"description": "Columnar format: one tensor, or an object of named tensors."},
            }
        ),
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
    },
    "PredictResponse": {
        "oneOf": [
            _obj({"predictions": {"type": "array"}}, ["predictions"], additionalProperties=False),
            _obj({"outputs": _ANY}, ["outputs"], additionalProperties=False),
        ]
    },
    "ExamplesRequest": _obj(
        {
            "signature_name": {"type": "string"},
            "context": {"type": "object", "description": "Features every example shares."},
            "examples": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        },
        ["examples"],
    ),
    "ClassifyResponse": _obj(
        {
            "results": {
                "type": "array",
                "description": "Per example, [label, score] per class.",
                "items": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 2,
                        "items": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                    },
                },
            }
        },
        ["results"],
    ),
    "RegressResponse": _obj({"results": {"type": "array", "items": {"type": "number"}}}, ["results"]),
    "ModelStatus": _obj(
        {
            "model_version_status": {
                "type": "array",
                "items": _obj(
                    {
                        "version": {"type": "string"},
                        "state": {"type": "string", "enum": _STATES},
                        "status": _obj(
                            {"error_code": {"type": "string"}, "error_message": {"type": "string"}},
                            ["error_code", "error_message"],
                        ),
                    },
                    ["version", "state", "status"],
                ),
            }
        },
        ["model_version_status"],
    ),
    "TensorInfo": _obj(
        {
            "dtype": {"type": "string"},
            "name": {"type": "string"},
            "tensor_shape": _obj(
                {
                    "dim": {
                        "type": "array",
                        "items": _obj({"size": {"type": "string"}, "name": {"type": "string"}}),
                    },
                    "unknown_rank": {"type": "boolean"},
                }
            ),
        },
        ["dtype", "tensor_shape"],
    ),
    "SignatureDef": _obj(
        {
            "inputs": {"type": "object", "additionalProperties": _ref("TensorInfo")},
            "outputs": {"type": "object", "additionalProperties": _ref("TensorInfo")},
            "method_name": {"type": "string"},
            "defaults": {"type": "object"},
        },
        ["inputs", "outputs", "method_name"],
    ),
    "ModelMetadata": _obj(
        {
            "model_spec": _obj(
                {
                    "name": {"type": "string"},
                    "signature_name": {"type": "string"},
                    "version": {"type": "string"},
                },
                ["name", "version"],
            ),
            "metadata": _obj(
                {
                    "signature_def": _obj(
                        {"signature_def": {"type": "object", "additionalProperties": _ref("SignatureDef")}},
                        ["signature_def"],
                    ),
                    "modelport": _obj(
                        {
                            "platform": {"type": "string"},
                            "labels": {
                                "type": "object",
                                "description": "Class names per signature, or null.",
                                "additionalProperties": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "nullable": True,
                                },
                            },
                            "images": {
                                "type": "object",
                                "description": "Image pre-processing per `signature.input`.",
                                "additionalProperties": {"type": "object"},
                            },
                        }
                    ),
                },
                ["signature_def"],
            ),
        },
        ["model_spec", "metadata"],
    ),
    "V2Tensor": _obj(
        {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": _V2_DATATYPES},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 64},
            "parameters": _obj(
                {
                    "binary_data_size": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Bytes of this tensor in the binary part of the body.",
                    }
                }
            ),
            "data": {"description": "The elements, flat or nested row-major; BYTES as strings."},
        },
        ["name", "datatype", "shape"],
    ),
    "V2InferRequest": _obj(
        {
            "id": {"type": "string"},
            "parameters": _obj(
                {"binary_data_output": {"type": "boolean", "description": "Every output as binary."}}
            ),
            "inputs": {"type": "array", "minItems": 1, "items": _ref("V2Tensor")},
            "outputs": {
                "type": "array",
                "items": _obj(
                    {
                        "name": {"type": "string"},
                        "parameters": _obj({"binary_data": {"type": "boolean"}}),
                    },
                    ["name"],
                ),
            },
        },
        ["inputs"],
    ),
    "V2InferResponse": _obj(
        {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _ref("V2Tensor")},
        },
        ["model_name", "model_version", "outputs"],
    ),
    "V2TensorMetadata": _obj(
        {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
        ["name", "datatype", "shape"],
    ),
    "V2ModelMetadata": _obj(
        {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("V2TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("V2TensorMetadata")},
        },
        ["name", "platform", "inputs", "outputs"],
    ),
    "V2ServerMetadata": _obj(
        {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
        ["name", "version", "extensions"],
    ),
    "Readiness": _obj(
        {
            "ready": {"type": "boolean"},
            "version": {"type": "string"},
            "models": {
                "type": "object",
                "additionalProperties": _obj(
                    {
                        "ready": {"type": "boolean"},
                        "available_versions": {"type": "array", "items": {"type": "integer"}},
                        "problem": {"type": "string"},
                        "failed_versions": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                    ["ready", "available_versions"],
                ),
            },
        },
        ["ready", "version", "models"],
    ),
}

_MODEL_VERSION_HEADER = {
    "X-Model-Version": {"description": "The version that answered.", "schema": {"type": "string"}}
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
                "responses": {"200": _json(_ref("ModelStatus"), "Version states."), **_LOOKUP_ERRORS},
            },
        }
        paths[base + "/metadata"] = {
            **common,
            "get": {
                "operationId": "v1Metadata" + _tag(suffix),
                "summary": f"Signatures of {which}",
                "tags": ["TensorFlow Serving"],
                "responses": {"200": _json(_ref("ModelMetadata"), "Signatures."), **_LOOKUP_ERRORS},
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
                        "200": _json(_ref(response), "The model's answer.", headers=_MODEL_VERSION_HEADER),
                        **_INFER_ERRORS,
                    },
                },
            }
    return paths


def _tag(suffix: str) -> str:
    return "" if not suffix else ("ByVersion" if "versions" in suffix else "ByLabel")


def _request(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": "JSON; `Content-Encoding: gzip` is accepted.",
        "content": {"application/json": {"schema": _ref(schema)}},
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
                "responses": {"200": _json(_ref("V2ServerMetadata"), "Server metadata.")},
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
                    "responses": {"200": _json(_ref("V2ModelMetadata"), "Model metadata."), **_LOOKUP_ERRORS},
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
                        "400": _json(_ref("Error"), "Not ready, or a malformed version: why."),
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
                    "content": {"application/json": {"schema": _ref("V2InferRequest")}, **binary},
                },
                "responses": {
                    "200": {
                        "description": "Outputs; with binary outputs, the JSON part then their bytes.",
                        "headers": {
                            "Inference-Header-Content-Length": {
                                "description": "Length of the JSON part, when binary outputs follow.",
                                "schema": {"type": "integer"},
                            }
                        },
                        "content": {"application/json": {"schema": _ref("V2InferResponse")}, **binary},
                    },
                    **_INFER_ERRORS,
                },
            },
        }
    return paths


def _plain_paths() -> dict[str, Any]:
    return {
        "/healthz": _get(
            {
                "operationId": "healthz",
                "tags": ["Health"],
                "responses": {
                    "200": _json(_obj({"status": {"type": "string", "enum": ["ok"]}}, ["status"]), "Alive.")
                },
            }
        ),
        "/readyz": _get(
            {
                "operationId": "readyz",
                "tags": ["Health"],
                "responses": {
                    "200": _json(_ref("Readiness"), "Every configured model has an available version."),
                    "503": _json(_ref("Readiness"), "Not ready, with each model's reason."),
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
                "responses": {"200": _json({"type": "object"}, "This document.")},
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


def document(enable_cors: bool = False) -> dict[str, Any]:
    """The whole document. With CORS on, every /v1 path also answers OPTIONS (a preflight)."""
    paths = {**_v1_paths(), **_v2_paths(), **_plain_paths()}
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
            "schemas": _SCHEMAS,
            "parameters": _PARAMETERS,
            "responses": {"Error": _json(_ref("Error"), "An error, named.")},
        },
    }
