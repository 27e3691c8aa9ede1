"""`orchestrator plan` and `plan approve`, one call each: the planner's inputs gathered, the change
made and its audit record written in the same transaction (the command line only parses and shows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from orchestrator.inventory import cache as inventory_cache
from orchestrator.lifecycle.concurrency import DEFAULT_FORKS
from orchestrator.planning import capacity, compromise
from orchestrator.planning import durations as durations_lib
from orchestrator.planning import store as plan_store
from orchestrator.store import Store, audit


@dataclass(frozen=True)
class DraftRequest:
    """What `orchestrator plan` was asked: the inventory and limit, capacities, and the figures."""

    inventory: Sequence[str]
    limit: str | None = None
    max_wave_size: int | None = None
    capacities: Sequence[str] = ()
    durations_file: str | None = None
    time_window_days: float = 7.0
    forks: int = DEFAULT_FORKS  # the engine's workers: estimated for, kept for `run`


def draft(store: Store, operator: str, request: DraftRequest, args: dict[str, Any]) -> plan_store.NewDraft:
    """Make the draft plan from the latest fleet triage; bad input is refused before anything is written."""
    durations = durations_lib.load(request.durations_file)
    inv = inventory_cache.load(list(request.inventory))
    inv.require_valid()
    hosts = inv.select(request.limit)
    every = inv.hosts.values()
    limits = capacity.limits(
        request.max_wave_size,
        tuple(request.capacities),
        sites={h.site for h in every if h.site},
        reimage_methods={h.reimage_method for h in every if h.reimage_method},
        forks=request.forks,
    )
    with store.write() as session:
        made = plan_store.create_draft(
            session,
            hosts,
            limits,
            durations,
            operator=operator,
            params={"inventory": list(inv.sources), "limit": request.limit},
            time_rules=compromise.TimeRules(window=timedelta(days=request.time_window_days)),
        )
        view = made.view
        audit.record(
            session,
            operator,
            "plan",
            args,
            {
                "plan_id": view.plan.id,
                "triage_run_id": made.triage_run.id,
                "content_hash": view.plan.content_hash,
                "waves": len(view.waves),
                **made.draft.counts(),
                "estimated_s": view.plan.estimated_s,
                "lower_bound_s": view.plan.lower_bound_s,
                "superseded": made.superseded,
            },
        )
    return made


def approve(
    store: Store, operator: str, by: str | None, expect_hash: str | None, args: dict[str, Any]
) -> tuple[plan_store.PlanView, int | None]:
    """Approve the draft (by `by`, else the operator), audited in the same transaction; returns it and
    the id of the approved plan it supersedes."""
    approver = by or operator
    with store.write() as session:
        view, superseded = plan_store.approve(session, approver, expect_hash)
        audit.record(
            session,
            operator,
            "plan approve",
            args,
            {
                "plan_id": view.plan.id,
                "approved_by": approver,
                "content_hash": view.plan.approved_hash,
                "superseded": superseded,
            },
        )
    return view, superseded
