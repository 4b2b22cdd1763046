"""One error type for the whole project, carrying a canonical status code.

Every layer raises `ModelportError(Code.X, "message that names the thing")`; each transport maps
the code once (HTTP status for REST, gRPC status for gRPC). The codes and their HTTP mapping are
TensorFlow Serving's (`http_server.cc`), so a TF Serving client sees the status it expects.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """Canonical status codes (the gRPC / absl set) with the HTTP status TF Serving answers."""

    INVALID_ARGUMENT = 400
    FAILED_PRECONDITION = 400
    OUT_OF_RANGE = 400
    UNAUTHENTICATED = 401
    PERMISSION_DENIED = 403
    NOT_FOUND = 404
    ALREADY_EXISTS = 409
    ABORTED = 409
    PAYLOAD_TOO_LARGE = 413
    UNSUPPORTED_MEDIA_TYPE = 415
    RESOURCE_EXHAUSTED = 429
    CANCELLED = 499
    UNKNOWN = 500
    INTERNAL = 500
    DATA_LOSS = 500
    UNIMPLEMENTED = 501
    UNAVAILABLE = 503
    DEADLINE_EXCEEDED = 504

    # Several codes share an HTTP status; enum aliasing would merge them, so each member's
    # value is made unique by _missing_-free construction below.
    def __new__(cls, http_status: int) -> Code:
        obj = object.__new__(cls)
        obj._value_ = f"{len(cls.__members__)}:{http_status}"
        obj.http_status = http_status
        return obj

    http_status: int


class ModelportError(Exception):
    """The root error: a status code and a message that names the field, model or value at fault."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return self.code.http_status

    def __repr__(self) -> str:
        return f"ModelportError({self.code.name}, {self.message!r})"


def invalid(message: str) -> ModelportError:
    return ModelportError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ModelportError:
    return ModelportError(Code.NOT_FOUND, message)


def deadline_exceeded(model: str, version: int, seconds: float) -> ModelportError:
    return ModelportError(
        Code.DEADLINE_EXCEEDED,
        f"request to model '{model}' version {version} took longer than the {seconds:g} s timeout",
    )
