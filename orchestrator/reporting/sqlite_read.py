"""`orchestrator status` on a SQLite file through the standard library's sqlite3.

A person types `orchestrator status` and waits: as a new process, importing SQLAlchemy and SQLModel
(and building the models) costs about three times the queries themselves at 100,000 hosts. This
reader runs the queries `fleet` and `host_view` run, written out as the SQL SQLAlchemy sends to
SQLite, converts each value to the type SQLAlchemy would hand back (aware UTC datetimes, bools,
parsed JSON) and builds the view with the same code (`fleet_summary`, `host_summary`,
`next_steps.summarise`), so the output is the same byte for byte (tests/unit/test_status_lean.py
compares both on real database files).

It reads only, and only a database that `Store.open` would open without changing anything: an
existing, private file at the schema version below. Anything else (a missing or new database, a
migration to apply, a mode to narrow, filters, PostgreSQL) returns None and the caller takes the
SQLAlchemy path, which creates, migrates, narrows or refuses as it always did.
"""

from __future__ import annotations

import heapq
import json
import os
import sqlite3
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple, TypeVar

from orchestrator.lifecycle import (
    AFFECTED,
    AWAITING,
    CONTAINED,
    FAILED,
    HOLD,
    NOT_YET,
    REBUILD,
    RECOVERED,
    REQUESTED,
    TO_CONTAIN,
    UNKNOWN,
    decision_view,
)
from orchestrator.reporting import durations, fleet_summary, host_summary, lifecycle, next_steps
from orchestrator.reporting.fleet_summary import MOVING_STATES, PlanHead, plan_forks

# The schema these queries were written for (`migrations.latest_version()`, held equal by a test).
SCHEMA_VERSION = 6
# Bound parameters per statement, as `selection.CHUNK`.
CHUNK = 10_000
T = TypeVar("T")


def database_file(db: str) -> Path | None:
    """The file behind `--db` when it is a SQLite database (a path or a sqlite:/// URL)."""
    if "://" not in db:
        return Path(db).expanduser().absolute()
    if db.startswith("sqlite:///") and "?" not in db:
        return Path(db.removeprefix("sqlite:///"))
    return None


def fleet_status(
    db: str, attention_limit: int | None, now: datetime, containment: bool = False
) -> dict[str, Any] | None:
    """`fleet.status` without filters, or None when this reader does not apply (see above)."""
    return _read(
        db,
        lambda con: fleet_summary.assemble(
            _fleet_rows(con, attention_limit, containment), _NO_FILTERS, attention_limit, now
        ),
    )


def host_timeline(db: str, name: str) -> dict[str, Any] | None:
    """`host_view.timeline`, or None when this reader does not apply. Raises OrchestratorError for
    an unknown host, with the same message."""
    return _read(db, lambda con: _timeline(con, name))


_NO_FILTERS = {"wave": None, "tier": None, "state": None, "limit": None}


def _read(db: str, build: Callable[[sqlite3.Connection], T]) -> T | None:
    path = database_file(db)
    if path is None or not _untouched_by_open(path):
        return None
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        con.row_factory = sqlite3.Row
        con.execute("BEGIN")  # one snapshot for every query, as `Store.read()`
        version = con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            return None
        return build(con)
    except sqlite3.DatabaseError:  # not a database, not ours, locked past the timeout: the full path says why
        return None
    finally:
        con.close()


def _untouched_by_open(path: Path) -> bool:
    """Whether `Store.open` would leave the database as it is: it exists, this user may read and
    write it, and neither it nor its -wal/-shm is readable by others."""
    if not os.access(path, os.R_OK | os.W_OK):
        return False
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if candidate.stat().st_mode & 0o077:
                return False
        except FileNotFoundError:
            if candidate == path:
                return False
    return True


def _dt(value: str | None) -> datetime | None:
    """A stored time as SQLModel's UTCDateTime returns it: aware, in UTC."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _typed(
    row: sqlite3.Row, times: Sequence[str] = (), flags: Sequence[str] = (), docs: Sequence[str] = ()
) -> dict:
    """A row as a dict, its `times`, `flags` and JSON `docs` columns converted."""
    out = dict(zip(row.keys(), row, strict=True))
    for key in times:
        out[key] = _dt(out[key])
    for key in flags:
        out[key] = _bool(out[key])
    for key in docs:
        out[key] = _json(out[key])
    return out


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


# -- the fleet: fleet.status's queries for a view without filters ------------------------------------


def _current_plan(con: sqlite3.Connection) -> PlanHead | None:
    query = (
        "SELECT id, status, approved_at, triage_run_id, json_extract(params, '$.forks') FROM plan {} "
        "ORDER BY plan.id DESC LIMIT 1"
    )
    row = (
        con.execute(query.format("WHERE plan.status = ?"), ("approved",)).fetchone()
        or con.execute(query.format("")).fetchone()
    )
    return None if row is None else PlanHead(row[0], row[1], _dt(row[2]), row[3], plan_forks(row[4]))


def _fleet_rows(
    con: sqlite3.Connection, attention_limit: int | None, containment: bool
) -> fleet_summary.Rows:
    plan = _current_plan(con)
    plan_id = plan.id if plan else None
    attention, flagged = _attention(con, plan_id, attention_limit)
    return fleet_summary.Rows(
        plan=plan,
        hosts=_host_counts(con),
        waiting=_waiting_counts(con, plan_id),
        waves=_wave_counts(con, plan_id),
        moving=_moving(con, plan_id),
        attention=attention,
        flagged=flagged,
        medians=_stage_medians(con),
        wave_times=_wave_times(con, plan_id),
        planned_s=_wave_estimates(con, plan_id),
        people=next_steps.nothing(containment) if plan is None else _people(con, plan, containment),
    )


def _host_counts(con: sqlite3.Connection) -> fleet_summary.HostCounts:
    counts: fleet_summary.HostCounts = Counter()
    query = "SELECT host.tier, host.state, host.stage, count(*) FROM host GROUP BY host.tier, host.state, host.stage"
    for tier, state, stage, count in con.execute(query):
        counts[(tier, state, stage if state == "failed" else None)] += count
    return counts


def _waiting_counts(con: sqlite3.Connection, plan_id: int | None) -> Counter[tuple[int, str]]:
    counts: Counter[tuple[int, str]] = Counter()
    if plan_id is None:
        return counts
    query = (
        "SELECT host.tier, plan_member.action, count(*) FROM plan_member"
        " JOIN host ON host.name = plan_member.host_name"
        f" WHERE plan_member.plan_id = ? AND plan_member.action IN ({_marks(lifecycle.WAITING_ACTIONS)})"
        f" AND host.state IN ({_marks(lifecycle.PENDING_STATES)}) GROUP BY host.tier, plan_member.action"
    )
    for tier, action, count in con.execute(
        query, (plan_id, *lifecycle.WAITING_ACTIONS, *lifecycle.PENDING_STATES)
    ):
        counts[(tier, action)] += count
    return counts


def _wave_counts(con: sqlite3.Connection, plan_id: int | None) -> fleet_summary.WaveCounts:
    counts: fleet_summary.WaveCounts = defaultdict(Counter)
    if plan_id is None:
        return counts
    query = (
        "SELECT plan_member.action, plan_member.wave, count(*),"
        f" count(*) FILTER (WHERE host.state IN ({_marks(lifecycle.PENDING_STATES)})),"
        " count(*) FILTER (WHERE host.state = ?)"
        " FROM plan_member JOIN host ON host.name = plan_member.host_name AND host.state > ?"
        " WHERE plan_member.plan_id = ? GROUP BY plan_member.action, plan_member.wave"
    )
    for action, wave, total, pending, recovered in con.execute(
        query, (*lifecycle.PENDING_STATES, "recovered", "", plan_id)
    ):
        counts[(wave, action)].update(total=total, pending=pending, recovered=recovered)
    return counts


def _moving(con: sqlite3.Connection, plan_id: int | None) -> fleet_summary.Moving:
    found: fleet_summary.Moving = Counter()
    if plan_id is None:
        return found
    member = "(SELECT plan_member.{} FROM plan_member WHERE plan_member.plan_id = ? AND plan_member.host_name = host.name)"
    query = (
        f"SELECT {member.format('wave')} AS member_wave, {member.format('action')} AS member_action,"
        f" host.state, count(*) FROM host WHERE host.state IN ({_marks(MOVING_STATES)})"
        " GROUP BY member_wave, member_action, host.state"
    )
    for wave, action, state, count in con.execute(query, (plan_id, plan_id, *MOVING_STATES)):
        found[(wave, action, state)] += count
    return found


_ATTENTION = (
    "SELECT host.name, host.state, host.stage, host.state_reason, host.state_changed_at, host.tier,"
    " plan_member.wave, plan_member.reason, triage_result.verdict"
    " FROM host {join} JOIN plan_member ON plan_member.plan_id = ? AND plan_member.host_name = host.name"
    " LEFT OUTER JOIN triage_result ON triage_result.id ="
    " (SELECT max(triage_result.id) FROM triage_result WHERE triage_result.host_name = host.name)"
    " WHERE {where} ORDER BY host.tier, host.name"
)


def _attention(
    con: sqlite3.Connection, plan_id: int | None, limit: int | None
) -> tuple[list[tuple[str | None, Sequence[Any]]], int]:
    """`fleet._attention`: failed and held hosts at most `limit` per query, as it cuts them."""

    def rows(join: str, where: str, params: Sequence[Any], cut: bool = True) -> list[tuple[Any, ...]]:
        query = _ATTENTION.format(join=join, where=where)
        if cut and limit is not None:
            query, params = f"{query} LIMIT ?", (*params, limit)
        return [(*r[:4], _dt(r[4]), *r[5:]) for r in con.execute(query, (plan_id, *params))]

    held_names = [
        r[0]
        for r in con.execute(
            "SELECT plan_member.host_name FROM plan_member WHERE plan_member.plan_id = ? AND plan_member.action = ?",
            (plan_id, "hold"),
        )
    ]
    not_waiting = (*lifecycle.NEEDS_PERSON, "recovered")
    flagged_rows = rows(
        "LEFT OUTER",
        f"host.protected IS 1 AND triage_result.verdict IN ({_marks(AFFECTED)})"
        f" AND (host.state NOT IN ({_marks(not_waiting)}))",
        (*AFFECTED, *not_waiting),
        cut=False,
    )
    found: list[tuple[str | None, Sequence[Any]]] = [
        (None, row)
        for row in rows(
            "LEFT OUTER", f"host.state IN ({_marks(lifecycle.NEEDS_PERSON)})", lifecycle.NEEDS_PERSON
        )
    ]
    found += [("protected_" + row[-1], row) for row in flagged_rows]
    for names in _chunks(held_names):
        where = f"host.name IN ({_marks(names)}) AND host.state IN ({_marks(lifecycle.PENDING_STATES)})"
        found += [("hold", row) for row in rows("", where, (*names, *lifecycle.PENDING_STATES))]
    return found, len(flagged_rows)


def _stage_medians(con: sqlite3.Connection) -> dict[str, float]:
    query = (
        "SELECT stage_run.started_at, stage_run.finished_at FROM stage_run"
        " WHERE stage_run.stage = ? AND stage_run.status = ? AND stage_run.check_mode IS 0"
        " AND stage_run.finished_at IS NOT NULL ORDER BY stage_run.id DESC LIMIT ?"
    )
    medians: dict[str, float] = {}
    for stage in lifecycle.STAGES:
        rows = con.execute(query, (stage, "ok", durations.SAMPLE)).fetchall()
        if rows:
            medians[stage] = statistics.median(durations.seconds(_dt(a), _dt(b)) for a, b in rows)  # type: ignore[arg-type]
    return medians


def _wave_times(con: sqlite3.Connection, plan_id: int | None) -> dict[int, tuple[datetime, datetime]]:
    if plan_id is None:
        return {}
    where = "WHERE stage_run.plan_id = ? AND stage_run.wave = ? AND stage_run.check_mode IS 0"
    times: dict[int, tuple[datetime, datetime]] = {}
    for (wave,) in con.execute(
        "SELECT plan_wave.number FROM plan_wave WHERE plan_wave.plan_id = ?", (plan_id,)
    ).fetchall():
        first = con.execute(
            f"SELECT min(stage_run.started_at) FROM stage_run {where}", (plan_id, wave)
        ).fetchone()[0]
        if first is not None:
            last = con.execute(
                f"SELECT max(stage_run.started_at) FROM stage_run {where}", (plan_id, wave)
            ).fetchone()[0]
            times[wave] = (_dt(first), _dt(last))  # type: ignore[assignment]
    return times


def _wave_estimates(con: sqlite3.Connection, plan_id: int | None) -> dict[int, float]:
    if plan_id is None:
        return {}
    query = "SELECT plan_wave.number, plan_wave.estimated_s FROM plan_wave WHERE plan_wave.plan_id = ?"
    return {number: estimated for number, estimated in con.execute(query, (plan_id,))}


class _Contained(NamedTuple):
    status: str
    at: datetime | None


def _people(con: sqlite3.Connection, plan: PlanHead, per_host: bool) -> dict[str, Any]:
    """`next_steps.assess`: standing decisions and the request files, then containment and the next
    steps, by aggregates (`_facts`) or, with `per_host`, from each host's rows (`_per_host`)."""
    # Per decision, not per member: `IN (SELECT ...)` would first list the plan's every host.
    in_plan = (
        "AND EXISTS (SELECT 1 FROM plan_member WHERE plan_member.plan_id = ?"
        " AND plan_member.host_name = {}.host_name)"
    )
    actions = {
        row["host_name"]: SimpleNamespace(**_typed(row, times=("decided_at", "withdrawn_at")))
        for row in con.execute(
            "SELECT * FROM host_decision WHERE host_decision.withdrawn_at IS NULL"
            f" {in_plan.format('host_decision')}"
            " ORDER BY host_decision.id",
            (plan.id,),
        )
    }
    cutoffs = {
        row["host_name"]: SimpleNamespace(
            **_typed(
                row, times=("before", "decided_at", "compromised_since", "withdrawn_at"), flags=("accepted",)
            )
        )
        for row in con.execute(
            "SELECT * FROM restore_decision WHERE restore_decision.withdrawn_at IS NULL"
            f" {in_plan.format('restore_decision')} ORDER BY restore_decision.decided_at, restore_decision.id",
            (plan.id,),
        )
    }
    request = con.execute(
        "SELECT files FROM containment_request WHERE containment_request.plan_id = ?"
        " ORDER BY containment_request.id DESC LIMIT 1",
        (plan.id,),
    ).fetchone()
    files = list(_json(request[0]) or []) if request else []
    decisions = decision_view.listed(actions, cutoffs)  # `decisions.in_force`
    if not per_host:
        return next_steps.view(_facts(con, plan.id), decisions, files)
    return next_steps.summarise(*_per_host(con, plan), decisions, set(actions), files)


# Where a plan member stands on containment (`containment.summary`): isolated by an isolate stage
# that succeeded, else requested from the network team, else not yet.
_STATUS = (
    "CASE WHEN plan_member.host_name IN (SELECT stage_run.host_name FROM stage_run"
    " WHERE stage_run.stage = 'isolate' AND stage_run.status = 'ok' AND stage_run.check_mode IS 0)"
    f" THEN '{CONTAINED}' WHEN plan_member.host_name IN (SELECT containment_request.host_name"
    f" FROM containment_request) THEN '{REQUESTED}' ELSE '{NOT_YET}' END"
)
# A plan's members and their hosts; `host.state > ''` (always true) steers SQLite without statistics
# to the covering (name, state, tier) index, as in `_wave_counts`.
_OF_PLAN = (
    "SELECT plan_member.host_name AS name{} FROM plan_member"
    " JOIN host ON host.name = plan_member.host_name AND host.state > ''"
    " WHERE plan_member.plan_id = ? AND {}"
)
# The same, from the hosts in a given state (failed, awaiting) or protected: few, and SQLite would
# otherwise start from every plan member.
_BY_HOST = (
    "SELECT host.name AS name{} FROM host CROSS JOIN plan_member"
    " ON plan_member.host_name = host.name AND plan_member.plan_id = ? WHERE {}"
)
_UNPROTECTED = "plan_member.host_name NOT IN (SELECT host.name FROM host WHERE host.protected = 1)"
_UNDECIDED = (
    "NOT EXISTS (SELECT 1 FROM host_decision WHERE host_decision.host_name = plan_member.host_name"
    " AND host_decision.withdrawn_at IS NULL)"
)


def _facts(con: sqlite3.Connection, plan_id: int) -> next_steps.Facts:
    """`next_steps._facts`'s queries: SQLite counts each kind of host and hands back the first
    `SHOWN` names of each. The hosts needing containment are read as two parts, those the plan
    rebuilds (from the covering plan-member index) and the others, so that the larger part reads
    no plan-member row."""
    shown = next_steps.SHOWN
    columns = f", {_STATUS} AS status, plan_member.action = '{REBUILD}' AS rebuild, host.state = '{RECOVERED}' AS recovered"
    verdicts = (*TO_CONTAIN, *UNKNOWN)
    rebuilt = _OF_PLAN.format(columns, f"plan_member.action = '{REBUILD}' AND {_UNPROTECTED}")
    others = _OF_PLAN.format(
        columns,
        f"plan_member.action != '{REBUILD}' AND plan_member.verdict IN ({_marks(verdicts)}) AND {_UNPROTECTED}",
    )
    named = " OR ".join(
        f"(status = '{status}' AND rebuild = {int(r)} AND recovered = {int(rec)})"
        for status, r, rec in (*next_steps.CONTAIN_GROUPS, *next_steps.NETWORK_GROUPS)
    )
    # Counts by group, and the names of the groups a step names as a JSON array (escaped, whatever
    # a host's name holds): sorting them all in SQL (a window) cost twice the count itself.
    groups = [
        (status, rebuild, recovered, n, heapq.nsmallest(shown, json.loads(names)))
        for status, rebuild, recovered, n, names in con.execute(
            "SELECT status, rebuild, recovered, count(*), json_group_array(name)"
            f" FILTER (WHERE {named}) FROM ({rebuilt} UNION ALL {others}) GROUP BY status, rebuild, recovered",
            (plan_id, plan_id, *verdicts),
        )
    ]

    def first(where: str, params: Sequence[Any] = (), of: str = _OF_PLAN) -> list[tuple[str, int]]:
        query = of.format(", count(*) OVER ()", where)
        return con.execute(f"{query} ORDER BY name LIMIT ?", (plan_id, *params, shown)).fetchall()

    awaiting = _BY_HOST.format(", host.state_reason", "host.state = ?")
    return next_steps.facts_from(
        groups,
        held=first(f"plan_member.action = ? AND {_UNPROTECTED} AND {_UNDECIDED}", (HOLD,)),
        flagged=first(
            f"host.protected = 1 AND (plan_member.verdict IN ({_marks(TO_CONTAIN)}) OR plan_member.action = ?)"
            f" AND {_UNDECIDED}",
            (*TO_CONTAIN, HOLD),
            _BY_HOST,
        ),
        failed=first("host.state = ?", (FAILED,), _BY_HOST),
        awaiting=dict(con.execute(awaiting, (plan_id, AWAITING)).fetchall()),
    )


def _per_host(con: sqlite3.Connection, plan: PlanHead) -> tuple[Any, ...]:
    """`next_steps.assess`'s per-host rows, read in one pass with SQLite doing the per-host work:
    the plan's members that the next steps can name (those needing containment, held, protected,
    awaiting or failed: `summarise` looks at no other), where each stands on containment (its first
    isolate stage that succeeded, else its first request: `containment.summary`) and when the
    plan's triage found it."""
    to_contain = (*TO_CONTAIN, *UNKNOWN)
    # By host, not by stage and status: without statistics SQLite would pick the (stage, status)
    # index and read every isolated host's run for each host, quadratic in the fleet.
    first_isolate = (
        "(SELECT stage_run.{} FROM stage_run INDEXED BY ix_stage_run_host_stage"
        " WHERE stage_run.host_name = plan_member.host_name"
        " AND stage_run.stage = 'isolate' AND stage_run.status = 'ok' AND stage_run.check_mode IS 0"
        " ORDER BY stage_run.id LIMIT 1)"
    )
    query = (
        "SELECT plan_member.host_name, plan_member.action, plan_member.verdict, host.protected, host.state,"
        f" host.state_reason, {first_isolate.format('id')}, {first_isolate.format('finished_at')},"
        " (SELECT containment_request.requested_at FROM containment_request"
        " WHERE containment_request.host_name = plan_member.host_name ORDER BY containment_request.id LIMIT 1),"
        " (SELECT triage_result.created_at FROM triage_result WHERE triage_result.host_name = plan_member.host_name"
        " AND triage_result.run_id = ? ORDER BY triage_result.id DESC LIMIT 1)"
        " FROM plan_member JOIN host ON host.name = plan_member.host_name WHERE plan_member.plan_id = ? AND ("
        f" (NOT host.protected AND (plan_member.action = 'rebuild' OR plan_member.verdict IN ({_marks(to_contain)})))"
        f" OR plan_member.action = 'hold' OR host.protected OR host.state IN (?, ?))"
    )
    params = (plan.triage_run_id, plan.id, *to_contain, AWAITING, FAILED)
    members: dict[str, next_steps.MemberRow] = {}
    hosts: dict[str, next_steps.HostRow] = {}
    where: dict[str, _Contained] = {}
    found: dict[str, datetime] = {}
    for (
        name,
        action,
        verdict,
        protected,
        state,
        reason,
        isolate_id,
        isolated,
        requested,
        triaged,
    ) in con.execute(query, params):
        members[name] = member = next_steps.MemberRow(action, verdict)
        hosts[name] = next_steps.HostRow(bool(protected), state, reason)
        if not next_steps.needs_containment(member, bool(protected)):
            continue
        if isolate_id is not None:
            where[name] = _Contained(CONTAINED, _dt(isolated))
        elif requested is not None:
            where[name] = _Contained(REQUESTED, _dt(requested))
        else:
            where[name] = _Contained(NOT_YET, None)
        if triaged is not None:
            found[name] = _dt(triaged)  # type: ignore[assignment]
    return members, hosts, where, found


# -- one host: host_view.timeline's queries ----------------------------------------------------------


def _timeline(con: sqlite3.Connection, name: str) -> dict[str, Any]:
    from orchestrator.errors import OrchestratorError

    row = con.execute("SELECT * FROM host WHERE host.name = ? LIMIT 1", (name,)).fetchone()
    if row is None:
        close = con.execute("SELECT host.name FROM host WHERE host.name LIKE ? || '%'", (name[:2],))
        raise OrchestratorError(host_summary.unknown(name, [r[0] for r in close]))
    host = _typed(
        row,
        times=("state_changed_at", "synced_at"),
        flags=("protected",),
        docs=("groups", "depends_on", "data_categories"),
    )
    plan = _current_plan(con)
    member = None
    if plan is not None:
        found = con.execute(
            "SELECT * FROM plan_member WHERE plan_member.plan_id = ? AND plan_member.host_name = ? LIMIT 1",
            (plan.id, name),
        ).fetchone()
        member = None if found is None else dict(found)
    evidence = [
        host_summary.evidence_entry(_typed(r, times=("collected_at",)))
        for r in con.execute(
            "SELECT * FROM evidence_item WHERE evidence_item.host_name = ? ORDER BY evidence_item.id", (name,)
        )
    ]
    restore = con.execute(
        "SELECT * FROM restore_point WHERE restore_point.host_name = ? ORDER BY restore_point.id DESC LIMIT 1",
        (name,),
    ).fetchone()
    return host_summary.assemble(
        host,
        _triage(con, name),
        None if plan is None else host_summary.plan_entry(plan.id, plan.status, plan.approved_at, member),
        _stages(con, name),
        evidence,
        None
        if restore is None
        else _typed(restore, times=("snapshot_time", "cutoff", "chosen_at"), docs=("skipped",)),
        [host_summary.audit_entry(entry) for entry in _audit(con, name)],
        _stage_medians(con),
    )


def _triage(con: sqlite3.Connection, name: str) -> list[dict[str, Any]]:
    results = [
        _typed(r, times=("compromise_time", "created_at", "run_started_at"))
        for r in con.execute(
            "SELECT triage_result.*, triage_run.started_at AS run_started_at FROM triage_result"
            " JOIN triage_run ON triage_run.id = triage_result.run_id WHERE triage_result.host_name = ?"
            " ORDER BY triage_result.run_id, triage_result.id",
            (name,),
        )
    ]
    matches: dict[int, list[dict[str, Any]]] = defaultdict(list)
    ids = [r["id"] for r in results]
    for chunk in _chunks(ids):
        query = (
            "SELECT result_id, check_id, title, severity, evidence, first_seen FROM check_match"
            f" WHERE check_match.result_id IN ({_marks(chunk)}) ORDER BY check_match.id"
        )
        for result_id, check_id, title, severity, evidence, first_seen in con.execute(query, tuple(chunk)):
            matches[result_id].append(
                host_summary.match_entry(check_id, title, severity, evidence, _dt(first_seen))
            )
    return [host_summary.triage_entry(r, r["run_started_at"], matches.get(r["id"] or 0, [])) for r in results]


def _stages(con: sqlite3.Connection, name: str) -> list[dict[str, Any]]:
    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    query = "SELECT stage_run_id, event, task, created_at FROM stage_event WHERE stage_event.host_name = ? ORDER BY stage_event.id"
    for run_id, event, task, created_at in con.execute(query, (name,)):
        events[run_id or 0].append(host_summary.event_entry(event, task, _dt(created_at)))
    runs = con.execute(
        "SELECT * FROM stage_run WHERE stage_run.host_name = ? ORDER BY stage_run.started_at, stage_run.id",
        (name,),
    )
    return [
        host_summary.stage_entry(
            _typed(r, times=("started_at", "finished_at"), flags=("check_mode",)),
            events.get(r["id"] or 0, []),
        )
        for r in runs
    ]


def _audit(con: sqlite3.Connection, name: str) -> list[dict[str, Any]]:
    """`audit.entries(session, [name])`: entries recorded for the host, and entries for no single
    host whose details or arguments name it (a stage over a wave lists its hosts there)."""
    docs = ("args", "details")
    own = con.execute(
        "SELECT * FROM audit_log WHERE audit_log.host_name IN (?) ORDER BY audit_log.id DESC", (name,)
    )
    found = [_typed(r, times=("ts",), docs=docs) for r in own]
    needle = json.dumps(name)
    shared = con.execute(
        "SELECT * FROM audit_log WHERE audit_log.host_name IS NULL AND (CAST(audit_log.details AS VARCHAR)"
        " LIKE '%' || ? || '%' OR CAST(audit_log.args AS VARCHAR) LIKE '%' || ? || '%') ORDER BY audit_log.id DESC",
        (needle, needle),
    )
    for row in shared:
        entry = _typed(row, times=("ts",), docs=docs)
        if _names_any(entry["details"], name) or _names_any(entry["args"], name):
            found.append(entry)
    found.sort(key=lambda e: e["id"] or 0)
    return found


def _names_any(value: Any, name: str) -> bool:
    """`audit._names_any` for one name: whether it appears as a string or a key in a JSON value."""
    if isinstance(value, str):
        return value == name
    if isinstance(value, dict):
        return any(k == name or _names_any(v, name) for k, v in value.items())
    if isinstance(value, list):
        return any(_names_any(v, name) for v in value)
    return False
