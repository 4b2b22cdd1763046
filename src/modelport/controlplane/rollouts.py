"""The Rollout controller: a Deployment whose new revisions go out as canaries, step by step
(Argo Rollouts' `strategy.canary`), judged by AnalysisRuns, and taken back on their own.

A Rollout owns ReplicaSets as a Deployment does (the same names, hashes and revisions). Its
status names the stable revision (`stableHash`), the canary (`canaryHash`), the step it is at
and the canary's share of the requests (`canaryWeight`); the Service controller turns that share
into HAProxy server weights, exactly, whatever the replica counts. The promises:

    the stable revision keeps all its replicas until the canary is promoted and fully available;
    a weight is set only once the canary replicas it needs are available (the Service balances
    ready replicas only, so an unready canary never gets a request);
    on abort (a failed analysis, `modelport rollout abort`, the progress deadline) the weight goes
    back to 0 at once and the canary is scaled down abortScaleDownDelaySeconds later.

Steps: `setWeight: N` (scale the canary to ceil(replicas * N%), wait until available, set the
weight), `setMirror: {percent: N}` (the same scaling, then `mirrorPercent`: stable's replicas copy
N% of what they answer to the canary, controlplane/mirrors.py; until a later setMirror, promotion
or abort), `setHeaderRoute: {name, match}` (the same, for one replica; then `headerRoutes`:
requests whose headers match go to the canary whatever its weight, the Service controller sets
them in HAProxy; a step with the name and no match removes the route; all end at promotion or
abort), `pause: {duration}` (or `{}`: until promoted), `analysis: {templates}` (an AnalysisRun;
Successful goes on, Failed or Error aborts, Inconclusive pauses for a person). After the last
step the canary is scaled to the full count and, once available, becomes the stable revision.

What a person asks (`modelport rollout promote [--full] | abort | retry`) comes as an annotation
(`ROLLOUT_COMMAND`: "VERB ID"); the controller acts on each ID once. Everything is in the store, so a
restarted control plane carries on from the same step with the same weights.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, cast

from pydantic import ValidationError

from modelport.controlplane.deployment_status import Census, replica_set_status
from modelport.controlplane.deployments import DeploymentController
from modelport.controlplane.meta import (
    API_VERSION,
    ROLLOUT_COMMAND,
    iso,
    owner_ref,
    parse_iso,
    template_hash,
)
from modelport.controlplane.objects import Deployment, Obj, Pod, ReplicaSet, ViewCache
from modelport.controlplane.rollout import Revision, fenceposts, next_new_replicas, next_old_replicas
from modelport.errors import ModelportError
from modelport.spec import (
    AnalysisTemplate,
    BlueGreenStrategy,
    Rollout,
    RolloutSpec,
    SetHeaderRoute,
    seconds,
    to_dict,
)  # fmt: skip

log = logging.getLogger("modelport.controlplane")
VERBS = ("promote", "promote-full", "abort", "retry")
DONE = ("Successful", "Failed", "Error", "Inconclusive")


def parse_rollout(raw: Obj) -> Deployment | None:
    """A Rollout as the Deployment controller's view (its spec a RolloutSpec); None (logged) if
    a stored one no longer parses."""
    try:
        typed = Rollout.model_validate(raw)
    except ValidationError as exc:
        log.warning("rollout %s/%s: %s", raw["metadata"]["namespace"], raw["metadata"]["name"], exc)
        return None
    return Deployment(typed.metadata, typed.spec, typed.status, raw)


def command_of(raw: Obj) -> tuple[str, str] | None:
    """The verb and id of the last command given, if well formed."""
    text = raw["metadata"].get("annotations", {}).get(ROLLOUT_COMMAND, "")
    verb, _, ident = text.partition(" ")
    return (verb, ident) if verb in VERBS and ident else None


def _steps_of(ro: Deployment) -> int:
    canary = cast(RolloutSpec, ro.spec).strategy.canary
    return len(canary.steps) if canary is not None else 0


def _share(step: Any) -> int | None:
    """The share of requests a step gives the canary, which its replicas must be ready for: its
    weight, its mirror's percent, or (a header route) enough for one replica; None: no share."""
    if step.set_weight is not None:
        return int(step.set_weight)
    if step.set_mirror is not None:
        return int(step.set_mirror.percent)
    return 1 if step.set_header_route is not None else None


def _end_routes(st: Obj) -> None:
    """No more copies to the canary, no more requests routed to it by their headers."""
    st.pop("mirrorPercent", None)
    st.pop("headerRoutes", None)


def canary_replicas(replicas: int, weight: int) -> int:
    """How many canary replicas a weight needs: its share of the count, rounded up, at least one."""
    if weight <= 0:
        return 0
    return min(replicas, max(1, math.ceil(replicas * weight / 100)))


class RolloutController(DeploymentController):
    """Reuses the Deployment controller's ReplicaSet bookkeeping (create, scale, renumber, clean up)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rollouts = ViewCache(parse_rollout)

    def sync_all(self) -> None:
        rollouts = self._rollouts.views(self._store.list_shared("Rollout"))
        if not rollouts:
            return
        replica_sets = self._replica_sets.views(self._store.list_shared("ReplicaSet"))
        pods_of: dict[str, list[Pod]] = defaultdict(list)
        for pod in self._pods.views(self._store.list_shared("Pod")):
            for owner in pod.owners:
                pods_of[owner].append(pod)
        for ro in (r for r in rollouts if r is not None):
            mine = [rs for rs in replica_sets if ro.uid in rs.owners]
            try:
                self.sync(ro, mine, pods_of)
            except ModelportError as exc:  # a conflict with a writer: the next round sees the new state
                if exc.code.name not in ("ABORTED", "NOT_FOUND", "ALREADY_EXISTS"):
                    raise

    def sync(self, ro: Deployment, replica_sets: list[ReplicaSet], pods_of: Mapping[str, list[Pod]]) -> None:
        census = Census(pods_of, ro.spec.min_ready_seconds, self._clock.now())
        new, olds, _ = self._revisions(ro, replica_sets)
        st: Obj = dict(ro.status)
        if new is not None:
            by_hash = {rs.template_hash: rs for rs in [new, *olds]}
            stable = by_hash.get(st.get("stableHash"))
            command = command_of(ro.raw)
            if command is not None and command[1] == st.get("command"):
                command = None
            if command is not None:
                st["command"] = command[1]
            blue_green = cast(RolloutSpec, ro.spec).strategy.blue_green
            if blue_green is not None and stable is not None:
                new, olds = self._blue_green(ro, blue_green, new, stable, olds, census, st, command)
            elif stable is None or stable.uid == new.uid:
                new, olds = self._steady(ro, new, olds, census, st)
            else:
                self._canary(ro, new, stable, [o for o in olds if o.uid != stable.uid], census, st, command)
        self._cleanup(ro, [o for o in olds if o.template_hash != st.get("stableHash")], census)
        self._write(ro, new, olds, census, st)

    # -- no canary: the first revision, or the stable one again --

    def _steady(
        self, ro: Deployment, new: ReplicaSet, olds: list[ReplicaSet], census: Census, st: Obj
    ) -> tuple[ReplicaSet, list[ReplicaSet]]:
        replicas = ro.spec.replicas
        if new.replicas != replicas:
            new = self._scale(ro, new, replicas)
        olds = [self._scale(ro, o, 0) if o.replicas else o for o in olds]
        if census.available(new) >= replicas and st.get("stableHash") != new.template_hash:
            first = "stableHash" not in st
            st["stableHash"] = new.template_hash
            if not first:
                self._events.event(ro.raw, "Normal", "RolloutCompleted", f"{new.name} is the stable revision")
        if st.get("stableHash") == new.template_hash:
            steps = _steps_of(ro)
            message = st["message"] if st.get("phase") == "Healthy" else "stable revision serving"
            if st.get("canaryHash") and st.get("canaryHash") != new.template_hash:
                message = f"canary {st['canaryHash']} abandoned: the template is the stable one again"
                self._terminate_runs(ro, st["canaryHash"])
            st.update(canaryHash=new.template_hash, canaryWeight=0, currentStepIndex=steps, abort=False)
            st.update(phase="Healthy", message=message)
            st.pop("pauseStartTime", None)
            _end_routes(st)
        else:
            st.update(phase="Progressing", message=f"waiting for {new.name} to be available")
        return new, olds

    # -- a canary --

    @staticmethod
    def _canary_spec(ro: Deployment) -> Any:
        return cast(RolloutSpec, ro.spec).strategy.canary

    def _begin(
        self, ro: Deployment, canary: ReplicaSet, stable: ReplicaSet, others: list[ReplicaSet],
        st: Obj, verb: str | None, scale_down_delay: float,
    ) -> bool:  # fmt: skip
        """What both strategies do first with a new revision: start it from the first step if it
        is new, keep stable whole, retire any other, act on abort and retry; True while aborted
        (the new revision then gets no request, and no replica past `scale_down_delay`)."""
        now = self._clock.now()
        if st.get("canaryHash") != canary.template_hash:  # a new canary: from the first step
            if st.get("canaryHash") and st["canaryHash"] != st["stableHash"]:
                self._terminate_runs(ro, st["canaryHash"])
            st.update(canaryHash=canary.template_hash, currentStepIndex=0, canaryWeight=0, abort=False)
            st.update(progressAt=iso(now), phase="Progressing", message=f"canary {canary.name} started")
            for key in ("abortedAt", "pauseStartTime", "previewReadyAt", "mirrorPercent", "headerRoutes",
                        "rolling"):  # fmt: skip
                st.pop(key, None)
        # Stable keeps every replica until promotion (a rolling promotion scales it down).
        if stable.replicas != ro.spec.replicas and not st.get("rolling"):
            self._scale(ro, stable, ro.spec.replicas)
        for other in others:
            if other.replicas:
                self._scale(ro, other, 0)
        if verb == "abort" and not st.get("abort"):
            self._abort(ro, st, "aborted by `modelport rollout abort`")
        elif verb == "retry" and st.get("abort"):
            self._delete_runs(ro, st["canaryHash"])
            st.update(abort=False, currentStepIndex=0, canaryWeight=0, progressAt=iso(now))
            st.update(phase="Progressing", message="retrying from the first step")
            st.pop("abortedAt", None)
            self._events.event(ro.raw, "Normal", "RolloutRetried", f"retrying canary {canary.name}")
        if st.get("abort"):
            st["canaryWeight"] = 0
            _end_routes(st)
            since = parse_iso(st.get("abortedAt") or iso(now))
            if canary.replicas and now - since >= scale_down_delay:
                self._scale(ro, canary, 0)
            return True
        return False

    def _canary(
        self, ro: Deployment, canary: ReplicaSet, stable: ReplicaSet, others: list[ReplicaSet],
        census: Census, st: Obj, command: tuple[str, str] | None,
    ) -> None:  # fmt: skip
        spec = self._canary_spec(ro)
        verb = command[0] if command else None
        if self._begin(ro, canary, stable, others, st, verb, spec.abort_scale_down_delay_seconds):
            return
        if spec.analysis is not None:  # background analysis, from the first step to promotion
            run = self._run(ro, st["canaryHash"], "background", spec.analysis.templates, st)
            phase = run.get("status", {}).get("phase")
            st["analysis"] = {"run": run["metadata"]["name"], "phase": phase}
            if phase in ("Failed", "Error"):
                self._abort(ro, st, run["status"].get("message", f"analysis {phase}"))
                return
        if ro.spec.paused:
            st.update(phase="Paused", message="spec.paused is true")
            return
        self._steps(ro, canary, stable, census, st, verb, spec)

    def _steps(
        self, ro: Deployment, canary: ReplicaSet, stable: ReplicaSet, census: Census, st: Obj,
        verb: str | None, spec: Any,
    ) -> None:  # fmt: skip
        now = self._clock.now()
        steps = spec.steps
        if verb == "promote-full":
            st["currentStepIndex"] = len(steps)
        promote = verb == "promote"
        while (i := int(st.get("currentStepIndex", 0))) < len(steps):
            step = steps[i]
            if (share := _share(step)) is not None:
                need = canary_replicas(ro.spec.replicas, share)
                if canary.replicas < need:
                    canary = self._scale(ro, canary, need)
                if census.available(canary) < need:
                    self._waiting(ro, st, f"step {i}: waiting for {need} canary replicas to be available")
                    return
                if step.set_weight is not None:
                    st["canaryWeight"] = step.set_weight
                    self._events.event(ro.raw, "Normal", "SetWeight", f"canary weight {share}%")
                elif step.set_header_route is not None:  # the Service controller routes them
                    self._header_route(ro, st, step.set_header_route)
                else:  # the mirror controller tells stable's replicas (controlplane/mirrors.py)
                    st["mirrorPercent"] = share
                    self._events.event(
                        ro.raw, "Normal", "SetMirror", f"{share}% of requests copied to the canary"
                    )
            elif step.pause is not None:
                if not promote:
                    if step.pause.duration is None:
                        st.update(
                            phase="Paused", message=f"step {i}: paused until `modelport rollout promote`"
                        )
                        return
                    started = parse_iso(st.setdefault("pauseStartTime", iso(now)))
                    if now - started < seconds(step.pause.duration):
                        st.update(phase="Paused", message=f"step {i}: paused for {step.pause.duration}")
                        return
                promote = False
                st.pop("pauseStartTime", None)
            else:
                run = self._run(ro, st["canaryHash"], str(i), step.analysis.templates, st)
                name = run["metadata"]["name"]
                phase = run.get("status", {}).get("phase", "Pending")
                st["analysis"] = {"run": name, "phase": phase}
                if phase in ("Failed", "Error"):
                    self._abort(ro, st, run["status"].get("message", f"analysis {phase}"))
                    return
                if phase == "Inconclusive" and not promote:
                    why = run["status"].get("message", "")
                    message = f"step {i}: analysis {name} was inconclusive ({why}); promote or abort"
                    st.update(phase="Paused", message=message)
                    return
                if phase not in ("Successful", "Inconclusive"):
                    st.update(
                        phase="Progressing", message=f"step {i}: analysis {run['metadata']['name']} running"
                    )
                    return
                promote = False
            st.update(currentStepIndex=i + 1, progressAt=iso(now), phase="Progressing")
        self._promote(ro, canary, stable, census, st)

    def _promote(
        self, ro: Deployment, canary: ReplicaSet, stable: ReplicaSet, census: Census, st: Obj
    ) -> None:
        replicas = ro.spec.replicas
        spec = self._canary_spec(ro)
        if spec.max_surge is not None or spec.max_unavailable is not None:
            canary = self._rolling_promotion(ro, canary, stable, census, st)
        elif canary.replicas < replicas:
            canary = self._scale(ro, canary, replicas)
        if census.available(canary) < replicas:
            self._waiting(ro, st, f"promoting: waiting for {replicas} canary replicas to be available")
            return
        self._terminate_runs(ro, st["canaryHash"])
        st.update(stableHash=canary.template_hash, canaryWeight=0, phase="Healthy")
        st.pop("rolling", None)
        _end_routes(st)
        st.update(message=f"{canary.name} promoted")
        self._events.event(ro.raw, "Normal", "RolloutPromoted", f"{canary.name} promoted to stable")

    def _rolling_promotion(
        self, ro: Deployment, canary: ReplicaSet, stable: ReplicaSet, census: Census, st: Obj
    ) -> ReplicaSet:
        """One step of a rolling promotion, the Deployment's arithmetic (controlplane/rollout.py):
        4 replicas, maxSurge 1, maxUnavailable 0, canary at 2 beside stable's 4 -> stable 2 once
        the canary's are available, then canary 3, stable 1, canary 4, stable 0."""
        spec, replicas = self._canary_spec(ro), ro.spec.replicas
        surge, unavailable = fenceposts(
            spec.max_surge if spec.max_surge is not None else "25%",
            spec.max_unavailable if spec.max_unavailable is not None else "25%",
            replicas,
        )
        st["rolling"] = True  # _begin leaves stable's count to this from now on
        new = Revision(canary.name, canary.replicas, census.available(canary))
        old = Revision(stable.name, stable.replicas, census.available(stable))
        wanted = next_new_replicas(replicas, surge, new, [old])
        if wanted != canary.replicas:
            canary = self._scale(ro, canary, wanted)
            new = Revision(canary.name, wanted, new.available)
        kept = next_old_replicas(replicas, unavailable, new, [old])[stable.name]
        if kept != stable.replicas:
            self._scale(ro, stable, kept)
        return canary

    def _header_route(self, ro: Deployment, st: Obj, route: SetHeaderRoute) -> None:
        """`headerRoutes` (name -> its matches): a route with `match` set, one without removed."""
        routes = dict(st.get("headerRoutes", {}))
        if route.match:
            routes[route.name] = [m.model_dump(by_alias=True, exclude_none=True) for m in route.match]
            said = f"requests matching header route {route.name} go to the canary"
        else:
            routes.pop(route.name, None)
            said = f"header route {route.name} removed"
        st["headerRoutes"] = routes
        if not routes:
            st.pop("headerRoutes")
        self._events.event(ro.raw, "Normal", "SetHeaderRoute", said)

    def _waiting(self, ro: Deployment, st: Obj, message: str) -> None:
        """Waiting on the canary's replicas: past progressDeadlineSeconds without progress, abort."""
        since = parse_iso(st.get("progressAt") or iso(self._clock.now()))
        if self._clock.now() - since > ro.spec.progress_deadline_seconds:
            self._abort(
                ro, st, f"ProgressDeadlineExceeded: {message} for over {ro.spec.progress_deadline_seconds} s"
            )
        else:
            st.update(phase="Progressing", message=message)

    def _abort(self, ro: Deployment, st: Obj, reason: str) -> None:
        st.update(abort=True, abortedAt=iso(self._clock.now()), canaryWeight=0, phase="Degraded")
        st.pop("rolling", None)  # stable gets every replica back
        _end_routes(st)
        st["message"] = f"RolloutAborted: {reason}"
        self._terminate_runs(ro, st.get("canaryHash", ""))
        self._events.event(
            ro.raw, "Warning", "RolloutAborted", f"Rollout aborted, traffic back to stable: {reason}"
        )

    # -- blue-green --

    def _blue_green(
        self, ro: Deployment, bg: BlueGreenStrategy, new: ReplicaSet, stable: ReplicaSet,
        olds: list[ReplicaSet], census: Census, st: Obj, command: tuple[str, str] | None,
    ) -> tuple[ReplicaSet, list[ReplicaSet]]:  # fmt: skip
        """The new revision at full size behind the preview Service; promotion moves the active
        Service to it (the old one kept scaleDownDelaySeconds, and switched back to if the
        post-promotion analysis fails)."""
        now = self._clock.now()
        verb = command[0] if command else None
        if stable.uid == new.uid:  # promoted (or nothing new): the previous one kept a while
            previous = next((o for o in olds if o.template_hash == st.get("previousHash")), None)
            if previous is not None and bg.post_promotion_analysis is not None:
                # Judged against the revision it replaced (the stable one is itself now).
                templates = bg.post_promotion_analysis.templates
                run = self._run(ro, new.template_hash or "", "post", templates, st, previous.template_hash)
                phase = run.get("status", {}).get("phase", "Pending")
                st["analysis"] = {"run": run["metadata"]["name"], "phase": phase}
                if phase in ("Failed", "Error"):  # back to the previous revision, at once
                    st.update(stableHash=previous.template_hash, canaryHash=new.template_hash)
                    st.pop("previousHash", None)
                    self._abort(ro, st, run["status"].get("message", f"post-promotion analysis {phase}"))
                    return new, olds
                if phase not in ("Successful", "Inconclusive"):
                    return self._keeping(ro, new, olds, previous, census, st)
            promoted = parse_iso(st.get("promotedAt") or iso(now))
            if previous is not None and now - promoted < bg.scale_down_delay_seconds:
                return self._keeping(ro, new, olds, previous, census, st)
            st.pop("previousHash", None)
            return self._steady(ro, new, olds, census, st)
        others = [o for o in olds if o.uid != stable.uid]
        if self._begin(ro, new, stable, others, st, verb, bg.scale_down_delay_seconds):
            return new, olds
        if new.replicas != ro.spec.replicas:
            new = self._scale(ro, new, ro.spec.replicas)
        if census.available(new) < ro.spec.replicas:
            self._waiting(ro, st, f"waiting for the preview's {ro.spec.replicas} replicas to be available")
            return new, olds
        ready_at = parse_iso(st.setdefault("previewReadyAt", iso(now)))
        promote = verb in ("promote", "promote-full")
        if bg.pre_promotion_analysis is not None and verb != "promote-full":
            run = self._run(ro, new.template_hash or "", "pre", bg.pre_promotion_analysis.templates, st)
            phase = run.get("status", {}).get("phase", "Pending")
            st["analysis"] = {"run": run["metadata"]["name"], "phase": phase}
            if phase in ("Failed", "Error"):
                self._abort(ro, st, run["status"].get("message", f"pre-promotion analysis {phase}"))
                return new, olds
            if phase not in ("Successful", "Inconclusive") or (phase == "Inconclusive" and not promote):
                st.update(phase="Paused" if phase == "Inconclusive" else "Progressing",
                          message=f"pre-promotion analysis {run['metadata']['name']}: {phase}")  # fmt: skip
                return new, olds
        if not promote and not bg.auto_promotion_enabled:
            st.update(
                phase="Paused",
                message="preview ready; `modelport rollout promote` switches the active Service",
            )
            return new, olds
        wait = bg.auto_promotion_seconds or 0
        if not promote and now - ready_at < wait:
            st.update(phase="Paused", message=f"preview ready; promoted after autoPromotionSeconds ({wait})")
            return new, olds
        st.update(previousHash=stable.template_hash, stableHash=new.template_hash, promotedAt=iso(now))
        st.update(phase="Healthy", message=f"{new.name} promoted: the active Service switched to it")
        self._events.event(
            ro.raw, "Normal", "RolloutPromoted", f"{new.name} promoted: active Service switched"
        )
        return new, olds

    def _keeping(
        self, ro: Deployment, new: ReplicaSet, olds: list[ReplicaSet], previous: ReplicaSet,
        census: Census, st: Obj,
    ) -> tuple[ReplicaSet, list[ReplicaSet]]:  # fmt: skip
        """Steady, but the previous revision keeps its replicas (it may be switched back to)."""
        new, rest = self._steady(ro, new, [o for o in olds if o.uid != previous.uid], census, st)
        return new, [*rest, previous]

    # -- AnalysisRuns --

    def _run(
        self, ro: Deployment, canary_hash: str, which: str, templates: list[Any], st: Obj,
        stable_hash: str | None = None,
    ) -> Obj:  # fmt: skip
        """The AnalysisRun of this canary and step (made now if new)."""
        name = f"{ro.metadata.name}-{canary_hash}-{which}"
        found = self._store.get("AnalysisRun", ro.metadata.namespace, name)
        if found is not None:
            return found
        metrics: list[Obj] = []
        missing = []
        for ref in templates:
            raw = self._store.get("AnalysisTemplate", ro.metadata.namespace, ref.template_name)
            if raw is None:
                missing.append(ref.template_name)
            else:
                metrics += to_dict(AnalysisTemplate.model_validate(raw))["spec"]["metrics"]
        status: Obj = {"phase": "Running", "startedAt": iso(self._clock.now()), "metricResults": []}
        if missing:
            status = {"phase": "Error", "message": f"AnalysisTemplate {', '.join(missing)} not found"}
        run = {
            "apiVersion": API_VERSION,
            "kind": "AnalysisRun",
            "metadata": {
                "name": name, "namespace": ro.metadata.namespace, "ownerReferences": [owner_ref(ro.raw)],
                "labels": {"rollout": ro.metadata.name, "canary-hash": canary_hash, "step": which},
            },
            "spec": {"metrics": metrics,
                     "args": {"stableHash": stable_hash or st["stableHash"], "canaryHash": canary_hash}},
            "status": status,
        }  # fmt: skip
        created = self._store.create(run)
        self._events.event(ro.raw, "Normal", "AnalysisRunCreated", f"analysis {name} started")
        return created

    def _runs(self, ro: Deployment, canary_hash: str) -> list[Obj]:
        runs = self._store.list_kind("AnalysisRun", ro.metadata.namespace)[0]
        return [r for r in runs if r["metadata"].get("labels", {}).get("canary-hash") == canary_hash
                and r["metadata"].get("labels", {}).get("rollout") == ro.metadata.name]  # fmt: skip

    def _terminate_runs(self, ro: Deployment, canary_hash: str) -> None:
        """Stop the canary's runs still measuring (the step they judged is over)."""
        for run in self._runs(ro, canary_hash):
            if run.get("status", {}).get("phase") not in DONE and not run["spec"].get("terminate"):
                with contextlib.suppress(ModelportError):
                    self._store.update({**run, "spec": {**run["spec"], "terminate": True},
                                        "metadata": {k: v for k, v in run["metadata"].items()
                                                     if k != "resourceVersion"}})  # fmt: skip

    def _delete_runs(self, ro: Deployment, canary_hash: str) -> None:
        for run in self._runs(ro, canary_hash):
            with contextlib.suppress(ModelportError):
                self._store.delete("AnalysisRun", run["metadata"]["namespace"], run["metadata"]["name"])

    # -- status --

    def _write(
        self, ro: Deployment, new: ReplicaSet | None, olds: list[ReplicaSet], census: Census, st: Obj
    ) -> None:
        all_rs = ([new] if new is not None else []) + olds
        st.update(
            observedGeneration=ro.generation,
            replicas=sum(len(census.live(rs)) for rs in all_rs),
            updatedReplicas=len(census.live(new)) if new is not None else 0,
            readyReplicas=sum(census.ready(rs) for rs in all_rs),
            availableReplicas=sum(census.available(rs) for rs in all_rs),
            steps=_steps_of(ro),
        )
        if new is not None:
            st["currentPodHash"] = template_hash(ro.template)
        if st != ro.status:
            self._store.update_status({**ro.raw, "status": st})
        for rs in all_rs:
            rs_status: Obj = replica_set_status(rs, census)
            if rs.status != rs_status:
                self._store.update_status({**rs.raw, "status": rs_status})
