"""What a stage's playbook receives as extra vars: ids, our own times and paths, nothing a host wrote.

ansible-core renders every string of the extra vars as a trusted template, so a host's cron line
holding `{{ lookup('pipe', ...) }}` would run on the controller. Host data travels in files the
playbooks copy (`staging/<host>/...`, see the stage hooks' `inputs`), never here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.execution.stages.base import Hook
from orchestrator.timefmt import as_stored

if TYPE_CHECKING:
    from orchestrator.execution.engine import Engine


def build(
    run: Engine, wave: int, stage: str, attempt: int, hosts: list[str], private: Path, hooks: list[Hook]
) -> dict[str, Any]:
    """The extra vars of one attempt: the run's ids, each host's action and compromise time, and what
    the stage's hooks add (the evidence store, the restore point)."""
    per_host: dict[str, dict[str, Any]] = {}
    for name in hosts:
        entry: dict[str, Any] = {
            "action": run.members[name].action,
            # a datetime from the database, formatted here: no host text
            "compromise_time": as_stored(run.triage.get(name, {}).get("compromise_time")),
        }
        per_host[name] = entry
    extravars: dict[str, Any] = {
        "recovery_run": {
            "plan_id": run.plan_id,
            "wave": wave,
            "stage": stage,
            "attempt": attempt,
            "operator": run.o.operator,
            "check": run.o.check,
        },
        "recovery_staging_dir": str(private / "staging"),
        "recovery_hosts": per_host,
    }
    for hook in hooks:
        hook.extravars(per_host, extravars)
    return extravars
