"""How long a host's recovery takes: per-stage figures (each stage's own file in
orchestrator/lifecycle/stages, or a durations file given with `plan --durations`), replaced by what
earlier runs measured, because the crisis cell's own pace beats anybody's guess.

A durations file has the shape `document()` returns: `stages: {stage: minutes}` and
`methods: {stage: {method: minutes}}` for the stages whose time depends on the host's method."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from orchestrator import lifecycle
from orchestrator.errors import OrchestratorError

# The stages of each action's path, as the execution engine runs them (protected hosts: verify).
STAGES_BY_ACTION: Mapping[str, tuple[str, ...]] = lifecycle.PATHS
STAGES = lifecycle.STAGE_ORDER
# Stages whose duration depends on the host's method, and the host attribute naming it.
METHOD_STAGES = lifecycle.METHOD_STAGES
SHIPPED = "orchestrator/lifecycle/stages"  # where the default figures come from


@dataclass(frozen=True)
class StageTime:
    seconds: float
    source: str  # "default" (from the file) or "measured" (median of finished stage runs)
    samples: int = 0


@dataclass(frozen=True)
class Durations:
    stages: Mapping[str, StageTime]
    methods: Mapping[tuple[str, str], StageTime]  # (stage, method) -> time
    file: str

    def stage_seconds(self, stage: str, method: str | None) -> float:
        if method is not None and (stage, method) in self.methods:
            return self.methods[(stage, method)].seconds
        return self.stages[stage].seconds

    def path_seconds(
        self, action: str, reimage_method: str | None, restore_method: str | None
    ) -> tuple[tuple[str, float], ...]:
        """Each stage of one host's path with its time, in order; a host on hold has none."""
        by_attribute = {"reimage_method": reimage_method, "restore_method": restore_method}
        methods = {stage: by_attribute.get(attribute) for stage, attribute in METHOD_STAGES.items()}
        return tuple((s, self.stage_seconds(s, methods.get(s))) for s in STAGES_BY_ACTION.get(action, ()))

    def host_seconds(self, action: str, reimage_method: str | None, restore_method: str | None) -> float:
        """One host's time through its path; a host on hold takes no wave time."""
        return sum(s for _, s in self.path_seconds(action, reimage_method, restore_method))

    def with_measured(self, measured: Mapping[tuple[str, str | None], tuple[float, int]]) -> Durations:
        """Replace figures by measured medians, keyed (stage, method): method is None for stages that
        do not depend on one, and for method stages measured on hosts without a method."""
        stages = dict(self.stages)
        methods = dict(self.methods)
        for (stage, method), (seconds, samples) in measured.items():
            if stage not in stages:
                continue  # a stage this planner does not estimate
            time = StageTime(seconds, "measured", samples)
            if method is not None and stage in METHOD_STAGES:
                methods[(stage, method)] = time
            elif method is None:
                stages[stage] = time
        return replace(self, stages=stages, methods=methods)

    def describe(self) -> dict[str, dict[str, Any]]:
        """Every figure used and where it came from, kept with the plan."""
        out: dict[str, dict[str, Any]] = {}
        for stage, t in self.stages.items():
            out[stage] = {"seconds": t.seconds, "source": t.source, "samples": t.samples}
        for (stage, method), t in sorted(self.methods.items()):
            out[f"{stage}:{method}"] = {"seconds": t.seconds, "source": t.source, "samples": t.samples}
        return out


def _minutes(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise OrchestratorError(f"{where}: expected minutes (a number >= 0), got {value!r}")
    return float(value) * 60.0


def document() -> dict[str, Any]:
    """The shipped figures (each stage's file) in the durations file's shape, to copy and edit."""
    return {
        "stages": {s.name: s.minutes for s in lifecycle.STAGES},
        "methods": {s.name: dict(s.method_minutes) for s in lifecycle.STAGES if s.method},
    }


def load(path: str | Path | None = None) -> Durations:
    """Read and check a durations file (the stages' own figures when `path` is None)."""
    if not path:
        return _parse(document(), SHIPPED)
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise OrchestratorError(f"{file}: cannot read stage durations: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise OrchestratorError(f"{file}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    return _parse(data, str(file))


def _parse(data: Any, file: str) -> Durations:
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        raise OrchestratorError(f"{file}: expected a mapping with 'stages' (see `orchestrator plan --help`)")
    unknown = set(data) - {"stages", "methods"}
    if unknown:
        raise OrchestratorError(
            f"{file}: unknown key(s) {', '.join(sorted(unknown))} (expected stages, methods)"
        )
    given = data["stages"]
    missing = [s for s in STAGES if s not in given]
    extra = sorted(set(given) - set(STAGES))
    if missing or extra:
        what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
        raise OrchestratorError(f"{file}: stages: {what} (stages are {', '.join(STAGES)})")
    stages = {s: StageTime(_minutes(given[s], f"{file}: stages.{s}"), "default") for s in STAGES}
    methods: dict[tuple[str, str], StageTime] = {}
    raw_methods = data.get("methods") or {}
    if not isinstance(raw_methods, dict) or set(raw_methods) - set(METHOD_STAGES):
        raise OrchestratorError(f"{file}: methods: expected a mapping with {' and/or '.join(METHOD_STAGES)}")
    for stage, by_method in raw_methods.items():
        if not isinstance(by_method, dict):
            raise OrchestratorError(f"{file}: methods.{stage}: expected a mapping of method: minutes")
        for method, minutes in by_method.items():
            where = f"{file}: methods.{stage}.{method}"
            methods[(stage, str(method))] = StageTime(_minutes(minutes, where), "default")
    return Durations(stages=stages, methods=methods, file=file)
