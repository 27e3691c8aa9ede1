"""The host-lifecycle vocabulary at the bottom of the package (it imports nothing of ours but errors),
so triage, planning, execution, reporting and the lab read one definition: verdicts, plan actions,
people's decisions, the recovery stages, each action's path through them, the states a host passes
through, and each stage's method.

A stage is one data file, `stages/<name>.yml`, found here by listing the folder: its place in the
order, its two states, the paths it is on, whether it is destructive, whether it needs the host's
own connection, its method, what it records (`records`, carried out by the matching module of
`orchestrator.execution.stages`), and its default duration. The engine asks the stage
(`stage(name).destructive`) instead of comparing stage names. Adding a stage means one data file plus
its playbook (`<name>.yml` in the playbooks folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from orchestrator.errors import OrchestratorError, RefusedError

# A host's plan action (planning decides it; execution runs rebuild, verify and protected).
REBUILD = "rebuild"
VERIFY = "verify"
HOLD = "hold"
PROTECTED = "protected"
ACTIONS = (REBUILD, VERIFY, HOLD, PROTECTED)
SCHEDULED = (REBUILD, VERIFY, PROTECTED)  # the actions that take a place in a wave
EXECUTABLE_ACTIONS = SCHEDULED  # the actions execution runs (hold waits for a person)

# A triage verdict.
CLEAN = "clean"
SUSPICIOUS = "suspicious"
INFECTED = "infected"
UNREACHABLE = "unreachable"
ERROR = "error"
VERDICTS = (  # a triage verdict, in the order tables show them
    CLEAN,
    SUSPICIOUS,
    INFECTED,
    UNREACHABLE,
    ERROR,
)
# The one ranking of verdicts, worst first: the order displays sort hosts in and which of a host's
# verdicts is its worst (a host nobody could triage ranks above a clean one).
WORST_FIRST = (INFECTED, SUSPICIOUS, ERROR, UNREACHABLE, CLEAN)
RANK = {verdict: rank for rank, verdict in enumerate(WORST_FIRST)}  # 0 is the worst


def worse(verdict: str, than: str) -> bool:
    """Whether `verdict` ranks worse than `than` (a name that is no verdict ranks as clean)."""
    return RANK.get(verdict, RANK[CLEAN]) < RANK.get(than, RANK[CLEAN])


# Verdicts that say the attacker was there; their host is contained (isolated, evidence collected)
# right after approval.
AFFECTED = (INFECTED, SUSPICIOUS)
TO_CONTAIN = AFFECTED
# Verdicts whose host nobody could look at: the network team isolates it, on request.
UNKNOWN = (UNREACHABLE, ERROR)

# A person's decision about one host (`orchestrator host decide`), honoured by the next plan and run:
DECIDE_REBUILD = "rebuild"  # rebuild it, through its out-of-band reimage method if unreachable
DECIDE_VERIFY = "verify"  # verify only: a clean host nobody could triage, a protected host's finding accepted
DECIDE_HOLD = "hold"  # keep it out of the plan (a protected host's finding rejected, a host to look at)
DECIDE_RELEASE = "release"  # reconnect it without waiting for its held dependencies
DECIDE_DONE = "done"  # rebuilt by hand, outside the orchestrator: counts as recovered
DECISIONS = (DECIDE_REBUILD, DECIDE_VERIFY, DECIDE_HOLD, DECIDE_RELEASE, DECIDE_DONE)

# Containment per host, as `status` and the report show it.
CONTAINED = "contained"  # isolated by its isolate stage
REQUESTED = "requested"  # unreachable: the network team was asked to isolate it
NOT_YET = "not yet"

# What a stage may record (`records:` in its file); each is carried out by execution.stages.<kind>.
RECORDS = ("evidence", "restore_point", "retriage")
PATH_NAMES = (REBUILD, VERIFY)  # the two paths; a protected host takes the verify path


@dataclass(frozen=True)
class Stage:
    name: str
    order: int
    active: str  # the host's state while the stage runs ("wiping")
    done: str  # its state once the stage finished ("wiped")
    paths: frozenset[str]  # the action paths it is on (rebuild, verify)
    # Containment: run for every rebuilt host at once right after approval, whatever its wave.
    contain: bool = False
    # Checked before: the run asks the operator once before the first destructive stage.
    destructive: bool = False
    # Done over the old system's own connection: an out-of-band rebuild (a person decided to rebuild
    # a host nobody could reach) passes it, the reason recorded.
    own_connection: bool = False
    # The host attribute naming how the stage is done (its duration and capacity depend on it).
    method: str | None = None
    # Methods carried out from the controller itself, never through an execution node.
    controller_methods: frozenset[str] = frozenset()
    # What the stage records besides its StageRun (see RECORDS).
    records: tuple[str, ...] = ()
    # Default duration per host, in minutes, and per method for a method stage.
    minutes: float = 0.0
    method_minutes: tuple[tuple[str, float], ...] = ()
    # The report's column for when the stage finished on a host (`isolated_at`), if it has one.
    report_column: str | None = None

    @property
    def playbook(self) -> str:
        return f"{self.name}.yml"

    def on_controller(self, host: object) -> bool:
        """True when this host's method for the stage runs from the controller, not an execution node."""
        return self.method is not None and getattr(host, self.method, None) in self.controller_methods


_KEYS = {
    "order",
    "states",
    "paths",
    "contain",
    "destructive",
    "own_connection",
    "method",
    "controller_methods",
    "records",
    "minutes",
    "method_minutes",
    "report_column",
}


def _stage(name: str, data: Any) -> Stage:
    """One stage file, checked: a shipped file that does not say what the engine needs stops here."""
    where = f"orchestrator/lifecycle/stages/{name}.yml"
    if not isinstance(data, dict) or set(data) - _KEYS or not {"order", "states", "paths"} <= set(data):
        raise OrchestratorError(f"{where}: expected order, states, paths and only {', '.join(sorted(_KEYS))}")
    states = data["states"]
    if not (isinstance(states, list) and len(states) == 2 and all(isinstance(s, str) for s in states)):
        raise OrchestratorError(f"{where}: states: expected [active, done]")
    paths = frozenset(data["paths"])
    records = tuple(data.get("records") or ())
    if not paths <= set(PATH_NAMES) or not set(records) <= set(RECORDS):
        raise OrchestratorError(f"{where}: paths are {PATH_NAMES}, records are {RECORDS}")
    if not isinstance(data.get("report_column", ""), str):
        raise OrchestratorError(f"{where}: report_column: expected a column name")
    return Stage(
        name=name,
        order=int(data["order"]),
        active=states[0],
        done=states[1],
        paths=paths,
        contain=bool(data.get("contain", False)),
        destructive=bool(data.get("destructive", False)),
        own_connection=bool(data.get("own_connection", False)),
        method=data.get("method"),
        controller_methods=frozenset(data.get("controller_methods") or ()),
        records=records,
        minutes=float(data.get("minutes", 0)),
        method_minutes=tuple((str(k), float(v)) for k, v in (data.get("method_minutes") or {}).items()),
        report_column=data.get("report_column"),
    )


def _discover() -> tuple[Stage, ...]:
    # libyaml's safe loader when PyYAML has it: every command imports this module, and the pure
    # Python loader took a fifth of `status`'s time as a new process.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    folder = resources.files("orchestrator.lifecycle").joinpath("stages")
    found = [
        _stage(entry.name[: -len(".yml")], yaml.load(entry.read_text(encoding="utf-8"), Loader=loader))
        for entry in folder.iterdir()
        if entry.name.endswith(".yml")
    ]
    return tuple(sorted(found, key=lambda s: s.order))


# In the order stages run inside a wave (both paths meet at validate and reconnect).
STAGES: tuple[Stage, ...] = _discover()
BY_NAME = {s.name: s for s in STAGES}
STAGE_ORDER = tuple(s.name for s in STAGES)
# Stage -> the host attribute naming its method, for the stages whose duration depends on one.
METHOD_STAGES = {s.name: s.method for s in STAGES if s.method}

# Each action's path: the stages it runs, in order.
REBUILD_STAGES = tuple(s.name for s in STAGES if REBUILD in s.paths)
VERIFY_STAGES = tuple(s.name for s in STAGES if VERIFY in s.paths)
PATHS = {REBUILD: REBUILD_STAGES, VERIFY: VERIFY_STAGES, PROTECTED: VERIFY_STAGES}
REBUILD_ONLY = frozenset(REBUILD_STAGES) - frozenset(VERIFY_STAGES)
# The last stage of every path (reconnect): the host back on the network, which waits for what it
# depends on; the stage before it on each path is where a host waits (AWAITING).
RECONNECT = STAGE_ORDER[-1]
# Containment: the first stages of the rebuild path, run for every infected host at once right after
# approval, whatever its wave, tier or dependencies (an infected host must not wait on the network).
CONTAIN = tuple(s.name for s in STAGES if s.contain)

# The states a host passes through.
ACTIVE = {s.name: s.active for s in STAGES}
DONE = {s.name: s.done for s in STAGES}
START_STATES = frozenset({"new", "planned"})
FAILED = "failed"
RECOVERED = DONE[STAGE_ORDER[-1]]
# Rebuilt (or verified) and validated, still isolated: what it depends on is not recovered yet. Only
# reconnect follows; dependencies gate the service, never the rebuild work.
AWAITING = "awaiting-dependencies"
_STAGE_OF = {state: name for name, state in (*ACTIVE.items(), *DONE.items())}


def stage(name: str) -> Stage:
    return BY_NAME[name]


def stage_of(state: str) -> str | None:
    """The stage a host in `state` is in or has just finished (None for other states)."""
    return _STAGE_OF.get(state)


def path_for(action: str, protected: bool) -> tuple[str, ...]:
    """Protected hosts take the verify path whatever the plan says: checked here, at execution."""
    if protected:
        return VERIFY_STAGES
    if action in PATHS:
        return PATHS[action]
    raise RefusedError(f"action {action!r} is not executable (only {', '.join(EXECUTABLE_ACTIONS)})")


def next_on(path: tuple[str, ...], name: str) -> str | None:
    """The stage after `name` on `path` (None: the path ends there)."""
    index = path.index(name) + 1
    return path[index] if index < len(path) else None
