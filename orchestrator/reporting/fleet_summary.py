"""`orchestrator status`'s fleet view built from the rows its queries return.

Kept apart from the queries (and free of SQLAlchemy) so that both readers build it the same way:
`fleet` through SQLAlchemy (any database) and `sqlite_read` through the standard library's sqlite3
(the new-process `status` on a SQLite file, which must not pay SQLAlchemy's imports). Same rows in,
same view out, byte for byte.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.lifecycle.concurrency import DEFAULT_FORKS
from orchestrator.reporting import durations, lifecycle
from orchestrator.timefmt import iso

# Why a host needs a person, most urgent first.
_RANK = {"failed": 0, "protected_infected": 1, "protected_suspicious": 2, "hold": 3}

# (tier, state, failed stage) -> hosts
HostCounts = Counter[tuple[int, str, str | None]]
# (wave, action) -> bucket -> hosts
WaveCounts = dict[tuple[int | None, str], Counter[str]]
# (wave, action, state) -> hosts, for the hosts that have started and are not recovered
Moving = Counter[tuple[int | None, str, str]]
# States of hosts started and not recovered, found by `_moving` (the few hosts on their way).
MOVING_STATES = (*lifecycle.IN_PROGRESS_STATES, "failed", "hold", "protected")


def plan_forks(value: Any) -> int:
    """A plan's `forks` as stored (plans made before `plan --forks` have none: the default)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else DEFAULT_FORKS


@dataclass(frozen=True)
class PlanHead:
    """What the view shows of the current plan."""

    id: int
    status: str
    approved_at: datetime | None
    triage_run_id: int | None
    forks: int = DEFAULT_FORKS  # the workers its run shares among waves (`plan --forks`)


@dataclass
class Rows:
    """Everything the fleet view reads, as its queries return it."""

    plan: PlanHead | None
    hosts: HostCounts
    waiting: Counter[tuple[int, str]]
    waves: WaveCounts
    moving: Moving
    attention: list[tuple[str | None, Sequence[Any]]]  # (why, row) as `attention_row` takes it
    flagged: int
    medians: dict[str, float]
    wave_times: dict[int, tuple[datetime, datetime]]
    planned_s: dict[int, float]
    people: dict[str, Any]


def assemble(
    rows: Rows, filters: dict[str, Any], attention_limit: int | None, now: datetime
) -> dict[str, Any]:
    """The fleet's progress as a JSON-ready dict (keys documented in docs/commands.md)."""
    plan = rows.plan
    attention = attention_rows(rows.attention, plan.approved_at if plan else None, attention_limit)
    counts = _summarise(rows.hosts, rows.waiting)
    forks = plan.forks if plan else DEFAULT_FORKS
    wave_rows, eta = _waves(rows.waves, rows.moving, rows.wave_times, rows.planned_s, rows.medians, forks)
    wave_times = rows.wave_times
    starts = [t[0] for t in wave_times.values()]
    started_at = min(starts) if starts else None
    return {
        "generated_at": iso(now),
        "filters": filters,
        "plan": None
        if plan is None
        else {
            "id": plan.id,
            "status": plan.status,
            "approved_at": iso(plan.approved_at),
            "waves": len(rows.planned_s),
        },
        **counts,
        "waves": wave_rows,
        "containment": rows.people["containment"],
        "decisions": rows.people["decisions"],
        "next_steps": rows.people["next_steps"],
        "attention": {
            "count": counts["by_category"]["failed"] + counts["by_category"]["hold"] + rows.flagged,
            "hosts": attention,
        },
        "timing": {
            "started_at": iso(started_at),
            "last_activity_at": iso(max(t[1] for t in wave_times.values())) if wave_times else None,
            "elapsed_s": round((now - started_at).total_seconds(), 1) if started_at else None,
            "eta_s": eta.eta_s,
            "basis": eta.basis,
            "unmeasured_stages": eta.unmeasured_stages,
            "finish_at": iso(now + timedelta(seconds=eta.eta_s)) if eta.eta_s else None,
            "stage_medians_s": {s: round(v, 1) for s, v in rows.medians.items()},
        },
    }


def attention_rows(
    found: list[tuple[str | None, Sequence[Any]]], planned_at: datetime | None, limit: int | None
) -> list[dict[str, Any]]:
    """The hosts a person must look at, most urgent first (the first `limit` when given)."""
    rows = [_attention_row(why, row, planned_at) for why, row in found]
    rows.sort(key=lambda r: (_RANK.get(r["why"], 4), r["tier"], r["host"]))
    return rows if limit is None else rows[:limit]


def _summarise(hosts: HostCounts, waiting: Counter[tuple[int, str]]) -> dict[str, Any]:
    by_state: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    by_stage: Counter[str] = Counter()
    failed_by_stage: Counter[str] = Counter()
    tiers: dict[int, Counter[str]] = defaultdict(Counter)
    for (tier, state, stage), count in hosts.items():
        bucket = lifecycle.category(state)
        by_state[state] += count
        by_category[bucket] += count
        tiers[tier][bucket] += count
        if bucket == "in_progress":
            by_stage[lifecycle.stage_of(state) or state] += count
        if state == "failed":
            failed_by_stage[stage or "unknown"] += count
    for (tier, action), count in waiting.items():  # not started: the plan says which bucket
        for counter in (by_category, tiers[tier]):
            counter["pending"] -= count
            counter[action] += count
    return {
        "total": sum(by_state.values()),
        "by_category": _buckets(by_category),
        "by_state": {s: by_state[s] for s in (*lifecycle.STATE_ORDER, *sorted(by_state)) if by_state.get(s)},
        "in_progress_by_stage": {s: by_stage[s] for s in lifecycle.STAGES if by_stage.get(s)},
        "failed_by_stage": dict(sorted(failed_by_stage.items())),
        "tiers": [_progress({"tier": tier}, counter) for tier, counter in sorted(tiers.items())],
    }


def _buckets(counter: Counter[str]) -> dict[str, int]:
    return {c: counter.get(c, 0) for c in lifecycle.CATEGORIES if c != "other" or counter.get(c)}


def _progress(
    key: dict[str, Any], counter: Counter[str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    total = sum(counter.values())
    return {
        **key,
        "total": total,
        **_buckets(counter),
        "percent_recovered": round(100.0 * counter.get("recovered", 0) / total, 1) if total else 0.0,
        **(extra or {}),
    }


def _attention_row(why: str | None, row: Any, planned_at: datetime | None) -> dict[str, Any]:
    name, state, stage, reason, since, tier, wave, plan_reason, verdict = row
    return {
        "host": name,
        "why": why or state,
        "state": state,
        "stage": stage if state == "failed" else None,
        "reason": reason or plan_reason,
        "since": iso(since or planned_at),
        "tier": tier,
        "wave": wave,
        "verdict": verdict,
    }


def _waves(
    waves: WaveCounts,
    moving: Moving,
    wave_times: dict[int, tuple[datetime, datetime]],
    planned_s: dict[int, float],
    medians: dict[str, float],
    forks: int,
) -> tuple[list[dict[str, Any]], durations.Estimate]:
    """Per-wave progress rows and the estimate: a wave still runs every stage one of its hosts needs,
    and the waves share the run's workers."""
    buckets: dict[int | None, Counter[str]] = defaultdict(Counter)
    on_path: dict[int, set[tuple[str, str]]] = defaultdict(set)  # (action, state) still to run
    hosts_at: Counter[tuple[str, str]] = Counter()  # (action, state) still to run -> hosts
    for (wave, action, state), count in moving.items():
        buckets[wave][lifecycle.category(state)] += count
        if wave is not None:
            on_path[wave].add((action, state))
            hosts_at[(action, state)] += count
    for (wave, action), counter in waves.items():
        # Not started: pending, unless the plan holds the host or leaves it protected.
        buckets[wave][action if action in lifecycle.WAITING_ACTIONS else "pending"] += counter["pending"]
        buckets[wave]["recovered"] += counter["recovered"]
        seen = (
            counter["pending"]
            + counter["recovered"]
            + sum(n for (w, a, _), n in moving.items() if (w, a) == (wave, action))
        )
        buckets[wave]["other"] += counter["total"] - seen  # states this version does not know
        if wave is not None and counter["pending"]:
            on_path[wave].add((action, "planned"))
            hosts_at[(action, "planned")] += counter["pending"]
    stages_by_wave = {
        wave: stages for wave, pairs in on_path.items() if (stages := durations.remaining_in_wave(pairs))
    }
    work_s = durations.remaining_work(hosts_at, medians)
    eta = durations.estimate(stages_by_wave, medians, planned_s, set(wave_times), work_s / max(1, forks))
    rows = []
    for wave, counter in sorted(buckets.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        extra = {
            "started_at": iso(wave_times[wave][0]) if wave in wave_times else None,
            "remaining_stages": list(stages_by_wave.get(wave, ())) if wave is not None else [],
            "eta_s": round(eta.per_wave_s[wave], 1) if wave in eta.per_wave_s else None,
        }
        rows.append(_progress({"wave": wave}, +counter, extra))
    return rows, eta
