"""TF Serving's model config (`--model_config_file`): its protobuf text format, or YAML of the
same content, parsed once into frozen dataclasses.

Both formats become the same plain dict first; one validator then checks it and names every
problem with its field path (`model_config_list.config[1].name: required`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from modelport.errors import Code, ModelportError

PLATFORMS = ("", "onnx", "sklearn", "tensorflow")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LABEL = re.compile(r"[A-Za-z0-9_-]+")
_TRANSITIONS = {
    "availability_preserving": "availability_preserving",
    "availability": "availability_preserving",
    "resource_preserving": "resource_preserving",
    "resource": "resource_preserving",
}


@dataclass(frozen=True)
class VersionPolicy:
    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: str
    model_platform: str = ""
    version_policy: VersionPolicy = VersionPolicy()
    version_labels: tuple[tuple[str, int], ...] = ()
    transition: Literal["availability_preserving", "resource_preserving"] = "availability_preserving"
    runtime_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ModelServerConfig:
    models: tuple[ModelConfig, ...]


def single_model_config(name: str, base_path: str, platform: str = "") -> ModelServerConfig:
    """What `--model_name` and `--model_base_path` mean."""
    return _validated({"model_config_list": {"config": [
        {"name": name, "base_path": base_path, "model_platform": platform}
    ]}}, "--model_name/--model_base_path")  # fmt: skip


# -- text format --

_TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|(?P<word>[A-Za-z0-9_.+-]+)|(?P<punct>[{}<>:;,\[\]])"""
)
_CLOSE = {"{": "}", "<": ">"}


def _tokens(text: str, source: str) -> list[tuple[str, str, int]]:
    """(kind, value, line) triples; kind is str | word | punct."""
    out: list[tuple[str, str, int]] = []
    pos, line = 0, 1
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ModelportError(Code.INVALID_ARGUMENT, f"{source}:{line}: unexpected {text[pos]!r}")
        kind = match.lastgroup
        if kind == "str":
            raw = match.group()[1:-1]
            out.append(("str", raw.encode("latin-1", "backslashreplace").decode("unicode_escape"), line))
        elif kind is not None:
            out.append((kind, match.group(), line))
        line += match.group().count("\n")
        pos = match.end()
    return out


class _TextParser:
    def __init__(self, text: str, source: str) -> None:
        self.tokens = _tokens(text, source)
        self.pos = 0
        self.source = source

    def error(self, message: str) -> ModelportError:
        line = self.tokens[min(self.pos, len(self.tokens) - 1)][2] if self.tokens else 1
        return ModelportError(Code.INVALID_ARGUMENT, f"{self.source}:{line}: {message}")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise self.error("unexpected end of file")
        self.pos += 1
        return token

    def message(self, close: str | None) -> dict[str, Any]:
        """Fields until `close` (or the end): repeated fields become lists."""
        fields: dict[str, Any] = {}
        while (token := self.peek()) is not None and token[1] != close:
            kind, name, _ = self.take()
            if kind != "word":
                raise self.error(f"expected a field name, got {name!r}")
            nxt = self.peek()
            if nxt is not None and nxt[1] == ":":
                self.take()
                nxt = self.peek()
            if nxt is not None and nxt[1] in _CLOSE:
                opener = self.take()[1]
                value: Any = self.message(_CLOSE[opener])
                self.take()
            else:
                kind, raw, _ = self.take()
                if kind == "punct":
                    raise self.error(f"expected a value for '{name}', got {raw!r}")
                value = int(raw) if kind == "word" and re.fullmatch(r"[+-]?\d+", raw) else raw
                while kind == "str" and (more := self.peek()) is not None and more[0] == "str":
                    value += self.take()[1]  # "a" "b" is "ab", as in protobuf's text format
            fields.setdefault(name, []).append(value)
            if (sep := self.peek()) is not None and sep[1] in ",;":
                self.take()
        if close is not None and self.peek() is None:
            raise self.error(f"expected '{close}' before the end of file")
        return fields


def _unlist(value: Any, repeated: frozenset[str]) -> Any:
    """Text format yields lists for every field; keep lists only for repeated ones."""
    if isinstance(value, dict):
        return {k: [_unlist(x, repeated) for x in v] if k in repeated else _unlist(v[-1], repeated)
                for k, v in value.items()}  # fmt: skip
    return value


def parse_text_config(text: str, source: str = "<config>") -> ModelServerConfig:
    raw = _TextParser(text, source).message(None)
    repeated = frozenset({"config", "versions", "version_labels"})
    doc = _unlist(raw, repeated)
    for model in (doc.get("model_config_list") or {}).get("config", []):
        if isinstance(model, dict) and isinstance(model.get("version_labels"), list):
            model["version_labels"] = [
                {"key": item.get("key"), "value": item.get("value")} if isinstance(item, dict) else item
                for item in model["version_labels"]
            ]
    return _validated(doc, source)


# -- YAML --


def parse_yaml_config(text: str, source: str = "<config>") -> ModelServerConfig:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelportError(Code.INVALID_ARGUMENT, f"{source}: not valid YAML: {exc}") from exc
    return _validated(doc, source)


def parse_model_config(text: str, source: str = "<config>") -> ModelServerConfig:
    """Text format if it starts `model_config_list {` (or `<`); YAML otherwise."""
    body = re.sub(r"#[^\n]*", "", text)
    if re.match(r"\s*model_config_list\s*:?\s*[{<]", body):
        return parse_text_config(text, source)
    return parse_yaml_config(text, source)


def load_model_config_file(path: str | os.PathLike[str]) -> ModelServerConfig:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelportError(
            Code.INVALID_ARGUMENT, f"cannot read model config {file}: {exc.strerror}"
        ) from exc
    config = parse_model_config(text, str(file))
    base = file.resolve().parent

    def located(path: str) -> str:  # a URI (registry://...) stays as it is
        return path if "://" in path else str(base / path)

    return ModelServerConfig(tuple(
        ModelConfig(**{**m.__dict__, "base_path": located(m.base_path)}) for m in config.models
    ))  # fmt: skip


# -- one validator for both formats --


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, rule: str) -> None:
        self.items.append(f"{path}: {rule}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _policy(raw: Any, path: str, problems: _Problems) -> VersionPolicy:
    if raw is None:
        return VersionPolicy()
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("latest", "all", "specific"):
        problems.add(path, "must have exactly one of latest, all, specific")
        return VersionPolicy()
    kind, body = next(iter(raw.items()))
    body = body or {}
    if kind == "all":
        return VersionPolicy("all")
    if kind == "latest":
        n = body.get("num_versions", 1) if isinstance(body, dict) else body
        if not _is_int(n) or n < 1:
            problems.add(f"{path}.latest.num_versions", f"must be >= 1, got {n!r}")
            return VersionPolicy()
        return VersionPolicy("latest", num_versions=n)
    versions = body.get("versions") if isinstance(body, dict) else None
    versions = versions if isinstance(versions, list) else [versions]
    if versions == [None] or not all(_is_int(v) and v > 0 for v in versions):
        problems.add(f"{path}.specific.versions", f"must be positive integers, got {versions!r}")
        return VersionPolicy()
    return VersionPolicy("specific", versions=tuple(sorted(set(versions))))


def _labels(raw: Any, path: str, problems: _Problems) -> tuple[tuple[str, int], ...]:
    if raw is None:
        return ()
    pairs: list[tuple[Any, Any]] = list(raw.items()) if isinstance(raw, dict) else [
        (i.get("key"), i.get("value")) if isinstance(i, dict) else (None, None) for i in raw
    ]  # fmt: skip
    labels: dict[str, int] = {}
    for key, value in pairs:
        if not isinstance(key, str) or not _LABEL.fullmatch(key):
            problems.add(path, f"label {key!r} must match [A-Za-z0-9_-]+")
        elif key in labels:
            problems.add(path, f"label '{key}' is given twice")
        elif not _is_int(value) or value < 1:
            problems.add(f"{path}.{key}", f"must be a positive version number, got {value!r}")
        else:
            labels[key] = value
    return tuple(sorted(labels.items()))


_MODEL_KEYS = frozenset({
    "name", "base_path", "model_platform", "model_version_policy", "version_policy",
    "version_labels", "transition", "runtime_options",
})  # fmt: skip


def _model(raw: Any, path: str, problems: _Problems) -> ModelConfig | None:
    if not isinstance(raw, dict):
        problems.add(path, "must be a mapping")
        return None
    for key in sorted(set(raw) - _MODEL_KEYS):
        problems.add(f"{path}.{key}", "unknown field")
    name, base = raw.get("name"), raw.get("base_path")
    if not isinstance(name, str) or not name:
        problems.add(f"{path}.name", "required")
    elif not _NAME.fullmatch(name):
        problems.add(f"{path}.name", f"{name!r} must match [A-Za-z0-9][A-Za-z0-9._-]*")
    if not isinstance(base, str) or not base:
        problems.add(f"{path}.base_path", "required")
    platform = str(raw.get("model_platform") or "").lower()
    if platform not in PLATFORMS:
        problems.add(f"{path}.model_platform", f"{platform!r} is not one of onnx, sklearn, tensorflow")
    policy_key = "model_version_policy" if "model_version_policy" in raw else "version_policy"
    policy = _policy(raw.get(policy_key), f"{path}.{policy_key}", problems)
    labels = _labels(raw.get("version_labels"), f"{path}.version_labels", problems)
    if policy.kind == "specific":
        for label, version in labels:
            if version not in policy.versions:
                problems.add(
                    f"{path}.version_labels.{label}", f"version {version} is not in the specific policy"
                )
    transition = _TRANSITIONS.get(str(raw.get("transition", "availability_preserving")))
    if transition is None:
        problems.add(f"{path}.transition", "must be availability_preserving or resource_preserving")
    options = raw.get("runtime_options") or {}
    if not isinstance(options, dict):
        problems.add(f"{path}.runtime_options", "must be a mapping")
    if problems.items:
        return None
    return ModelConfig(name, base, platform, policy, labels, transition, MappingProxyType(dict(options)))  # type: ignore[arg-type]


def _validated(doc: Any, source: str) -> ModelServerConfig:
    problems = _Problems()
    if not isinstance(doc, dict) or set(doc) != {"model_config_list"}:
        extra = sorted(set(doc) - {"model_config_list"}) if isinstance(doc, dict) else []
        what = f"unknown top-level keys {extra}" if extra else "must be model_config_list with config entries"
        raise ModelportError(Code.INVALID_ARGUMENT, f"{source}: {what}")
    listing = doc["model_config_list"] or {}
    configs = listing.get("config") if isinstance(listing, dict) else None
    if isinstance(configs, dict):
        configs = [configs]
    if not configs:
        raise ModelportError(
            Code.INVALID_ARGUMENT, f"{source}: model_config_list.config: at least one model is required"
        )
    models: list[ModelConfig] = []
    seen: set[str] = set()
    for i, raw in enumerate(configs):
        path = f"model_config_list.config[{i}]"
        sub = _Problems()  # per model: _model returns None when its own fields have problems
        model = _model(raw, path, sub)
        problems.items.extend(sub.items)
        if model is None:
            continue
        if model.name in seen:
            problems.add(f"{path}.name", f"'{model.name}' is used by another model")
        seen.add(model.name)
        models.append(model)
    if problems.items:
        raise ModelportError(Code.INVALID_ARGUMENT, f"{source}: " + "; ".join(problems.items))
    return ModelServerConfig(tuple(models))
