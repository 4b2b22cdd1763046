"""The commands' side of the control plane's API: connect, name objects as kubectl does
(`deployment/mnist`, `deploy mnist`), report errors as kubectl does, update with retry.

Errors go to stderr as `Error from server (Reason): message` with exit code 1, the reason being
the one the API answered (see `modelport.errors.REASONS`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from modelport.controlplane.client import Client
from modelport.controlplane.meta import kind_of
from modelport.errors import Code, ModelportError

Obj = dict[str, Any]
namespace_option = click.option("--namespace", "-n", default="default", show_default=True)


def die(exc: ModelportError) -> NoReturn:
    click.echo(f"Error from server ({exc.code.reason}): {exc.message}", err=True)
    sys.exit(1)


@contextmanager
def reporting() -> Iterator[None]:
    try:
        yield
    except ModelportError as exc:
        die(exc)


def client() -> Client:
    return Client.from_home()


def split_ref(kind: str, name: str | None) -> tuple[str, str | None]:
    """`deployment/mnist`, or `deployment mnist`, or `deployment`."""
    if "/" in kind:
        kind, name = kind.split("/", 1)
    return kind_of(kind), name


def update_with_retry(
    api: Client, kind: str, name: str, namespace: str, change: Callable[[Obj], None]
) -> Obj:
    """Read, change, write back with the version read; on a conflict, read again (kubectl's way)."""
    for _ in range(10):
        obj = api.get(kind, name, namespace)
        change(obj)
        try:
            return api.replace(obj)
        except ModelportError as exc:
            if exc.code is not Code.ABORTED:
                raise
    raise ModelportError(
        Code.ABORTED, f"{kind.lower()}/{name}: kept conflicting with other writers; try again"
    )
