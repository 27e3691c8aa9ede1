"""What a stage records besides its StageRun, one module per kind (`records:` in the stage's file,
orchestrator/lifecycle/stages/<name>.yml): `evidence` (collect), `restore_point` (restore), `retriage`
(validate). The engine calls every hook of the stage it runs at the same points of the attempt; a
new stage that records what an existing stage records needs no code, only its file and playbook.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from orchestrator import lifecycle
from orchestrator.execution.stages.base import Hook

if TYPE_CHECKING:
    from orchestrator.execution.engine import Engine


def hooks(engine: Engine) -> dict[str, Hook]:
    """One hook per record kind for this run (a hook keeps what it chose between the calls)."""
    return {kind: importlib.import_module(f"{__name__}.{kind}").HOOK(engine) for kind in lifecycle.RECORDS}
