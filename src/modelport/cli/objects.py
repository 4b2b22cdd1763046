"""kubectl's verbs on objects against the local control plane: apply, get, describe, delete,
scale, set model. Output a script can rely on: `-o json|yaml` in Kubernetes' shapes, exit code 0 on
success and 1 on any error, errors on stderr as `Error from server (Reason): message`.

Each command fetches, then prints through the pure printers (`printers.py`, `describers.py`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from modelport.cli.api import client, namespace_option, reporting, split_ref, update_with_retry
from modelport.cli.describers import NEEDS, Related, describe
from modelport.cli.printers import as_list, dump, get_table, name_list
from modelport.controlplane.client import Client
from modelport.controlplane.meta import CHANGE_CAUSE, kind_of
from modelport.errors import Code, ModelportError

Obj = dict[str, Any]


# -- apply --


def load_files(paths: tuple[Path, ...]) -> list[Obj]:
    """Every object of every file (a folder's files that hold modelport/v1 objects; one given twice
    the same kept once), all validated before any is sent (an invalid one refuses all), with the
    spec's defaults filled in (metadata.namespace is always there: `default` if unsaid)."""
    from modelport.spec import read_objects, to_dict  # pydantic: only for the commands that read files

    return [to_dict(s.obj) for s in read_objects(paths)]


@click.command()
@click.option(
    "--filename",
    "-f",
    "files",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, exists=True),
    help="A YAML file (objects separated by ---) or a folder of them (its files without modelport/v1 "
    "objects passed over; an object two files carry alike applied once, differently: refused).",
)
def apply(files: tuple[Path, ...]) -> None:
    """Create the objects in FILE, or update them to match it."""
    with reporting():
        objects = load_files(files)
        api = client()
        for obj in objects:
            meta = obj["metadata"]
            ref = f"{obj['kind'].lower()}/{meta['name']}"
            try:
                current = api.get(obj["kind"], meta["name"], meta["namespace"])
            except ModelportError as exc:
                if exc.code is not Code.NOT_FOUND:
                    raise
                api.create(obj)
                click.echo(f"{ref} created")
                continue
            # The version read is sent back: if someone else changed it since, this one is refused.
            obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if obj["kind"] == "Service" and obj["spec"]["ports"][0]["port"] == 0:
                obj["spec"]["ports"][0]["port"] = current["spec"]["ports"][0]["port"]
            updated = api.replace(obj)
            same = updated["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
            click.echo(f"{ref} {'unchanged' if same else 'configured'}")


# -- get --


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("--output", "-o", type=click.Choice(["json", "yaml", "wide", "name"]), default=None)
@click.option("--watch", "-w", is_flag=True, help="After listing, print each change as it happens.")
@click.option(
    "--watch-timeout",
    type=float,
    default=None,
    hidden=True,
    help="Stop watching after this many idle seconds.",
)
@namespace_option
@click.option("--all-namespaces", "-A", is_flag=True)
def get(
    kind: str,
    name: str | None,
    output: str | None,
    watch: bool,
    watch_timeout: float | None,
    namespace: str,
    all_namespaces: bool,
) -> None:
    """Show objects: deployments, services, pods, replicasets, hpa, events (several: deploy,svc)."""
    with reporting():
        ns = None if all_namespaces else namespace
        if "," in kind and name is None and not watch and output in (None, "wide"):
            _get_kinds([kind_of(k) for k in kind.split(",")], ns, output == "wide")
            return
        kind, name = split_ref(kind, name)
        api = client()
        if name is not None:
            items = [api.get(kind, name, namespace)]
            since = items[0]["metadata"]["resourceVersion"]
        else:
            listed = api.list(kind, ns)
            items, since = listed["items"], listed["metadata"]["resourceVersion"]
        if output in ("json", "yaml"):
            click.echo(dump(items[0] if name is not None else as_list(items), output))
        elif output == "name":
            if items:
                click.echo(name_list(kind, items))
        elif items:
            click.echo(get_table(kind, items, time.time(), wide=output == "wide"))
        elif not watch:
            click.echo(f"No resources found in {ns or 'any'} namespace.", err=True)
        if watch:
            _watch(api, kind, ns, since, name, watch_timeout, output, headed=bool(items))


def _get_kinds(kinds: list[str], namespace: str | None, wide: bool) -> None:
    """`get deploy,svc`: a table per kind that has objects, a blank line between them."""
    api = client()
    for i, kind in enumerate(kinds):
        items = api.list(kind, namespace)["items"]
        if items:
            click.echo(("\n" if i else "") + get_table(kind, items, time.time(), wide))


def _watch(
    api: Client, kind: str, namespace: str | None, since: str, name: str | None,
    timeout: float | None, output: str | None, headed: bool,
) -> None:  # fmt: skip
    """`get -w`: each change as a row (headers first if the listing printed none), or a document."""
    for change in api.watch(kind, namespace, since, name=name, timeout=timeout):
        obj = change["object"]
        if output in ("json", "yaml"):
            click.echo(dump(obj, output))
        else:
            click.echo(get_table(kind, [obj], time.time(), output == "wide", show_headers=not headed))
            headed = True


# -- describe --


@click.command("describe")
@click.argument("kind")
@click.argument("name", required=False)
@namespace_option
def describe_(kind: str, name: str | None, namespace: str) -> None:
    """Status, conditions, replicas and events of an object, in words."""
    with reporting():
        kind, name = split_ref(kind, name)
        api = client()
        objects = [api.get(kind, name, namespace)] if name else api.list(kind, namespace)["items"]
        related = _related(api, kind, namespace)
        for obj in objects:
            click.echo(describe(obj, related, time.time()))
            click.echo()


def _related(api: Client, kind: str, namespace: str) -> Related:
    """What the describer of `kind` shows beside each object, fetched once for all of them."""
    lists = {k: api.list(k, namespace)["items"] for k in (*NEEDS.get(kind, ()), "Event")}
    return Related(lists.get("ReplicaSet", []), lists.get("Pod", []), lists["Event"])


# -- delete, scale --


@click.command()
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option("--filename", "-f", "files", multiple=True, type=click.Path(path_type=Path, exists=True))
@namespace_option
@click.option("--ignore-not-found", is_flag=True)
def delete(
    kind: str | None, names: tuple[str, ...], files: tuple[Path, ...], namespace: str, ignore_not_found: bool
) -> None:
    """Delete objects by name, or those in FILE. A Deployment takes its replicas with it."""
    with reporting():
        api = client()
        targets: list[tuple[str, str, str]] = []
        if files:
            targets = [
                (o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o in load_files(files)
            ]
        elif kind:
            k, first = split_ref(kind, None)
            targets = [(k, n, namespace) for n in ([first] if first else []) + list(names)]
        if not targets:
            raise ModelportError(Code.INVALID_ARGUMENT, "say what to delete: KIND NAME, KIND/NAME or -f FILE")
        for k, n, ns in targets:
            try:
                api.delete(k, n, ns)
            except ModelportError as exc:
                if exc.code is Code.NOT_FOUND and ignore_not_found:
                    continue
                raise
            click.echo(f'{k.lower()} "{n}" deleted')


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("--replicas", type=click.IntRange(min=0), required=True)
@namespace_option
def scale(kind: str, name: str | None, replicas: int, namespace: str) -> None:
    """Set a Deployment's replica count."""
    with reporting():
        kind, name = split_ref(kind, name)
        if kind != "Deployment" or not name:
            raise ModelportError(Code.INVALID_ARGUMENT, "scale works on deployment/NAME")
        update_with_retry(
            client(), kind, name, namespace, lambda d: d["spec"].__setitem__("replicas", replicas)
        )
        click.echo(f"deployment/{name} scaled")


@click.group("set")
def set_() -> None:
    """Change one field of a Deployment's template (a new revision, rolled out)."""


@set_.command("model")
@click.argument("ref")
@click.argument("base_path")
@click.option("--name", default=None, help="The model's name, if it changes too.")
@namespace_option
def set_model(ref: str, base_path: str, name: str | None, namespace: str) -> None:
    """Point deployment/NAME (or rollout/NAME: a canary) at another model folder or
    registry://MODEL@LABEL (like `kubectl set image`)."""
    with reporting():
        kind, deployment = split_ref(ref, None)
        if kind not in ("Deployment", "Rollout") or not deployment:
            raise ModelportError(Code.INVALID_ARGUMENT, "set model works on deployment/NAME or rollout/NAME")

        def change(d: Obj) -> None:
            model = d["spec"]["template"]["spec"].get("model")
            if model is None:
                raise ModelportError(
                    Code.INVALID_ARGUMENT, f"{kind.lower()}/{deployment} runs no model (a gateway?)"
                )
            model["basePath"] = base_path
            if name:
                model["name"] = name
            d["metadata"].setdefault("annotations", {})[CHANGE_CAUSE] = f"modelport set model {base_path}"

        update_with_retry(client(), kind, deployment, namespace, change)
        click.echo(f"{kind.lower()}/{deployment} model updated")


COMMANDS = [apply, get, describe_, delete, scale, set_]
