"""One error type for the whole project, carrying a canonical status code.

Every layer raises `ModelportError(Code.X, "message that names the thing")`; each transport maps
the code once (HTTP status for REST, gRPC status for gRPC). The codes and their HTTP mapping are
TensorFlow Serving's (`http_server.cc`), so a TF Serving client sees the status it expects. The
control plane's API also names each code with a Kubernetes `Status` reason (`REASONS`), and its
client reads the reason back into the code.
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
    # Not a canonical code: the gateway's answer when the model service it fronts answered with
    # something it cannot use (an error, or a body that is not JSON).
    BAD_GATEWAY = 502

    # Several codes share an HTTP status (INVALID_ARGUMENT, FAILED_PRECONDITION and OUT_OF_RANGE
    # are all 400). Members with equal values would be aliases of the first one:
    # `Code.FAILED_PRECONDITION is Code.INVALID_ARGUMENT`, with name INVALID_ARGUMENT. So each
    # member's value is its position and status ("0:400", "1:400", ...), always distinct, and the
    # status is kept apart in `http_status`. (`Code(400)` therefore finds nothing; nothing asks.)
    def __new__(cls, http_status: int) -> Code:
        obj = object.__new__(cls)
        obj._value_ = f"{len(cls.__members__)}:{http_status}"
        obj.http_status = http_status
        return obj

    http_status: int

    @property
    def reason(self) -> str:
        """Kubernetes' `Status.reason` for this code (`REASONS`); InternalError when it has none."""
        return REASONS.get(self, "InternalError")


# Kubernetes' `Status.reason` for each code (metav1.StatusReason), as the control plane's API
# answers and as the CLI prints it: `Error from server (NotFound): deployments "x" not found`.
# A code not listed is an InternalError.
REASONS = {
    Code.NOT_FOUND: "NotFound",
    Code.ALREADY_EXISTS: "AlreadyExists",
    Code.ABORTED: "Conflict",
    Code.INVALID_ARGUMENT: "Invalid",
    Code.UNAUTHENTICATED: "Unauthorized",
    Code.PERMISSION_DENIED: "Forbidden",
    Code.FAILED_PRECONDITION: "BadRequest",
    Code.UNIMPLEMENTED: "MethodNotAllowed",
    Code.UNAVAILABLE: "Unavailable",
}
_CODES = {reason: code for code, reason in REASONS.items()}


def code_of(reason: str) -> Code:
    """The inverse of `Code.reason`: a Status reason read back; one we do not know is INTERNAL."""
    return _CODES.get(reason, Code.INTERNAL)


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
