"""Schema versions, applied in order.

A new database is created from the models and stamped with the latest version (the models are the
schema); an older one is brought forward one migration at a time, each in its own transaction; a
newer one is refused, because an old orchestrator must not write to a schema it does not know.
To change a model: edit it, then append a migration that brings an existing database to match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, inspect
from sqlmodel import SQLModel

from orchestrator.errors import StoreError
from orchestrator.store import models


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _baseline(conn: Connection) -> None:
    SQLModel.metadata.create_all(conn)


def _keyed_audit(conn: Connection) -> None:
    """Columns for the keyed chain and approvals, and the table of restore-point decisions. Existing
    entries stay plain (key_id NULL): the next keyed entry links to them and so pins them."""
    conn.exec_driver_sql("ALTER TABLE audit_log ADD COLUMN key_id VARCHAR")
    conn.exec_driver_sql("ALTER TABLE audit_head ADD COLUMN mac VARCHAR NOT NULL DEFAULT ''")
    conn.exec_driver_sql("ALTER TABLE plan ADD COLUMN approval_mac VARCHAR")
    models.RestoreDecision.__table__.create(conn)  # type: ignore[attr-defined]


def _decisions_and_containment(conn: Connection) -> None:
    for model in (models.HostDecision, models.ContainmentRequest):
        model.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]


# The margin the engine took off a `--compromised-since` moment when migration 4 was written: a
# migration keeps the rule of its day, whatever the engine's constant becomes.
_MARGIN_AT_V4 = timedelta(hours=1)


def _moment(value: datetime | str | None) -> datetime | None:
    """A timestamp read with raw SQL (SQLite hands back the stored text), in UTC as stored."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _one_restore_cutoff(conn: Connection) -> None:
    """A host's restore cutoff in one table: `host decide --compromised-since` moments move from
    host_decision into restore_decision (minus the margin the engine applied to them), linked to
    their decision and withdrawn with it; restore-point decisions become withdrawable."""
    for column, kind in (
        ("compromised_since", "TIMESTAMP"),
        ("host_decision_id", "INTEGER"),
        ("withdrawn_by", "VARCHAR"),
        ("withdrawn_at", "TIMESTAMP"),
        ("withdrawn_why", "VARCHAR"),
    ):
        conn.exec_driver_sql(f"ALTER TABLE restore_decision ADD COLUMN {column} {kind}")
    rows = conn.exec_driver_sql(
        "SELECT id, host_name, why, decided_by, decided_at, compromised_since, withdrawn_by, withdrawn_at, "
        "withdrawn_why FROM host_decision WHERE compromised_since IS NOT NULL ORDER BY id"
    ).fetchall()
    table = models.RestoreDecision.__table__  # type: ignore[attr-defined]
    for row in rows:
        since = _moment(row.compromised_since)
        assert since is not None  # selected so
        conn.execute(
            table.insert().values(
                host_name=row.host_name,
                before=since - _MARGIN_AT_V4,
                accepted=False,
                why=row.why,
                decided_by=row.decided_by,
                decided_at=_moment(row.decided_at),
                compromised_since=since,
                host_decision_id=row.id,
                withdrawn_by=row.withdrawn_by,
                withdrawn_at=_moment(row.withdrawn_at),
                withdrawn_why=row.withdrawn_why,
            )
        )
    conn.exec_driver_sql("ALTER TABLE host_decision DROP COLUMN compromised_since")


def _stage_triage(conn: Connection) -> None:
    """The stage that re-checked its hosts (validate); None for a fleet triage. Checked first, as
    version 3 does, so a database whose tables are newer than its stamp still upgrades."""
    if "stage" not in {c["name"] for c in inspect(conn).get_columns("triage_run")}:
        conn.exec_driver_sql("ALTER TABLE triage_run ADD COLUMN stage VARCHAR")


def _status_indexes(conn: Connection) -> None:
    """Covering indexes for `status`'s containment counts at 100,000 hosts; the stage-and-status
    index they widen goes (its queries use the wider one's first columns)."""
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_stage_run_stage_status")
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_stage_run_stage_status_host ON stage_run (stage, status, check_mode, host_name)"
    )
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_plan_member_verdict ON plan_member (plan_id, verdict, action, host_name)"
    )


MIGRATIONS: list[Migration] = [
    Migration(
        1, "baseline: hosts, triage, plans, stage runs, evidence, restore points, audit log", _baseline
    ),
    Migration(2, "keyed audit chain and plan approvals; restore-point decisions", _keyed_audit),
    Migration(3, "host decisions and containment requests", _decisions_and_containment),
    Migration(
        4,
        "one restore cutoff per host: decide --compromised-since joins restore decisions",
        _one_restore_cutoff,
    ),
    Migration(5, "triage runs of the validate stage (triage_run.stage)", _stage_triage),
    Migration(6, "covering indexes for status's containment counts", _status_indexes),
]


def latest_version(migrations: list[Migration] | None = None) -> int:
    return max(m.version for m in (migrations or MIGRATIONS))


def current_version(conn: Connection) -> int | None:
    """None for an empty database; raises for a database that is not ours."""
    tables = set(inspect(conn).get_table_names())
    if models.SchemaVersion.__tablename__ not in tables:
        if tables:
            raise StoreError(
                f"the database holds tables ({', '.join(sorted(tables)[:3])}, ...) but no schema_version: "
                "not an orchestrator database"
            )
        return None
    row = conn.exec_driver_sql("SELECT MAX(version) FROM schema_version").scalar()
    return int(row) if row is not None else 0


def upgrade(conn_factory: Callable[[], object], migrations: list[Migration] | None = None) -> int:
    """Bring the database to the latest version; return the version it is at.

    `conn_factory` returns a context manager yielding a Connection inside a write transaction.
    """
    migrations = sorted(migrations or MIGRATIONS, key=lambda m: m.version)
    target = migrations[-1].version
    with conn_factory() as conn:  # type: ignore[attr-defined]
        version = current_version(conn)
        if version is None:
            SQLModel.metadata.create_all(conn)
            conn.execute(
                models.SchemaVersion.__table__.insert(),
                [
                    {"version": m.version, "description": m.description, "applied_at": models.utcnow()}
                    for m in migrations
                ],
            )
            return target
    if version > target:
        raise StoreError(
            f"database schema version {version} is newer than this orchestrator supports ({target}): "
            "upgrade the orchestrator, do not write to it with this one"
        )
    for migration in migrations:
        if migration.version <= version:
            continue
        with conn_factory() as conn:  # type: ignore[attr-defined]
            migration.apply(conn)
            conn.execute(
                models.SchemaVersion.__table__.insert(),
                {
                    "version": migration.version,
                    "description": migration.description,
                    "applied_at": models.utcnow(),
                },
            )
    return target
