"""The recovery plan: triage verdicts and the inventory become actions and waves, with estimates and
a lower bound; a person approves it, and execution runs only the approved, unchanged plan.

`planner.build` is pure (hosts and verdicts in, a `Draft` out); `store` keeps plans in the database
and is the only part that knows about it.
"""

from __future__ import annotations

from orchestrator.planning.model import Draft, Limits, Verdict
from orchestrator.planning.planner import build

__all__ = ["Draft", "Limits", "Verdict", "build"]
