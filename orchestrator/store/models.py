"""Every table the orchestrator keeps, in one place.

Rows hold what happened and what was decided, never how to log in: connection secrets stay in the
inventory (Vault, environment) and are never copied here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class SchemaVersion(SQLModel, table=True):
    """One row per applied migration; the highest version is the schema's version."""

    __tablename__ = "schema_version"
    version: int = Field(primary_key=True)
    applied_at: datetime = Field(default_factory=utcnow)
    description: str = ""


_HOST_VERSION = Column("version", Integer, nullable=False, default=0)


class Host(SQLModel, table=True):
    """The latest snapshot of a host from the inventory, plus its place in the recovery.

    `state` follows the state machine in `orchestrator.execution.states`; `version` is bumped on every
    state change, and every UPDATE of a row requires the version it was read with (SQLAlchemy's
    version counter, set by the state machine rather than by SQLAlchemy): a write based on a stale read
    fails (StaleDataError, a StoreError for the user) instead of undoing another process's change.
    """

    __tablename__ = "host"
    __table_args__ = (
        # Covering indexes for `status` at 100,000 hosts: counts by state and tier, and the host
        # state looked up by name from plan members (bench/status.py).
        Index("ix_host_progress", "state", "tier", "stage"),
        Index("ix_host_name_state", "name", "state", "tier"),
        Index("ix_host_protected", "protected"),
    )
    __mapper_args__ = {"version_id_col": _HOST_VERSION, "version_id_generator": False}
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    address: str | None = None
    port: int | None = None
    connection: str = "ssh"
    os: str = "linux"
    tier: int = Field(default=2, index=True)
    role: str = "server"
    site: str | None = None
    protected: bool = False
    priority: int = 100
    reimage_method: str | None = None
    restore_method: str | None = None
    execution_node: str | None = None
    groups: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    depends_on: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    data_categories: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    state: str = Field(default="new", index=True)
    stage: str | None = None
    state_reason: str | None = None
    state_changed_at: datetime | None = None
    version: int = Field(default=0, sa_column=_HOST_VERSION)
    synced_at: datetime = Field(default_factory=utcnow)


class TriageRun(SQLModel, table=True):
    __tablename__ = "triage_run"
    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    operator: str = ""
    limit: str | None = None
    forks: int = 50
    timeout_s: float = 60.0
    packs: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    host_count: int = 0
    counts: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON))
    # The recovery stage that re-checked its hosts (validate); None for a triage of the fleet, which
    # is what plans are made from.
    stage: str | None = None


class TriageResult(SQLModel, table=True):
    """One host's verdict in one triage run."""

    __tablename__ = "triage_result"
    __table_args__ = (Index("ix_triage_result_host_run", "host_name", "run_id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="triage_run.id", index=True)
    host_name: str
    verdict: str  # clean | suspicious | infected | unreachable | error
    reason: str | None = None
    duration_s: float = 0.0
    compromise_time: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class CheckMatch(SQLModel, table=True):
    """A check that matched on a host, with the (bounded) evidence that made it match."""

    __tablename__ = "check_match"
    id: int | None = Field(default=None, primary_key=True)
    result_id: int = Field(foreign_key="triage_result.id", index=True)
    check_id: str
    title: str = ""
    severity: str = "info"  # info | suspicious | infected
    evidence: str = ""
    first_seen: datetime | None = None


class Plan(SQLModel, table=True):
    __tablename__ = "plan"
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = ""
    status: str = Field(default="draft", index=True)  # draft | approved | superseded
    triage_run_id: int | None = Field(default=None, foreign_key="triage_run.id")
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    content_hash: str = ""
    approved_by: str | None = None
    approved_at: datetime | None = None
    approved_hash: str | None = None
    # HMAC (the audit key) over the approval: recomputing `approved_hash` with the plain formula after
    # editing the plan's rows does not make a plan runnable. None: approved before approvals were keyed.
    approval_mac: str | None = None
    estimated_s: float = 0.0
    lower_bound_s: float = 0.0


class PlanWave(SQLModel, table=True):
    __tablename__ = "plan_wave"
    __table_args__ = (UniqueConstraint("plan_id", "number"),)
    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="plan.id", index=True)
    number: int
    tier: int = 0  # waves never mix tiers: tier 0's waves run before tier 1's
    estimated_s: float = 0.0


class PlanMember(SQLModel, table=True):
    """A host's place in a plan: its action, its wave (none when on hold) and why."""

    __tablename__ = "plan_member"
    __table_args__ = (
        UniqueConstraint("plan_id", "host_name"),
        Index("ix_plan_member_progress", "plan_id", "action", "wave", "host_name"),  # status per wave
        Index("ix_plan_member_verdict", "plan_id", "verdict", "action", "host_name"),  # who needs containment
    )
    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="plan.id", index=True)
    wave: int | None = Field(default=None, index=True)
    host_name: str = Field(index=True)
    action: str  # rebuild | verify | hold | protected
    reason: str = ""
    tier: int = 2
    priority: int = 100
    verdict: str | None = None
    estimated_s: float = 0.0  # this host's time through its path, when it has a wave


class StageRun(SQLModel, table=True):
    """One attempt of one stage on one host. Written "running" before the playbook starts."""

    __tablename__ = "stage_run"
    __table_args__ = (
        Index("ix_stage_run_host_stage", "host_name", "stage"),
        Index("ix_stage_run_plan_wave_start", "plan_id", "wave", "check_mode", "started_at"),  # wave start
        # Recent durations per stage, and which hosts an isolate run contained (status's containment
        # counts): covering, so neither reads the table.
        Index("ix_stage_run_stage_status_host", "stage", "status", "check_mode", "host_name"),
    )
    id: int | None = Field(default=None, primary_key=True)
    plan_id: int | None = Field(default=None, foreign_key="plan.id")
    wave: int | None = None
    host_name: str = Field(index=True)
    stage: str
    attempt: int = 1
    status: str = Field(default="running", index=True)  # running | ok | failed | skipped
    check_mode: bool = False
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    task: str | None = None
    message: str | None = None
    runner_dir: str | None = None


class StageEvent(SQLModel, table=True):
    """A runner event for a host (task start/ok/failed), kept for the timeline and durations."""

    __tablename__ = "stage_event"
    __table_args__ = (Index("ix_stage_event_host", "host_name", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    stage_run_id: int | None = Field(default=None, foreign_key="stage_run.id", index=True)
    host_name: str
    event: str
    task: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class EvidenceItem(SQLModel, table=True):
    """Chain of custody: what was collected from which host, by whom, when, and its sha256."""

    __tablename__ = "evidence_item"
    id: int | None = Field(default=None, primary_key=True)
    host_name: str = Field(index=True)
    path: str
    sha256: str
    size: int = 0
    collected_by: str = ""
    collected_at: datetime = Field(default_factory=utcnow)
    stage_run_id: int | None = Field(default=None, foreign_key="stage_run.id")
    stored_at: str | None = None  # "<evidence host>:<path>" of the copy on the evidence store


class RestorePoint(SQLModel, table=True):
    """The backup snapshot chosen for a host, and the ones skipped because they were dirty."""

    __tablename__ = "restore_point"
    id: int | None = Field(default=None, primary_key=True)
    host_name: str = Field(index=True)
    snapshot_id: str
    snapshot_time: datetime | None = None
    cutoff: datetime | None = None
    skipped: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    chosen_at: datetime = Field(default_factory=utcnow)


class RestoreDecision(SQLModel, table=True):
    """A person's decision about where a host's restore point lies: the newest clean snapshot before
    `before`. It replaces the compromise time triage estimated (which the host itself controls) for
    that host only; the newest one not withdrawn is the one in force. Both spellings write here
    (`host restore-point`, and `host decide --rebuild --compromised-since`, linked by
    `host_decision_id`), so a host's restore cutoff has one source and one history."""

    __tablename__ = "restore_decision"
    id: int | None = Field(default=None, primary_key=True)
    host_name: str = Field(index=True)
    before: datetime
    accepted: bool = False  # True: the person accepted the triage estimate (minus the margin) as it was
    why: str = ""
    decided_by: str = ""
    decided_at: datetime = Field(default_factory=utcnow)
    triage_run_id: int | None = None
    # What the person said when the cutoff came with `host decide --compromised-since` (`before` is
    # that moment minus the usual margin), and the decision it came with: withdrawing one withdraws both.
    compromised_since: datetime | None = None
    host_decision_id: int | None = None
    withdrawn_by: str | None = None
    withdrawn_at: datetime | None = None
    withdrawn_why: str | None = None


class AuditEntry(SQLModel, table=True):
    """Append-only, chained: each row's hash covers its content and the hash of the one before it,
    keyed with the audit key (HMAC-SHA256, `key_id` names the key); None: a plain SHA-256 entry
    written before the chain was keyed."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=utcnow)
    operator: str
    command: str
    args: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    host_name: str | None = Field(default=None, index=True)
    prev_hash: str = ""
    hash: str = ""
    key_id: str | None = None


class AuditHead(SQLModel, table=True):
    """The newest audit entry and the number of entries, updated in the same transaction as every
    append: deleting the newest entries leaves a chain that is valid on its own, and only a record
    of where it ended shows the cut."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, primary_key=True)
    last_id: int = 0
    last_hash: str = ""
    entries: int = 0
    mac: str = ""  # HMAC of (last_id, last_hash, entries): cutting entries and moving the head shows


class HostDecision(SQLModel, table=True):
    """A person's decision about one host (`orchestrator host decide`): who, why, when, and when it
    was withdrawn. The newest standing decision per host is the one plans and runs honour."""

    __tablename__ = "host_decision"
    id: int | None = Field(default=None, primary_key=True)
    host_name: str = Field(index=True)
    decision: str  # rebuild | verify | hold | release | done (planning.model.DECISIONS)
    why: str
    decided_by: str
    decided_at: datetime = Field(default_factory=utcnow)
    withdrawn_by: str | None = None
    withdrawn_at: datetime | None = None
    withdrawn_why: str | None = None


class ContainmentRequest(SQLModel, table=True):
    """A host nobody could reach to isolate: the network team was asked to cut it off (switch port,
    firewall rule) with everything known about it."""

    __tablename__ = "containment_request"
    id: int | None = Field(default=None, primary_key=True)
    host_name: str = Field(index=True)
    plan_id: int | None = Field(default=None, foreign_key="plan.id")
    requested_by: str = ""
    requested_at: datetime = Field(default_factory=utcnow)
    reason: str = ""
    known: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))  # address, mac, site, port
    files: list[str] = Field(default_factory=list, sa_column=Column(JSON))
