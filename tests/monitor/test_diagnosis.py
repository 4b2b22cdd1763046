"""diagnose's reasoning on gathered facts: each cause named in words, with its evidence."""

from __future__ import annotations

from typing import Any

from modelport.monitor.diagnosis import Facts, ReplicaFacts, compute_findings

Obj = dict[str, Any]


def _deployment(replicas: int = 1, ready: int = 1, **status: Any) -> Obj:
    return {"metadata": {"name": "mnist", "namespace": "default"}, "spec": {"replicas": replicas},
            "status": {"readyReplicas": ready, **status}}  # fmt: skip


def _pod(name: str = "mnist-x", resources: Obj | None = None, **status: Any) -> Obj:
    return {"metadata": {"name": name}, "spec": {"resources": resources or {}},
            "status": {"phase": "Running", "ready": True, "restartCount": 0, **status}}  # fmt: skip


def _causes(facts: Facts, **kw: Any) -> list[str]:
    return [f.cause for f in compute_findings(facts, **kw)]


def test_a_crash_loop_at_the_memory_limit_names_the_limit_and_the_last_log_line() -> None:
    pod = _pod(resources={"limits": {"memory": "64Mi"}}, phase="Pending", ready=False, restartCount=3,
               lastExitCode=1, reason="CrashLoopBackOff")  # fmt: skip
    log = ["starting", "ImportError: failed to map segment from shared object"]
    event = {
        "involvedObject": {"name": "mnist-x"},
        "reason": "BackOff",
        "count": 3,
        "firstTimestamp": "12:04",
    }
    findings = compute_findings(Facts(_deployment(ready=0), [ReplicaFacts(pod, log_tail=log)], [event]))
    assert findings[0].cause == (
        "replica mnist-x restarts (3 times, last exit code 1) at its 64Mi memory limit; "
        "last log line: ImportError: failed to map segment from shared object"
    )
    assert findings[0].since == "12:04" and "3 BackOff events" in findings[0].evidence


def test_a_model_that_fails_to_load_is_named_with_its_error() -> None:
    readiness = {"ready": False, "models": {"mnist": {"failed_versions": {"2": "cannot load ONNX model"}}}}
    replica = ReplicaFacts(_pod(ready=False, message="Readiness probe failed"), readiness=readiness)
    assert _causes(Facts(_deployment(ready=0), [replica], [])) == [
        "model mnist version 2 fails to load: cannot load ONNX model"
    ]


def test_p99_over_the_slo_with_cpu_and_the_hpa_at_its_max() -> None:
    usage = {"cpu": 0.098, "requests_per_second": 50.0, "request_latency_p99_seconds": 0.41}
    replica = ReplicaFacts(_pod(resources={"requests": {"cpu": "100m"}}), usage=usage)
    hpa = {"metadata": {"name": "mnist"}, "spec": {"minReplicas": 1, "maxReplicas": 3},
           "status": {"currentReplicas": 3, "desiredReplicas": 3}}  # fmt: skip
    assert _causes(Facts(_deployment(), [replica], [], hpa)) == [
        "p99 0.41 s over the 0.25 s SLO: CPU 98% of its 100m request; HPA mnist at maxReplicas (3)"
    ]
    assert _causes(Facts(_deployment(), [replica], []), slo_p99=0.5) == [
        "no problem found: 1/1 replicas ready"
    ]


def test_drift_and_accuracy_from_the_replicas_metrics() -> None:
    labels = {"model": "mnist", "version": "2"}
    samples = [
        ("modelport_drift_score", {**labels, "kind": "input"}, 0.41),
        ("modelport_drift_threshold", {**labels, "kind": "input"}, 0.2),
        ("modelport_drift_score", {**labels, "kind": "prediction"}, 0.05),
        ("modelport_drift_threshold", {**labels, "kind": "prediction"}, 0.1),
        ("modelport_live_accuracy", labels, 0.80),
        ("modelport_published_accuracy", labels, 0.92),
        ("modelport_feedback_total", labels, 120.0),
    ]
    assert _causes(Facts(_deployment(), [ReplicaFacts(_pod(), samples=samples)], [])) == [
        "input drift 0.41 > 0.2 (mnist v2)",
        "live accuracy 0.80, published 0.92 (mnist v2, 120 labels)",
    ]
    too_few = [(n, lab, 10.0 if n == "modelport_feedback_total" else v) for n, lab, v in samples[4:]]
    assert _causes(Facts(_deployment(), [ReplicaFacts(_pod(), samples=too_few)], [])) == [
        "no problem found: 1/1 replicas ready"
    ]


def test_server_errors_over_five_percent() -> None:
    ok = {"api": "predict", "status": "200"}
    samples = [("modelport_requests_total", ok, 90.0),
               ("modelport_requests_total", {**ok, "status": "500"}, 10.0),
               ("modelport_requests_total", {"api": "status", "status": "500"}, 500.0)]  # fmt: skip
    assert _causes(Facts(_deployment(), [ReplicaFacts(_pod(), samples=samples)], [])) == [
        "10% of predictions answered 5xx (10 of 100 since the replicas started)"
    ]


def test_a_firing_alert_joins_the_finding_it_confirms_and_dates_it() -> None:
    labels = {"model": "mnist", "version": "2"}
    samples = [("modelport_drift_score", {**labels, "kind": "input"}, 0.41),
               ("modelport_drift_threshold", {**labels, "kind": "input"}, 0.2)]  # fmt: skip
    drift = {"labels": {"alertname": "ModelportDriftOverThreshold", **labels, "kind": "input"},
             "annotations": {"summary": "mnist v2: input drift 0.41 over its threshold"},
             "activeAt": "2026-12-07T12:10:00Z"}  # fmt: skip
    other = {"labels": {"alertname": "SomethingElse"}, "annotations": {}, "activeAt": "2026-12-07T12:00:00Z"}
    findings = compute_findings(
        Facts(_deployment(), [ReplicaFacts(_pod(), samples=samples)], [], None, [drift, other])
    )
    assert [(f.cause, f.since) for f in findings] == [
        ("input drift 0.41 > 0.2 (mnist v2)", "2026-12-07T12:10:00Z"),
        ("alert SomethingElse firing", "2026-12-07T12:00:00Z"),
    ]
    assert (
        "alert ModelportDriftOverThreshold firing: mnist v2: input drift 0.41 over its threshold"
        in findings[0].evidence
    )


def test_an_aborted_canary_says_why() -> None:
    rollout = {**_deployment(), "kind": "Rollout"}
    rollout["status"] = {"readyReplicas": 1, "phase": "Degraded", "stableHash": "aaa", "abortedAt": "12:20",
                         "message": "RolloutAborted: analysis p99 failed: 0.41 > 0.25"}  # fmt: skip
    findings = compute_findings(Facts(rollout, [ReplicaFacts(_pod())], []))
    assert (findings[0].cause, findings[0].since) == (
        "the canary was aborted: RolloutAborted: analysis p99 failed: 0.41 > 0.25",
        "12:20",
    )


def test_each_way_of_running_out_of_memory_is_seen_as_the_limit() -> None:
    for line in ("MemoryError", "ImportError: failed to map segment from shared object",
                 "OpenBLAS error: Memory allocation still failed after 10 retries, giving up.",
                 "OSError: [Errno 12] Cannot allocate memory"):  # fmt: skip
        pod = _pod(resources={"limits": {"memory": "64Mi"}}, ready=False, restartCount=1)
        log = ["starting", line, "[supervisor] exited with 1; restart 1 in 1.0 s"]
        cause = compute_findings(Facts(_deployment(ready=0), [ReplicaFacts(pod, log_tail=log)], []))[0].cause
        assert cause.endswith(f"at its 64Mi memory limit; last log line: {line}"), cause
