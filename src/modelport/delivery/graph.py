"""The stage graph: who waits for whom, derived from the inputs each stage names. Pure.

    train ─▶ evaluate ─▶ gate ─▶ publish ─▶ release ─▶ promote
                                        └─▶ build

A stage depends on the stages whose outputs it names (`evaluate.evaluation`); a stage is ready
when every stage it depends on has finished. Stages ready at the same time may run in parallel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol


class StageLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> list[str]: ...
    @property
    def kind(self) -> str: ...
    @property
    def made(self) -> tuple[str, ...]: ...


def split_ref(ref: str) -> tuple[str, str]:
    stage, _, output = ref.partition(".")
    return stage, output


def dependencies(stage: StageLike) -> set[str]:
    return {split_ref(ref)[0] for ref in stage.inputs}


def check(stages: Sequence[StageLike]) -> list[str]:
    """Every input names an output some stage makes; each stage gets the inputs its kind needs;
    no cycles; a publish waits for every gate. Problems name the stages."""
    from modelport.delivery.definition import KINDS, PROVIDES

    by_name = {s.name: s for s in stages}
    problems: list[str] = []
    for i, stage in enumerate(stages):
        given: set[str] = set()
        for j, ref in enumerate(stage.inputs):
            where = f"spec.stages[{i}].inputs[{j}]"
            name, output = split_ref(ref)
            source = by_name.get(name)
            if not output:
                problems.append(f"{where}: {ref!r}: name an output as STAGE.OUTPUT (e.g. train.model)")
            elif source is None:
                problems.append(
                    f"{where}: stage '{stage.name}' needs {ref!r}, but no stage is named '{name}'"
                )
            elif name == stage.name:
                problems.append(f"{where}: stage '{stage.name}' cannot take its own output {ref!r}")
            elif output not in source.made:
                problems.append(
                    f"{where}: stage '{stage.name}' needs {ref!r}, but stage '{name}' makes "
                    f"{list(source.made) or 'nothing'}"
                )
            else:
                given |= PROVIDES.get(output, {output})
        for need in KINDS[stage.kind].needs:
            if need not in given:
                makers = [s.name for s in stages if any(need in PROVIDES.get(o, {o}) for o in s.made)]
                hint = f" (e.g. {makers[0]}.{next(o for o in by_name[makers[0]].made)})" if makers else ""
                problems.append(
                    f"spec.stages[{i}].inputs: a {stage.kind} stage needs a {need} input{hint}; "
                    f"stage '{stage.name}' names none"
                )
    if problems:
        return problems
    cycle = find_cycle(stages)
    if cycle:
        return [f"spec.stages: stages {' → '.join(cycle)} form a cycle: none of them could start"]
    return _gates_first(stages)


def _gates_first(stages: Sequence[StageLike]) -> list[str]:
    """A publish that does not wait for a gate could publish what the gate refuses."""
    gates = [s.name for s in stages if s.kind == "gate"]
    problems = []
    for i, stage in enumerate(stages):
        if stage.kind != "publish":
            continue
        before = upstream(stages, stage.name)
        for gate in gates:
            if gate not in before:
                problems.append(
                    f"spec.stages[{i}].inputs: stage '{stage.name}' does not wait for gate '{gate}': "
                    f"add {gate}.verdict to its inputs"
                )
    return problems


def find_cycle(stages: Sequence[StageLike]) -> list[str]:
    """A cycle as the stages along it, first one repeated at the end; [] when there is none."""
    deps = {s.name: sorted(dependencies(s)) for s in stages}
    state: dict[str, str] = {}  # visiting | done
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = "visiting"
        path.append(name)
        for dep in deps.get(name, []):
            if state.get(dep) == "visiting":
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[name] = "done"
        return []

    for stage in stages:
        if stage.name not in state:
            found = visit(stage.name)
            if found:
                return found
    return []


def upstream(stages: Sequence[StageLike], name: str) -> set[str]:
    """Every stage `name` waits for, directly or not."""
    deps = {s.name: dependencies(s) for s in stages}
    seen: set[str] = set()
    todo = list(deps.get(name, ()))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += deps.get(current, ())
    return seen


def downstream(stages: Sequence[StageLike], name: str) -> set[str]:
    """`name` and every stage that waits for it, directly or not (what `--from name` runs)."""
    return {s.name for s in stages if name in upstream(stages, s.name)} | {name}


def order(stages: Sequence[StageLike]) -> list[list[str]]:
    """Waves: each wave's stages wait only for earlier waves'. E.g. train → [evaluate, build-ctx]
    → ...: [["train"], ["evaluate", "build-ctx"], ...]. Assumes `check` found no cycle."""
    deps = {s.name: dependencies(s) for s in stages}
    done: set[str] = set()
    waves = []
    while len(done) < len(deps):
        wave = [name for name in deps if name not in done and deps[name] <= done]
        waves.append(wave)
        done |= set(wave)
    return waves


def ready(deps: Mapping[str, Iterable[str]], finished: set[str], started: set[str]) -> list[str]:
    """The stages that may start now: not started, and every dependency finished."""
    return [name for name, wanted in deps.items() if name not in started and set(wanted) <= finished]
