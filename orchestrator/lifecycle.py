"""The host-lifecycle vocabulary at the bottom of the package (it imports nothing of ours), so triage,
planning, execution and reporting read one definition: verdicts, plan actions, and the recovery
stages with what each one carries with it.

A stage's behaviour is data here: the engine asks the stage (`stage("restore").restore_point`)
instead of comparing stage names, and the planner takes the stage-to-method mapping from it. Adding a
stage means one row here plus its playbook (`<name>.yml`); what the stage needs that no flag
describes yet is a new flag, read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

# A host's plan action (planning decides it; execution runs rebuild, verify and protected).
REBUILD = "rebuild"
VERIFY = "verify"
HOLD = "hold"
PROTECTED = "protected"
ACTIONS = (REBUILD, VERIFY, HOLD, PROTECTED)
SCHEDULED = (REBUILD, VERIFY, PROTECTED)  # the actions that take a place in a wave

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


@dataclass(frozen=True)
class Stage:
    name: str
    # Checked before: the run asks the operator once before the first destructive stage.
    destructive: bool = False
    # The host attribute naming how the stage is done (its duration and capacity depend on it).
    method: str | None = None
    # Methods carried out from the controller itself, never through an execution node.
    controller_methods: frozenset[str] = frozenset()
    # A restore point is chosen (and recorded) before the playbook starts; hosts without one are held.
    restore_point: bool = False
    # Sends evidence to the evidence store: gets the evidence host and each host's triage file; the
    # manifest each host writes is recorded.
    evidence: bool = False
    # Its hosts are triaged again after the playbook.
    retriage: bool = False

    @property
    def playbook(self) -> str:
        return f"{self.name}.yml"

    def on_controller(self, host: object) -> bool:
        """True when this host's method for the stage runs from the controller, not an execution node."""
        return self.method is not None and getattr(host, self.method, None) in self.controller_methods


# In the order stages run inside a wave (both paths meet at validate and reconnect).
STAGES: tuple[Stage, ...] = (
    Stage("isolate", destructive=True),
    Stage("collect", evidence=True),
    Stage("wipe", destructive=True),
    Stage(
        "reimage", destructive=True, method="reimage_method", controller_methods=frozenset({"lab", "vagrant"})
    ),
    Stage("restore", destructive=True, method="restore_method", restore_point=True),
    Stage("validate", retriage=True),
    Stage("harden"),
    Stage("reconnect"),
)
BY_NAME = {s.name: s for s in STAGES}
# Stage -> the host attribute naming its method, for the stages whose duration depends on one.
METHOD_STAGES = {s.name: s.method for s in STAGES if s.method}


def stage(name: str) -> Stage:
    return BY_NAME[name]
