"""Whether the server, a model, a version is ready: what /readyz, /v2/health/ready,
/v2/models/M[/versions/V]/ready and gRPC ServerReady / ModelReady answer.

One process: its own models (every configured model has a version AVAILABLE).

Several workers (`serve --workers N`, server/workers.py) are one server behind one port, and the
kernel puts each connection on any of them; so a probe or client told "ready" must find every
worker ready, whichever one answered the probe:
- the server is ready when every worker is: each running, with a version of every model;
- a model is ready when every worker serves a version of it (not the same one: during a new
  version's rollout each worker switches when it has loaded it, and the model stays ready);
- a version is ready when every worker serves it (`available_versions`: the versions every
  worker serves).
Each worker publishes what it serves in the run's folder (siblings.Siblings.publish, whenever its
models change) and reads its siblings' there, a few small local files per probe. A worker that is
not running has nothing published: the supervisor removes a dead worker's file as it exits (the
end of the worker's pipe to it), its successor publishes once its models load, and until then
nothing is ready.
/healthz (liveness) stays each process's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelport import __version__
from modelport.repository.manager import ModelManager

# Each other worker's models and the versions it serves (None: that worker publishes nothing).
Published = Mapping[str, Sequence[int]] | None


class Readiness:
    def __init__(self, manager: ModelManager, others: Callable[[], list[Published]] | None = None) -> None:
        """`others`: the other workers' published models, read when asked (None: one process)."""
        self._manager = manager
        self._others = others or (lambda: [])

    def is_ready(self) -> bool:
        return self._manager.is_ready() and all(self._worker_ready(p) for p in self._others())

    def model_ready(self, name: str, version: int | None) -> bool:
        """A version of `name` (None: any) is served by every worker."""
        view = self._manager.view.get(name)
        if view is None:
            return False
        others = self._others()
        if version:
            here = version in view.versions
            return here and all(p is not None and version in p.get(name, ()) for p in others)
        return bool(view.versions) and all(p is not None and p.get(name) for p in others)

    def report(self, details: bool) -> tuple[bool, dict[str, Any]]:
        """/readyz's answer: ready or not, and (`details`) each model's state here and elsewhere."""
        others = self._others()
        ready = self._manager.is_ready() and all(self._worker_ready(p) for p in others)
        answer: dict[str, Any] = {"ready": ready, "version": __version__}
        if others:  # this worker first, then the others in order (a worker's index is not needed)
            answer["workers_ready"] = sum(self._worker_ready(p) for p in others) + self._manager.is_ready()
            answer["workers"] = len(others) + 1
        if not details:
            return ready, answer
        models = {}
        for name, view in self._manager.view.items():
            everywhere = set(view.versions)
            for published in others:
                everywhere &= set(published.get(name, ()) if published is not None else ())
            failed = {str(s.version): s.error_message for s in view.statuses if s.error_message}
            models[name] = {
                "ready": bool(view.versions) and all(p is not None and p.get(name) for p in others),
                "available_versions": sorted(everywhere),
                **({"problem": view.problem} if view.problem else {}),
                **({"failed_versions": failed} if failed else {}),
            }
        answer["models"] = models
        return ready, answer

    def _worker_ready(self, published: Published) -> bool:
        """Another worker serves a version of every model this one is configured with."""
        return published is not None and all(published.get(name) for name in self._manager.view)
