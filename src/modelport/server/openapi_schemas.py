"""The OpenAPI document's parameters and schemas (openapi.py puts them into paths): the
request and answer bodies of TF Serving's REST API, the Open Inference Protocol v2 and the health
routes, as the server writes and reads them (tfserving.py, v2.py, app.py)."""

from __future__ import annotations

from typing import Any

_STATES = ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]
_V2_DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip


def obj(properties: dict[str, Any], required: list[str] | None = None, **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **more}
    if required:
        schema["required"] = required
    return schema


def json_response(schema: dict[str, Any], description: str, **more: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **more}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


PARAMETERS: dict[str, dict[str, Any]] = {
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

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": obj({"error": {"type": "string", "minLength": 1}}, ["error"]),
    "FeedbackRequest": obj(
        {
            "feedback": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10000,
                "items": obj(
                    {
                        "request_id": {"type": "string", "description": "An answer's x-request-id."},
                        "label": {
                            "oneOf": [{"type": "integer"}, {"type": "string"}],
                            "description": "The true class of a one-row request: its index or name.",
                        },
                        "labels": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                            "description": "The true class of each row of the request.",
                        },
                    },
                    ["request_id"],
                ),
            }
        },
        ["feedback"],
    ),
    "FeedbackResponse": obj(
        {
            "accepted": {"type": "integer", "description": "Rows whose true label was taken."},
            "versions": {
                "type": "object",
                "additionalProperties": obj(
                    {"live_accuracy": {"type": "number", "nullable": True}, "feedback": {"type": "integer"}}
                ),
            },
        },
        ["accepted", "versions"],
    ),
    "QualityReport": obj(
        {
            "model": {"type": "string"},
            "versions": {
                "type": "array",
                "items": obj(
                    {
                        "version": {"type": "string"},
                        "answered_rows": {"type": "integer"},
                        "published_accuracy": {"type": "number", "nullable": True},
                        "live": {
                            **obj({"accuracy": {"type": "number", "nullable": True}}),
                            "nullable": True,
                            "description": "Over the sliding window of feedback: accuracy, per_class "
                            "precision and recall, confusion_matrix [true][answered].",
                        },
                        "drift": {
                            **obj({"scores": {"type": "object"}, "thresholds": {"type": "object"}}),
                            "nullable": True,
                            "description": "Jensen-Shannon distance of the window from the reference "
                            "profile, per kind (input, prediction); null without a profile.",
                        },
                        "prediction_log": {"type": "object", "nullable": True},
                    },
                    ["version", "answered_rows", "published_accuracy", "live", "drift", "prediction_log"],
                ),
            },
        },
        ["model", "versions"],
    ),
    "PredictRequest": {
        **obj(
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
            obj({"predictions": {"type": "array"}}, ["predictions"], additionalProperties=False),
            obj({"outputs": _ANY}, ["outputs"], additionalProperties=False),
        ]
    },
    "ExamplesRequest": obj(
        {
            "signature_name": {"type": "string"},
            "context": {"type": "object", "description": "Features every example shares."},
            "examples": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        },
        ["examples"],
    ),
    "ClassifyResponse": obj(
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
    "RegressResponse": obj({"results": {"type": "array", "items": {"type": "number"}}}, ["results"]),
    "ModelStatus": obj(
        {
            "model_version_status": {
                "type": "array",
                "items": obj(
                    {
                        "version": {"type": "string"},
                        "state": {"type": "string", "enum": _STATES},
                        "status": obj(
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
    "TensorInfo": obj(
        {
            "dtype": {"type": "string"},
            "name": {"type": "string"},
            "tensor_shape": obj(
                {
                    "dim": {
                        "type": "array",
                        "items": obj({"size": {"type": "string"}, "name": {"type": "string"}}),
                    },
                    "unknown_rank": {"type": "boolean"},
                }
            ),
        },
        ["dtype", "tensor_shape"],
    ),
    "SignatureDef": obj(
        {
            "inputs": {"type": "object", "additionalProperties": ref("TensorInfo")},
            "outputs": {"type": "object", "additionalProperties": ref("TensorInfo")},
            "method_name": {"type": "string"},
            "defaults": {"type": "object"},
        },
        ["inputs", "outputs", "method_name"],
    ),
    "ModelMetadata": obj(
        {
            "model_spec": obj(
                {
                    "name": {"type": "string"},
                    "signature_name": {"type": "string"},
                    "version": {"type": "string"},
                },
                ["name", "version"],
            ),
            "metadata": obj(
                {
                    "signature_def": obj(
                        {"signature_def": {"type": "object", "additionalProperties": ref("SignatureDef")}},
                        ["signature_def"],
                    ),
                    "modelport": obj(
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
    "V2Tensor": obj(
        {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": _V2_DATATYPES},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 64},
            "parameters": obj(
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
    "V2InferRequest": obj(
        {
            "id": {"type": "string"},
            "parameters": obj(
                {"binary_data_output": {"type": "boolean", "description": "Every output as binary."}}
            ),
            "inputs": {"type": "array", "minItems": 1, "items": ref("V2Tensor")},
            "outputs": {
                "type": "array",
                "items": obj(
                    {
                        "name": {"type": "string"},
                        "parameters": obj({"binary_data": {"type": "boolean"}}),
                    },
                    ["name"],
                ),
            },
        },
        ["inputs"],
    ),
    "V2InferResponse": obj(
        {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": ref("V2Tensor")},
        },
        ["model_name", "model_version", "outputs"],
    ),
    "V2TensorMetadata": obj(
        {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
        ["name", "datatype", "shape"],
    ),
    "V2ModelMetadata": obj(
        {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": ref("V2TensorMetadata")},
            "outputs": {"type": "array", "items": ref("V2TensorMetadata")},
        },
        ["name", "platform", "inputs", "outputs"],
    ),
    "V2ServerMetadata": obj(
        {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
        ["name", "version", "extensions"],
    ),
    "Readiness": obj(
        {
            "ready": {"type": "boolean"},
            "version": {"type": "string"},
            "workers": {"type": "integer", "description": "With --workers: how many serve this port."},
            "workers_ready": {"type": "integer", "description": "With --workers: how many are ready."},
            "models": {
                "type": "object",
                "additionalProperties": obj(
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
