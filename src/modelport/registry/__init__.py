"""The model registry (`registry.py`) and the store behind it (`store.py`)."""

from modelport.registry.registry import (
    REGISTRY_SCHEME,
    Registry,
    manifest,
    manifest_sha256,
    resolve_base_path,
)

__all__ = ["REGISTRY_SCHEME", "Registry", "manifest", "manifest_sha256", "resolve_base_path"]
