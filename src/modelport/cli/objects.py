"""kubectl's verbs against the local control plane: apply, get, describe, delete, scale, logs,
top, events. Output a script can rely on: `-o json|yaml` in Kubernetes' shapes, exit code 0 on
success and 1 on any error, errors on stderr as `Error from server (Reason): message`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml

from modelport.controlplane.client import Client
from modelport.controlplane.meta import CHANGE_CAUSE, kind_of, parse_iso, revision, workload
from modelport.errors import Code, ModelportError

Obj = dict[str, Any]
_REASONS = {
    Code.NOT_FOUND: "NotFound",
    Code.ALREADY_EXISTS: "AlreadyExists",
    Code.ABORTED: "Conflict",
    Code.INVALID_ARGUMENT: "Invalid",
    Code.UNAUTHENTICATED: "Unauthorized",
    Code.UNAVAILABLE: "Unavailable",
    Code.FAILED_PRECONDITION: "BadRequest",
}
namespace_option = click.option("--namespace", "-n", default="default", show_default=True)


def die(exc: ModelportError) -> NoReturn:
    click.echo(f"Error from server ({_REASONS.get(exc.code, 'InternalError')}): {exc.message}", err=True)
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


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    seconds = max(0, int(time.time() - parse_iso(timestamp)))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(headers: list[str], rows: list[list[str]], show_headers: bool = True) -> str:
    """kubectl's plain columns: left aligned, three spaces apart."""
    lines = ([headers] if show_headers else []) + rows
    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>"


def columns(kind: str, wide: bool) -> tuple[list[str], Callable[[Obj], list[str]]]:
    def deployment(d: Obj) -> list[str]:
        s, st = d["spec"], d.get("status", {})
        row = [
            d["metadata"]["name"],
            f"{st.get('readyReplicas', 0)}/{s['replicas']}",
            str(st.get("updatedReplicas", 0)),
            str(st.get("availableReplicas", 0)),
            age(d["metadata"].get("creationTimestamp")),
        ]
        runs, source = workload(s["template"]["spec"])
        return row + ([runs, source, _selector(s["selector"]["matchLabels"])] if wide else [])

    def pod(p: Obj) -> list[str]:
        st = p.get("status", {})
        reason = "Terminating" if "deletionTimestamp" in p["metadata"] else st.get("reason", "Pending")
        row = [
            p["metadata"]["name"],
            f"{int(bool(st.get('ready')))}/1",
            reason,
            str(st.get("restartCount", 0)),
            age(p["metadata"].get("creationTimestamp")),
        ]
        return row + (
            [str(st.get("pid") or "<none>"), str(st.get("port") or "<none>"), st.get("podIP", "<none>")]
            if wide
            else []
        )

    def service(s: Obj) -> list[str]:
        ports = ",".join(f"{p['port']}/TCP" for p in s["spec"]["ports"])
        endpoints = s.get("status", {}).get("endpoints", [])
        row = [
            s["metadata"]["name"],
            s["spec"].get("type", "ClusterIP"),
            s["spec"].get("clusterIP", "127.0.0.1"),
            ports,
            str(len(endpoints)),
            age(s["metadata"].get("creationTimestamp")),
        ]
        return row + (
            [_selector(s["spec"]["selector"]), s["spec"].get("loadBalancing", "roundRobin")] if wide else []
        )

    def replica_set(r: Obj) -> list[str]:
        st = r.get("status", {})
        row = [
            r["metadata"]["name"],
            str(r["spec"]["replicas"]),
            str(st.get("replicas", 0)),
            str(st.get("readyReplicas", 0)),
            age(r["metadata"].get("creationTimestamp")),
        ]
        return row + ([str(revision(r))] if wide else [])

    def event(e: Obj) -> list[str]:
        obj = e["involvedObject"]
        return [
            age(e.get("lastTimestamp")),
            e["type"],
            e["reason"],
            f"{obj['kind'].lower()}/{obj['name']}",
            e["message"],
        ]

    return {
        "Deployment": (
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
            + (["MODEL", "BASE-PATH", "SELECTOR"] if wide else []),
            deployment,
        ),
        "Pod": (
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] + (["PID", "PORT", "IP"] if wide else []),
            pod,
        ),
        "Service": (
            ["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "ENDPOINTS", "AGE"]
            + (["SELECTOR", "BALANCING"] if wide else []),
            service,
        ),
        "ReplicaSet": (
            ["NAME", "DESIRED", "CURRENT", "READY", "AGE"] + (["REVISION"] if wide else []),
            replica_set,
        ),
        "Event": (["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], event),
        "HorizontalPodAutoscaler": (
            ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"],
            lambda h: [
                h["metadata"]["name"],
                f"{h['spec']['scaleTargetRef']['kind']}/{h['spec']['scaleTargetRef']['name']}",
                hpa_targets(h),
                str(h["spec"].get("minReplicas", 1)),
                str(h["spec"]["maxReplicas"]),
                str(h.get("status", {}).get("currentReplicas", 0)),
                age(h["metadata"].get("creationTimestamp")),
            ],
        ),
    }[kind]


def hpa_targets(hpa: Obj) -> str:
    """kubectl's TARGETS column: `cpu: 85%/50%, requests_per_second: 12/10`; <unknown> until measured."""
    currents = hpa.get("status", {}).get("currentMetrics", [])
    out = []
    for metric in hpa["spec"]["metrics"]:
        kind = metric["type"]
        source = metric[kind.lower()]
        name = source["name"] if kind == "Resource" else source["metric"]["name"]
        target = source["target"]
        wanted = {
            "Utilization": f"{target.get('averageUtilization')}%",
            "AverageValue": str(target.get("averageValue")),
            "Value": str(target.get("value")),
        }[target["type"]]
        found = "<unknown>"
        for current in currents:
            body = current.get(current["type"].lower(), {})
            if current["type"] == kind and (body.get("name") or body.get("metric", {}).get("name")) == name:
                value = body["current"]
                found = (f"{value['averageUtilization']}%" if target["type"] == "Utilization"
                         else str(value.get("averageValue", value.get("value"))))  # fmt: skip
        out.append(f"{name}: {found}/{wanted}")
    return ", ".join(out)


def dump(data: Any, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2)
    return str(yaml.safe_dump(data, sort_keys=False)).rstrip()


def as_list(items: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


# -- apply --


def _files(paths: tuple[Path, ...]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        else:
            out.append(path)
    return out


def load_files(paths: tuple[Path, ...]) -> list[Obj]:
    """Every object of every file, all validated before any is sent (an invalid one refuses all)."""
    from modelport.spec import load_objects, to_dict  # pydantic: only for the commands that read files

    objects = []
    for path in _files(paths):
        try:
            text = path.read_text() if str(path) != "-" else sys.stdin.read()
        except OSError as exc:
            raise ModelportError(Code.INVALID_ARGUMENT, f"{path}: {exc.strerror}") from None
        objects += [to_dict(o) for o in load_objects(text, str(path))]
    return objects


@click.command()
@click.option(
    "--filename",
    "-f",
    "files",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, exists=True),
    help="A YAML file (objects separated by ---) or a folder of them.",
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
                current = api.get(obj["kind"], meta["name"], meta.get("namespace", "default"))
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
        if "," in kind and name is None and not watch and output in (None, "wide"):
            api = client()
            ns = None if all_namespaces else namespace
            for i, each in enumerate(kind_of(k) for k in kind.split(",")):
                headers, row = columns(each, output == "wide")
                items = api.list(each, ns)["items"]
                if items:
                    click.echo(("\n" if i else "") + table(headers, [row(o) for o in items]))
            return
        kind, name = split_ref(kind, name)
        api = client()
        ns = None if all_namespaces else namespace
        if name is not None:
            items = [api.get(kind, name, namespace)]
            since = items[0]["metadata"]["resourceVersion"]
        else:
            listed = api.list(kind, ns)
            items, since = listed["items"], listed["metadata"]["resourceVersion"]
        headers, row = columns(kind, output == "wide")
        if output in ("json", "yaml"):
            click.echo(dump(items[0] if name is not None else as_list(items), output))
        elif output == "name":
            for item in items:
                click.echo(f"{kind.lower()}/{item['metadata']['name']}")
        elif items:
            click.echo(table(headers, [row(i) for i in items]))
        elif not watch:
            click.echo(f"No resources found in {ns or 'any'} namespace.", err=True)
        if watch:
            for change in api.watch(kind, ns, since, name=name, timeout=watch_timeout):
                obj = change["object"]
                if output in ("json", "yaml"):
                    click.echo(dump(obj, output))
                else:
                    click.echo(table(headers, [row(obj)], show_headers=not items))
                    items = items or [obj]


# -- describe --


def _section(title: str, lines: list[str]) -> str:
    return f"{title}:\n" + ("\n".join(f"  {line}" for line in lines) if lines else "  <none>")


def _events_of(api: Client, namespace: str, objects: list[Obj]) -> list[Obj]:
    keys = {(o["kind"], o["metadata"]["name"]) for o in objects}
    events = [
        e
        for e in api.list("Event", namespace)["items"]
        if (e["involvedObject"]["kind"], e["involvedObject"]["name"]) in keys
    ]
    return sorted(events, key=lambda e: e["lastTimestamp"])


def _events_table(events: list[Obj]) -> str:
    if not events:
        return "Events:  <none>"
    rows = [
        [
            e["type"],
            e["reason"],
            age(e["lastTimestamp"]) + (f" (x{e['count']})" if e.get("count", 1) > 1 else ""),
            f"{e['involvedObject']['kind'].lower()}/{e['involvedObject']['name']}",
            e["message"],
        ]
        for e in events[-25:]
    ]
    return "Events:\n" + "\n".join(
        "  " + line for line in table(["TYPE", "REASON", "AGE", "OBJECT", "MESSAGE"], rows).splitlines()
    )


def _owned(items: list[Obj], owner: Obj) -> list[Obj]:
    uid = owner["metadata"]["uid"]
    return [i for i in items if any(r["uid"] == uid for r in i["metadata"].get("ownerReferences", []))]


def _pod_lines(pods: list[Obj]) -> list[str]:
    headers, row = columns("Pod", True)
    rows = [[*row(p), p.get("status", {}).get("message", "")] for p in pods]
    return table([*headers, "MESSAGE"], rows).splitlines() if pods else []


def _conditions(rows: list[list[str]]) -> str:
    if not rows:
        return "Conditions:  <none>"
    lines = table(["Type", "Status", "Reason", "Message"], rows).splitlines()
    return "Conditions:\n" + "\n".join("  " + line for line in lines)


def describe_deployment(api: Client, d: Obj) -> str:
    spec, st, meta = d["spec"], d.get("status", {}), d["metadata"]
    ns = meta["namespace"]
    replica_sets = sorted(_owned(api.list("ReplicaSet", ns)["items"], d), key=revision)
    pods = [p for rs in replica_sets for p in _owned(api.list("Pod", ns)["items"], rs)]
    rolling = spec["strategy"].get("rollingUpdate", {})
    runs, source = workload(spec["template"]["spec"])
    new = (
        replica_sets[-1] if replica_sets and revision(replica_sets[-1]) == st.get("currentRevision") else None
    )
    olds = [rs for rs in replica_sets if rs is not new and rs["spec"]["replicas"] > 0]

    def rs_line(rs: Obj) -> str:
        return (
            f"{rs['metadata']['name']} ({rs.get('status', {}).get('replicas', 0)}/{rs['spec']['replicas']} "
            f"replicas created), revision {revision(rs)}"
        )

    conditions = [[c["type"], c["status"], c["reason"], c["message"]] for c in st.get("conditions", [])]
    out = [
        f"Name:                   {meta['name']}",
        f"Namespace:              {ns}",
        f"CreationTimestamp:      {meta.get('creationTimestamp')}",
        f"Labels:                 {_selector(meta.get('labels', {}))}",
        f"Selector:               {_selector(spec['selector']['matchLabels'])}",
        f"Replicas:               {spec['replicas']} desired | {st.get('updatedReplicas', 0)} updated | "
        f"{st.get('replicas', 0)} total | {st.get('availableReplicas', 0)} available | "
        f"{st.get('unavailableReplicas', 0)} unavailable",
        f"StrategyType:           {spec['strategy']['type']}",
        f"MinReadySeconds:        {spec.get('minReadySeconds', 0)}",
        f"RollingUpdateStrategy:  {rolling.get('maxUnavailable')} max unavailable, "
        f"{rolling.get('maxSurge')} max surge",
        f"Model:                  {runs} from {source}",
        f"Paused:                 {'yes' if spec.get('paused') else 'no'}",
        _conditions(conditions),
        f"OldReplicaSets:         {', '.join(rs_line(rs) for rs in olds) or '<none>'}",
        f"NewReplicaSet:          {rs_line(new) if new else '<none>'}",
        _section("Replicas", _pod_lines(pods)),
        _events_table(
            _events_of(
                api,
                ns,
                [d, *replica_sets, *pods],
            )
        ),
    ]
    return "\n".join(out)


def describe_pod(api: Client, p: Obj) -> str:
    st, meta = p.get("status", {}), p["metadata"]
    owner = (meta.get("ownerReferences") or [{}])[0]
    out = [
        f"Name:           {meta['name']}",
        f"Namespace:      {meta['namespace']}",
        f"Labels:         {_selector(meta.get('labels', {}))}",
        f"Controlled By:  {owner.get('kind', '')}/{owner.get('name', '')}",
        f"Status:         {'Terminating' if 'deletionTimestamp' in meta else st.get('phase', 'Pending')}"
        f" ({st.get('reason', '')})",
        f"Ready:          {bool(st.get('ready'))}"
        + (f" since {st['readySince']}" if st.get("readySince") else ""),
        f"PID:            {st.get('pid') or '<none>'}",
        f"Address:        {st.get('podIP', '127.0.0.1')}:{st.get('port') or '<none>'}"
        + (f" (gRPC {st['grpcPort']})" if st.get("grpcPort") else ""),
        f"Restart Count:  {st.get('restartCount', 0)}"
        + (f" (last exit code {st['lastExitCode']})" if "lastExitCode" in st else ""),
        f"Message:        {st.get('message') or '<none>'}",
        f"Log:            {st.get('logPath', '<none>')}",
        "Model:          {} from {}".format(*workload(p["spec"])),
        _events_table(_events_of(api, meta["namespace"], [p])),
    ]
    return "\n".join(out)


def describe_hpa(api: Client, h: Obj) -> str:
    spec, st, meta = h["spec"], h.get("status", {}), h["metadata"]
    ref = spec["scaleTargetRef"]
    conditions = [[c["type"], c["status"], c["reason"], c["message"]] for c in st.get("conditions", [])]
    behavior = spec.get("behavior") or {}
    out = [
        f"Name:                   {meta['name']}",
        f"Namespace:              {meta['namespace']}",
        f"CreationTimestamp:      {meta.get('creationTimestamp')}",
        f"Reference:              {ref['kind']}/{ref['name']}",
        "Metrics:                ( current / target )\n  " + "\n  ".join(hpa_targets(h).split(", ")),
        f"Min replicas:           {spec.get('minReplicas', 1)}",
        f"Max replicas:           {spec['maxReplicas']}",
        f"Behavior:               scaleUp {json.dumps(behavior.get('scaleUp') or 'default')}; "
        f"scaleDown {json.dumps(behavior.get('scaleDown') or 'default')}",
        f"{ref['kind']} pods:        {st.get('currentReplicas', 0)} current / "
        f"{st.get('desiredReplicas', 0)} desired",
        f"Last scale:             {st.get('lastScaleTime') or '<never>'}",
        _conditions(conditions),
        _events_table(_events_of(api, meta["namespace"], [h])),
    ]  # fmt: skip
    return "\n".join(out)


def describe_service(api: Client, s: Obj) -> str:
    spec, st, meta = s["spec"], s.get("status", {}), s["metadata"]
    endpoints = ", ".join(f"127.0.0.1:{e['port']} ({e['pod']})" for e in st.get("endpoints", [])) or "<none>"
    selected = [
        p
        for p in api.list("Pod", meta["namespace"])["items"]
        if all(p["metadata"].get("labels", {}).get(k) == v for k, v in spec["selector"].items())
    ]
    not_ready = [p for p in selected if not p.get("status", {}).get("ready")]
    conditions = st.get("conditions", [])
    out = [
        f"Name:              {meta['name']}",
        f"Namespace:         {meta['namespace']}",
        f"Selector:          {_selector(spec['selector'])}",
        f"Type:              {spec.get('type', 'ClusterIP')}",
        f"IP:                {spec.get('clusterIP', '127.0.0.1')}",
        f"Port:              {spec['ports'][0].get('name') or '<unset>'}  {spec['ports'][0]['port']}/TCP",
        f"URL:               http://{spec.get('clusterIP', '127.0.0.1')}:{spec['ports'][0]['port']}",
        f"Endpoints:         {endpoints}",
        f"Session Affinity:  {spec.get('sessionAffinity', 'None')}",
        f"Load Balancing:    {spec.get('loadBalancing', 'roundRobin')}",
        "Load Balancer:     "
        + (f"{conditions[0]['reason']}: {conditions[0]['message']}" if conditions else "<pending>")
        + (f" (HAProxy pid {st['haproxyPid']})" if st.get("haproxyPid") else ""),
    ]
    if selected and not st.get("endpoints"):
        out.append("Warning:           no selected replica is ready, so requests to this Service fail")
    if not selected:
        out.append(f"Warning:           no replica has the labels {_selector(spec['selector'])}")
    if not_ready:
        out.append(_section("Not ready", _pod_lines(not_ready)))
    out.append(_events_table(_events_of(api, meta["namespace"], [s])))
    return "\n".join(out)


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@namespace_option
def describe(kind: str, name: str | None, namespace: str) -> None:
    """Status, conditions, replicas and events of an object, in words."""
    with reporting():
        kind, name = split_ref(kind, name)
        api = client()
        objects = [api.get(kind, name, namespace)] if name else api.list(kind, namespace)["items"]
        render = {
            "Deployment": describe_deployment, "Pod": describe_pod, "Service": describe_service,
            "HorizontalPodAutoscaler": describe_hpa,
        }.get(kind)  # fmt: skip
        for obj in objects:
            if render is None:
                click.echo(dump(obj, "yaml") + "\n" + _events_table(_events_of(api, namespace, [obj])))
            else:
                click.echo(render(api, obj))
            click.echo()


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
                (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace", namespace))
                for o in load_files(files)
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
    """Point deployment/NAME at another model folder or registry://MODEL@LABEL (like `kubectl set image`)."""
    with reporting():
        kind, deployment = split_ref(ref, None)
        if kind != "Deployment" or not deployment:
            raise ModelportError(Code.INVALID_ARGUMENT, "set model works on deployment/NAME")

        def change(d: Obj) -> None:
            model = d["spec"]["template"]["spec"].get("model")
            if model is None:
                raise ModelportError(
                    Code.INVALID_ARGUMENT, f"deployment/{deployment} runs no model (a gateway?)"
                )
            model["basePath"] = base_path
            if name:
                model["name"] = name
            d["metadata"].setdefault("annotations", {})[CHANGE_CAUSE] = f"modelport set model {base_path}"

        update_with_retry(client(), "Deployment", deployment, namespace, change)
        click.echo(f"deployment/{deployment} model updated")


# -- logs, top, events --


@click.command()
@click.argument("name")
@click.option("--follow", "-f", is_flag=True)
@click.option("--tail", type=int, default=-1, help="Lines from the end (-1: all).")
@namespace_option
def logs(name: str, follow: bool, tail: int, namespace: str) -> None:
    """A replica's log (pod/NAME, or deployment/NAME for its first replica)."""
    with reporting():
        api = client()
        kind, pod_name = split_ref(name, None) if "/" in name else ("Pod", name)
        if kind == "Deployment":
            d = api.get("Deployment", pod_name or "", namespace)
            pods = [
                p
                for rs in _owned(api.list("ReplicaSet", namespace)["items"], d)
                for p in _owned(api.list("Pod", namespace)["items"], rs)
            ]
            if not pods:
                raise ModelportError(Code.NOT_FOUND, f'deployment "{pod_name}" has no replicas')
            pod = pods[0]
        else:
            pod = api.get("Pod", pod_name or "", namespace)
        path = Path(pod.get("status", {}).get("logPath", ""))
        if not path.is_file():
            raise ModelportError(Code.NOT_FOUND, f'pod "{pod["metadata"]["name"]}" has no log yet')
        with open(path, errors="replace") as log:
            lines = log.readlines()
            sys.stdout.write("".join(lines[-tail:] if tail >= 0 else lines))
            sys.stdout.flush()
            while follow:
                line = log.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)


@click.command()
@click.argument("kind", default="pods")
@namespace_option
def top(kind: str, namespace: str) -> None:
    """CPU, memory, request rate, requests in flight and p99 latency of each replica."""
    with reporting():
        if kind_of(kind) != "Pod":
            raise ModelportError(Code.INVALID_ARGUMENT, "top shows pods")
        items = [i for i in client().request("GET", "/api/top")["items"] if i["namespace"] == namespace]
        rows = [
            [
                i["pod"],
                f"{i['cpu'] * 1000:.0f}m",
                f"{i['memory'] / 2**20:.0f}Mi",
                f"{i['requests_per_second']:.1f}",
                f"{i['requests_in_flight']:.0f}",
                f"{i['request_latency_p99_seconds'] * 1000:.1f}"
                if "request_latency_p99_seconds" in i
                else "-",
            ]
            for i in items
        ]
        if not rows:
            click.echo("No metrics yet (each replica needs two samples; see --metrics-seconds).", err=True)
            return
        click.echo(table(["NAME", "CPU(cores)", "MEMORY(bytes)", "REQ/S", "IN-FLIGHT", "P99(ms)"], rows))


@click.command()
@namespace_option
@click.option("--for", "for_", default=None, help="Only events of this object: KIND/NAME.")
@click.option("--output", "-o", type=click.Choice(["json", "yaml"]), default=None)
def events(namespace: str, for_: str | None, output: str | None) -> None:
    """Events, oldest first."""
    with reporting():
        items = sorted(client().list("Event", namespace)["items"], key=lambda e: e["lastTimestamp"])
        if for_:
            kind, name = split_ref(for_, None)
            items = [
                e
                for e in items
                if e["involvedObject"]["kind"] == kind and e["involvedObject"]["name"] == name
            ]
        if output:
            click.echo(dump(as_list(items), output))
        elif items:
            headers, row = columns("Event", False)
            click.echo(table(headers, [row(e) for e in items]))
        else:
            click.echo(f"No events found in {namespace} namespace.", err=True)


COMMANDS = [apply, get, describe, delete, scale, set_, logs, top, events]
