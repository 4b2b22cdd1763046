"""kubectl's printers as text: `get` tables of each kind (plain, -o wide, -o name) and `describe`
of a Deployment, Pod, Service and HPA, from objects in memory shaped as the API answers them
(spec defaults filled in by validation, status as the controllers write it). The scene: mnist
mid-rollout from revision 1 to 2, one new replica crash-looping, at 12:00:00."""

# ruff: noqa: E501  (golden text is as wide as kubectl prints it)
from __future__ import annotations

from textwrap import dedent
from typing import Any

import pytest

from modelport.cli.describers import Related, describe
from modelport.cli.printers import age, get_table, name_list, top_table
from modelport.controlplane.meta import parse_iso
from modelport.spec import parse_object, to_dict

Obj = dict[str, Any]

NOW = parse_iso("2026-12-03T12:00:00Z")


def _stored(body: Obj, uid: str, created: str, status: Obj) -> Obj:
    """A validated object with what the store adds: uid, generation, resourceVersion, timestamp."""
    obj = to_dict(parse_object(body))
    obj["metadata"].update(uid=uid, generation=2, resourceVersion="41", creationTimestamp=created)
    obj["status"] = status
    return obj


def _owner(kind: str, name: str, uid: str) -> list[Obj]:
    return [{"apiVersion": "modelport/v1", "kind": kind, "name": name, "uid": uid, "controller": True}]


TEMPLATE = {
    "metadata": {"labels": {"app": "mnist"}},
    "spec": {"model": {"name": "mnist", "basePath": "registry://mnist@prod"}},
}
DEPLOYMENT = _stored(
    {
        "apiVersion": "modelport/v1", "kind": "Deployment",
        "metadata": {"name": "mnist", "labels": {"team": "vision"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "mnist"}}, "template": TEMPLATE},
    },
    "d-1", "2026-12-03T11:00:00Z",  # an hour ago
    {
        "observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 2,
        "availableReplicas": 2, "unavailableReplicas": 1, "currentRevision": 2,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability."},
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
             "message": 'ReplicaSet "mnist-2" is progressing.'},
        ],
    },
)  # fmt: skip


def _replica_set(name: str, revision: int, replicas: int, ready: int, created: str) -> Obj:
    return {
        "apiVersion": "modelport/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": name, "namespace": "default", "uid": f"rs-{revision}", "creationTimestamp": created,
            "labels": {"app": "mnist"}, "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": _owner("Deployment", "mnist", "d-1"),
        },
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "mnist"}}, "template": TEMPLATE},
        "status": {"replicas": replicas, "readyReplicas": ready},
    }  # fmt: skip


OLD_RS = _replica_set("mnist-1", 1, 1, 1, "2026-12-03T11:00:00Z")
NEW_RS = _replica_set("mnist-2", 2, 2, 1, "2026-12-03T11:58:30Z")  # 90 s ago


def _pod(name: str, rs: Obj, created: str, status: Obj) -> Obj:
    return {
        "apiVersion": "modelport/v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "default", "uid": f"p-{name}", "creationTimestamp": created,
            "labels": {"app": "mnist"}, "ownerReferences": _owner("ReplicaSet", rs["metadata"]["name"], rs["metadata"]["uid"]),
        },
        "spec": TEMPLATE["spec"],
        "status": {"phase": "Running", "podIP": "127.0.0.1", "logPath": f"/home/pods/{name}.log", **status},
    }  # fmt: skip


RUNNING = {"reason": "Running", "ready": True, "pid": 4242, "port": 41001, "grpcPort": 41002,
           "restartCount": 0, "readySince": "2026-12-03T11:59:00Z"}  # fmt: skip
POD_OLD = _pod("mnist-1-abcde", OLD_RS, "2026-12-03T11:00:00Z", {**RUNNING, "pid": 4100, "port": 41000})
POD_NEW = _pod("mnist-2-fghij", NEW_RS, "2026-12-03T11:58:30Z", RUNNING)
POD_CRASHING = _pod(
    "mnist-2-klmno", NEW_RS, "2026-12-03T11:58:30Z",
    {"phase": "Pending", "reason": "CrashLoopBackOff", "ready": False, "pid": None, "port": None,
     "restartCount": 3, "lastExitCode": 1, "message": "exited with code 1"},
)  # fmt: skip
PODS = [POD_OLD, POD_NEW, POD_CRASHING]

SERVICE = _stored(
    {
        "apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": "mnist"},
        "spec": {"selector": {"app": "mnist"}, "ports": [{"name": "http", "port": 8501}], "clusterIP": "127.0.0.1"},
    },
    "s-1", "2026-12-03T09:00:00Z",  # 3 hours ago
    {
        "haproxyPid": 5151,
        "endpoints": [{"pod": "mnist-1-abcde", "port": 41000}, {"pod": "mnist-2-fghij", "port": 41001}],
        "conditions": [{"type": "LoadBalancerReady", "status": "True", "reason": "Listening", "message": "127.0.0.1:8501"}],
    },
)  # fmt: skip

HPA = _stored(
    {
        "apiVersion": "modelport/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "mnist"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "mnist"}, "maxReplicas": 5,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                {"type": "Pods", "pods": {"metric": {"name": "requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
        },
    },
    "h-1", "2026-12-01T12:00:00Z",  # 2 days ago
    {
        "currentReplicas": 2, "desiredReplicas": 3, "lastScaleTime": "2026-12-03T11:58:30Z",
        "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 85, "averageValue": "850m"}}},
        ],
        "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "SucceededRescale", "message": "the HPA controller was able to update the target scale to 3"},
        ],
    },
)  # fmt: skip


def _event(
    name: str, kind: str, obj: str, type_: str, reason: str, message: str, last: str, count: int = 1
) -> Obj:
    return {
        "apiVersion": "modelport/v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
        "involvedObject": {"kind": kind, "name": obj}, "type": type_, "reason": reason,
        "message": message, "count": count, "firstTimestamp": last, "lastTimestamp": last,
    }  # fmt: skip


EVENTS = [
    _event("e3", "Pod", "mnist-2-klmno", "Warning", "BackOff", "Back-off restarting failed replica: exited with code 1", "2026-12-03T11:59:30Z", 3),
    _event("e1", "Deployment", "mnist", "Normal", "ScalingReplicaSet", "Scaled up replica set mnist-2 to 2", "2026-12-03T11:58:30Z"),
    _event("e2", "HorizontalPodAutoscaler", "mnist", "Normal", "SuccessfulRescale", "New size: 3; reason: cpu resource utilization (percentage of request) above target", "2026-12-03T11:58:30Z"),
    _event("e4", "Service", "other", "Normal", "Listening", "not about mnist", "2026-12-03T11:00:00Z"),
]  # fmt: skip
RELATED = Related([OLD_RS, NEW_RS], PODS, EVENTS)


def text(block: str) -> str:
    return dedent(block).strip("\n")


GET = {
    "Deployment": ([DEPLOYMENT], """
        NAME    READY   UP-TO-DATE   AVAILABLE   AGE
        mnist   2/2     2            2           60m
    """),
    "Pod": (PODS, """
        NAME            READY   STATUS             RESTARTS   AGE
        mnist-1-abcde   1/1     Running            0          60m
        mnist-2-fghij   1/1     Running            0          90s
        mnist-2-klmno   0/1     CrashLoopBackOff   3          90s
    """),
    "Service": ([SERVICE], """
        NAME    TYPE        CLUSTER-IP   PORT(S)    ENDPOINTS   AGE
        mnist   ClusterIP   127.0.0.1    8501/TCP   2           3h
    """),
    "ReplicaSet": ([OLD_RS, NEW_RS], """
        NAME      DESIRED   CURRENT   READY   AGE
        mnist-1   1         1         1       60m
        mnist-2   2         2         1       90s
    """),
    "HorizontalPodAutoscaler": ([HPA], """
        NAME    REFERENCE          TARGETS                                           MINPODS   MAXPODS   REPLICAS   AGE
        mnist   Deployment/mnist   cpu: 85%/50%, requests_per_second: <unknown>/10   1         5         2          2d
    """),
    "Event": (EVENTS[:2], """
        LAST SEEN   TYPE      REASON              OBJECT              MESSAGE
        30s         Warning   BackOff             pod/mnist-2-klmno   Back-off restarting failed replica: exited with code 1
        90s         Normal    ScalingReplicaSet   deployment/mnist    Scaled up replica set mnist-2 to 2
    """),
}  # fmt: skip


@pytest.mark.parametrize("kind", GET)
def test_get_prints_kubectls_columns_for_each_kind(kind: str) -> None:
    objects, expected = GET[kind]
    assert get_table(kind, objects, NOW) == text(expected)


WIDE = {
    "Deployment": ([DEPLOYMENT], """
        NAME    READY   UP-TO-DATE   AVAILABLE   AGE   MODEL   BASE-PATH               SELECTOR
        mnist   2/2     2            2           60m   mnist   registry://mnist@prod   app=mnist
    """),
    "Pod": (PODS, """
        NAME            READY   STATUS             RESTARTS   AGE   PID      PORT     IP
        mnist-1-abcde   1/1     Running            0          60m   4100     41000    127.0.0.1
        mnist-2-fghij   1/1     Running            0          90s   4242     41001    127.0.0.1
        mnist-2-klmno   0/1     CrashLoopBackOff   3          90s   <none>   <none>   127.0.0.1
    """),
    "Service": ([SERVICE], """
        NAME    TYPE        CLUSTER-IP   PORT(S)    ENDPOINTS   AGE   SELECTOR    BALANCING
        mnist   ClusterIP   127.0.0.1    8501/TCP   2           3h    app=mnist   roundRobin
    """),
    "ReplicaSet": ([OLD_RS, NEW_RS], """
        NAME      DESIRED   CURRENT   READY   AGE   REVISION
        mnist-1   1         1         1       60m   1
        mnist-2   2         2         1       90s   2
    """),
}  # fmt: skip


@pytest.mark.parametrize("kind", WIDE)
def test_get_wide_adds_the_extra_columns_last(kind: str) -> None:
    objects, expected = WIDE[kind]
    assert get_table(kind, objects, NOW, wide=True) == text(expected)


def test_get_wide_is_plain_get_for_kinds_without_extra_columns() -> None:
    assert get_table("HorizontalPodAutoscaler", [HPA], NOW, wide=True) == text(
        GET["HorizontalPodAutoscaler"][1]
    )


def test_a_watched_row_comes_without_headers_once_they_were_printed() -> None:
    # Still as wide as the headers, so the rows line up under the ones printed before.
    row = get_table("Pod", [POD_NEW], NOW, show_headers=False)
    assert row == "mnist-2-fghij   1/1     Running   0          90s"


def test_a_deleted_replica_is_terminating_and_a_new_one_pending() -> None:
    deleted = {**POD_NEW, "metadata": {**POD_NEW["metadata"], "deletionTimestamp": "2026-12-03T11:59:59Z"}}
    fresh = {**POD_NEW, "metadata": {**POD_NEW["metadata"], "name": "fresh"}, "status": {}}
    assert get_table("Pod", [deleted, fresh], NOW) == text("""
        NAME            READY   STATUS        RESTARTS   AGE
        mnist-2-fghij   1/1     Terminating   0          90s
        fresh           0/1     Pending       0          90s
    """)


def test_get_name_prints_kind_slash_name() -> None:
    assert name_list("Pod", PODS) == "pod/mnist-1-abcde\npod/mnist-2-fghij\npod/mnist-2-klmno"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"), (86399, "23h"), (86400, "1d"),
     (-5, "0s")],  # a clock behind the server's shows 0s, not a negative age
)  # fmt: skip
def test_age_moves_to_the_next_unit_after_two_of_it(seconds: int, shown: str) -> None:
    assert age("2026-12-03T12:00:00Z", NOW + seconds) == shown
    assert age(None, NOW) == "<unknown>"


def test_top_shows_each_replicas_usage_in_kubectls_units() -> None:
    items = [
        {"pod": "mnist-2-fghij", "cpu": 0.25, "memory": 150 * 2**20, "requests_per_second": 12.34,
         "requests_in_flight": 2.0, "request_latency_p99_seconds": 0.0456},
        {"pod": "mnist-1-abcde", "cpu": 0.0, "memory": 100 * 2**20, "requests_per_second": 0.0,
         "requests_in_flight": 0.0},
    ]  # fmt: skip
    assert top_table(items) == text("""
        NAME            CPU(cores)   MEMORY(bytes)   REQ/S   IN-FLIGHT   P99(ms)
        mnist-2-fghij   250m         150Mi           12.3    2           45.6
        mnist-1-abcde   0m           100Mi           0.0     0           -
    """)


def test_describe_deployment_shows_its_revisions_replicas_and_their_events() -> None:
    assert describe(DEPLOYMENT, RELATED, NOW) == text("""
        Name:                   mnist
        Namespace:              default
        CreationTimestamp:      2026-12-03T11:00:00Z
        Labels:                 team=vision
        Selector:               app=mnist
        Replicas:               2 desired | 2 updated | 3 total | 2 available | 1 unavailable
        StrategyType:           RollingUpdate
        MinReadySeconds:        0
        RollingUpdateStrategy:  25% max unavailable, 25% max surge
        Model:                  mnist from registry://mnist@prod
        Paused:                 no
        Conditions:
          Type          Status   Reason                     Message
          Available     True     MinimumReplicasAvailable   Deployment has minimum availability.
          Progressing   True     ReplicaSetUpdated          ReplicaSet "mnist-2" is progressing.
        OldReplicaSets:         mnist-1 (1/1 replicas created), revision 1
        NewReplicaSet:          mnist-2 (2/2 replicas created), revision 2
        Replicas:
          NAME            READY   STATUS             RESTARTS   AGE   PID      PORT     IP          MESSAGE
          mnist-1-abcde   1/1     Running            0          60m   4100     41000    127.0.0.1
          mnist-2-fghij   1/1     Running            0          90s   4242     41001    127.0.0.1
          mnist-2-klmno   0/1     CrashLoopBackOff   3          90s   <none>   <none>   127.0.0.1   exited with code 1
        Events:
          TYPE      REASON              AGE        OBJECT              MESSAGE
          Normal    ScalingReplicaSet   90s        deployment/mnist    Scaled up replica set mnist-2 to 2
          Warning   BackOff             30s (x3)   pod/mnist-2-klmno   Back-off restarting failed replica: exited with code 1
    """)


def test_describe_pod_shows_why_it_is_not_ready() -> None:
    assert describe(POD_CRASHING, RELATED, NOW) == text("""
        Name:           mnist-2-klmno
        Namespace:      default
        Labels:         app=mnist
        Controlled By:  ReplicaSet/mnist-2
        Status:         Pending (CrashLoopBackOff)
        Ready:          False
        PID:            <none>
        Address:        127.0.0.1:<none>
        Restart Count:  3 (last exit code 1)
        Message:        exited with code 1
        Log:            /home/pods/mnist-2-klmno.log
        API Keys:       not required
        Model:          mnist from registry://mnist@prod
        Events:
          TYPE      REASON    AGE        OBJECT              MESSAGE
          Warning   BackOff   30s (x3)   pod/mnist-2-klmno   Back-off restarting failed replica: exited with code 1
    """)
    assert "Ready:          True since 2026-12-03T11:59:00Z" in describe(POD_NEW, RELATED, NOW)
    assert "Address:        127.0.0.1:41001 (gRPC 41002)" in describe(POD_NEW, RELATED, NOW)


def test_describe_service_shows_its_endpoints_and_the_replicas_not_ready() -> None:
    assert describe(SERVICE, RELATED, NOW) == text("""
        Name:              mnist
        Namespace:         default
        Selector:          app=mnist
        Type:              ClusterIP
        IP:                127.0.0.1
        Port:              http  8501/TCP
        URL:               http://127.0.0.1:8501
        Endpoints:         127.0.0.1:41000 (mnist-1-abcde), 127.0.0.1:41001 (mnist-2-fghij)
        Session Affinity:  None
        Load Balancing:    roundRobin
        Load Balancer:     Listening: 127.0.0.1:8501 (HAProxy pid 5151)
        Not ready:
          NAME            READY   STATUS             RESTARTS   AGE   PID      PORT     IP          MESSAGE
          mnist-2-klmno   0/1     CrashLoopBackOff   3          90s   <none>   <none>   127.0.0.1   exited with code 1
        Events:  <none>
    """)


def test_describe_service_warns_when_no_replica_can_answer() -> None:
    pending = {**SERVICE, "status": {}}
    assert "Load Balancer:     <pending>" in describe(pending, RELATED, NOW)
    assert "Warning:           no selected replica is ready, so requests to this Service fail" in describe(
        pending, RELATED, NOW
    )
    assert "Warning:           no replica has the labels app=mnist" in describe(
        pending, Related(pods=[], events=[]), NOW
    )


def test_describe_hpa_shows_each_metric_against_its_target() -> None:
    assert describe(HPA, RELATED, NOW) == text("""
        Name:                   mnist
        Namespace:              default
        CreationTimestamp:      2026-12-01T12:00:00Z
        Reference:              Deployment/mnist
        Metrics:                ( current / target )
          cpu: 85%/50%
          requests_per_second: <unknown>/10
        Min replicas:           1
        Max replicas:           5
        Behavior:               scaleUp "default"; scaleDown {"stabilizationWindowSeconds": 60, "selectPolicy": "Max"}
        Deployment pods:        2 current / 3 desired
        Last scale:             2026-12-03T11:58:30Z
        Conditions:
          Type          Status   Reason             Message
          AbleToScale   True     SucceededRescale   the HPA controller was able to update the target scale to 3
        Events:
          TYPE     REASON              AGE   OBJECT                          MESSAGE
          Normal   SuccessfulRescale   90s   horizontalpodautoscaler/mnist   New size: 3; reason: cpu resource utilization (percentage of request) above target
    """)


def test_describe_of_another_kind_is_its_yaml_and_its_events() -> None:
    shown = describe(NEW_RS, RELATED, NOW)
    assert shown.startswith("apiVersion: modelport/v1\nkind: ReplicaSet\nmetadata:\n  name: mnist-2\n")
    assert shown.endswith("Events:  <none>")
