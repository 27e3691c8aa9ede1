"""A small hospital halfway through its recovery, written into a real database through the store the
way triage, planning and execution write it (inventory sync, the state machine's transitions, audit
rows), for the status, report and audit tests.

Ten hosts, one of each situation: recovered by rebuild and by verify, failed in reimage, restoring,
held (unreachable), protected but infected, pending in later waves. Stage times are fixed relative to
T0 so durations, the estimate and the report's times are known exactly.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import select

from orchestrator import inventory as inventory_lib
from orchestrator import lifecycle
from orchestrator.execution import states
from orchestrator.store import Store, audit
from orchestrator.store import hosts as host_store
from orchestrator.store.models import (
    CheckMatch,
    EvidenceItem,
    Host,
    Plan,
    PlanMember,
    PlanWave,
    RestorePoint,
    StageEvent,
    StageRun,
    TriageResult,
    TriageRun,
)

T0 = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=130)
STAGE = timedelta(minutes=10)
SECRET_PASSWORD = "Tr0ub4dor&3-never-in-any-output"
SECRET_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUtbm90LWEta2V5\n-----END OPENSSH PRIVATE KEY-----"

# name: (groups, tier, extra vars)
HOSTS: dict[str, tuple[list[str], int, dict[str, Any]]] = {
    "dc01": (["domain_controllers"], 0, {}),
    "dc02": (["domain_controllers"], 0, {}),
    "backup01": (["backup"], 0, {"recovery_protected": True}),
    "ehr-db01": (["ehr_db"], 1, {"recovery_data_categories": ["health", "personal"]}),
    "ehr-app01": (["ehr_app"], 1, {"recovery_data_categories": ["health"]}),
    "lab01": (["laboratory"], 1, {"recovery_data_categories": ["health"]}),
    "pacs01": (["pacs"], 1, {"recovery_data_categories": ["health"]}),
    "file01": (["file_servers"], 2, {}),
    "ws-er-001": (["ws_emergency"], 3, {}),
    "ws-er-002": (["ws_emergency"], 3, {}),
}
# name: (verdict, compromise before T0, action, wave, plan reason)
PLAN: dict[str, tuple[str, timedelta | None, str, int | None, str]] = {
    "dc01": ("infected", timedelta(days=3), "rebuild", 1, "infected; tier 0: rebuilt, never cleaned"),
    "dc02": ("infected", timedelta(days=3), "rebuild", 1, "infected; tier 0: rebuilt, never cleaned"),
    "backup01": (
        "infected",
        timedelta(days=1),
        "protected",
        1,
        "PROTECTED HOST FOUND INFECTED: never wiped, verified only; a person must decide",
    ),
    "ehr-db01": ("infected", timedelta(days=2), "rebuild", 2, "infected"),
    "ehr-app01": ("suspicious", None, "rebuild", 2, "suspicious"),
    "lab01": ("clean", None, "verify", 2, "clean"),
    "pacs01": ("unreachable", None, "hold", None, "unreachable: a person must check it"),
    "file01": ("infected", timedelta(days=2), "rebuild", 3, "infected"),
    "ws-er-001": ("clean", None, "verify", 4, "clean"),
    "ws-er-002": ("clean", None, "verify", 4, "clean"),
}
EXPECTED_BUCKETS = {
    "pending": 3,
    "in_progress": 1,
    "awaiting": 0,
    "recovered": 3,
    "failed": 1,
    "hold": 1,
    "protected": 1,
}
# Remaining after NOW: wave 1 (backup01's verify path: validate 600 + harden 300 + reconnect 600),
# wave 2 (restore, validate, reconnect: 3 x 600 s), wave 3 (7 rebuild stages x 600 s), wave 4 (verify).
# Waves overlap on the plan's 50 workers (default): the longest wave, 4,200 s, is more than all the
# hosts' remaining work over 50 workers (1,500 + 2 x 1,800 + 4,200 + 2 x 1,500 = 12,300 s / 50).
EXPECTED_ETA_S = 4200


def write_inventory(directory: Path, secrets: bool = False) -> Path:
    """The hosts as a YAML inventory (with the hospital's group_vars), optionally with secrets."""
    children: dict[str, Any] = {}
    for name, (groups, tier, extra) in HOSTS.items():
        for group in groups:
            children.setdefault(group, {"hosts": {}})["hosts"][name] = {
                "ansible_host": f"127.77.0.{list(HOSTS).index(name) + 1}",
                "recovery_tier": tier,
                **extra,
            }
    all_vars: dict[str, Any] = {"ansible_user": "recovery"}
    if secrets:
        all_vars |= {"ansible_password": SECRET_PASSWORD, "recovery_ssh_private_key": SECRET_KEY}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"vars": all_vars, "children": children}}))
    return path


def build(url: str, workdir: Path, secrets: bool = False) -> Store:
    """Create the database at `url` (a SQLite path or a URL) with the whole scenario."""
    inv = inventory_lib.load([str(write_inventory(workdir, secrets))])
    inv.require_valid()
    store = Store.open(url)
    with store.write() as session:
        host_store.sync(session, inv.hosts.values())
        audit.record(session, "alice", "inventory sync", {"inventory": ["hosts.yml"]}, {"added": 10})
    with store.write() as session:
        _triage(session)
        audit.record(session, "alice", "triage", {"limit": None}, {"hosts": len(HOSTS)})
    with store.write() as session:
        plan_id = _plan(session)
        audit.record(session, "bob", "plan approve", {"plan": plan_id}, {"hash": "c0ffee"})
    _run(store, plan_id)
    with store.write() as session:  # as the engine records a stage over a wave: hosts in details
        details = {"plan": plan_id, "wave": 2, "stage": "restore", "ok": ["ehr-db01"], "failed": {}}
        audit.record(session, "alice", "run stage", {"wave": 2}, details)
    with store.write() as session:  # re-triaged after its rebuild: clean now, still affected before
        run = TriageRun(started_at=T0 + timedelta(minutes=155), finished_at=T0 + timedelta(minutes=156))
        session.add(run)
        session.flush()
        session.add(
            TriageResult(run_id=run.id, host_name="ehr-db01", verdict="clean", created_at=run.finished_at)
        )
        # A newer draft must not displace the approved plan being carried out.
        session.add(Plan(created_at=T0 + timedelta(minutes=120), created_by="carol", status="draft"))
    return store


def _triage(session: Any) -> None:
    run = TriageRun(started_at=T0 - timedelta(hours=2), finished_at=T0 - timedelta(hours=1), operator="alice")
    session.add(run)
    session.flush()
    for name, (verdict, before, *_rest) in PLAN.items():
        result = TriageResult(
            run_id=run.id,
            host_name=name,
            verdict=verdict,
            reason="ssh: connection timed out" if verdict == "unreachable" else None,
            compromise_time=T0 - before if before else None,
            created_at=T0 - timedelta(hours=1),
        )
        session.add(result)
        session.flush()
        if verdict in ("infected", "suspicious"):
            session.add(
                CheckMatch(
                    result_id=result.id,
                    check_id="lockbit3_ransom_note" if verdict == "infected" else "new_cron_entry",
                    title="LockBit 3.0 ransom note" if verdict == "infected" else "Unexpected cron entry",
                    severity=verdict,
                    evidence=f"/srv/data/HLJkNskOq.README.txt on {name}",
                    first_seen=T0 - before if before else None,
                )
            )


def _plan(session: Any) -> int:
    plan = Plan(
        created_at=T0 - timedelta(minutes=50),
        created_by="alice",
        status="approved",
        approved_by="bob",
        approved_at=T0 - timedelta(minutes=30),
        approved_hash="c0ffee" * 10,
        content_hash="c0ffee" * 10,
    )
    session.add(plan)
    session.flush()
    for number, tier in ((1, 0), (2, 1), (3, 2), (4, 3)):
        session.add(PlanWave(plan_id=plan.id, number=number, tier=tier, estimated_s=3600))
    for name, (verdict, _before, action, wave, reason) in PLAN.items():
        tier = HOSTS[name][1]
        session.add(
            PlanMember(
                plan_id=plan.id,
                host_name=name,
                action=action,
                wave=wave,
                reason=reason,
                tier=tier,
                verdict=verdict,
            )
        )
    return plan.id


def _run(store: Store, plan_id: int) -> None:
    """Stages as the runner records them: the state machine's transitions, stage runs, events,
    evidence, restore points and one audit row per transition."""
    wave2 = T0 + 8 * STAGE
    _stages(store, plan_id, "dc01", 1, T0, states.REBUILD)
    _stages(store, plan_id, "dc02", 1, T0, states.REBUILD[:4], fail_last="PXE boot timed out after 600 s")
    _stages(store, plan_id, "ehr-db01", 2, wave2, states.REBUILD)
    _stages(store, plan_id, "ehr-app01", 2, wave2, states.REBUILD[:5], running_last=True)
    _stages(store, plan_id, "lab01", 2, wave2, states.VERIFY, length=STAGE / 2)


def _stages(
    store: Store,
    plan_id: int,
    name: str,
    wave: int,
    start: Any,
    stages: tuple[str, ...],
    length: timedelta = STAGE,
    fail_last: str | None = None,
    running_last: bool = False,
) -> None:
    path = lifecycle.PATHS[PLAN[name][2]]
    for i, stage in enumerate(stages):
        last = i == len(stages) - 1
        began, ended = start + i * length, start + (i + 1) * length
        with store.write() as session:
            host = session.exec(select(Host).where(Host.name == name)).one()
            states.begin(host, stage, path)
            run = StageRun(plan_id=plan_id, wave=wave, host_name=name, stage=stage, started_at=began)
            session.add_all([host, run])
            session.flush()
            session.add(
                StageEvent(
                    stage_run_id=run.id, host_name=name, event="runner_on_start", task=stage, created_at=began
                )
            )
            audit.record(
                session, "alice", "run", {"wave": wave}, {"stage": stage, "state": host.state}, host=name
            )
        if last and running_last:
            return
        with store.write() as session:
            host = session.exec(select(Host).where(Host.name == name)).one()
            run = session.exec(
                select(StageRun).where(StageRun.host_name == name, StageRun.stage == stage)
            ).one()
            run.finished_at = ended
            if last and fail_last:
                states.fail(host, stage, f"{stage}: {fail_last}")
                run.status, run.message = "failed", fail_last
                event = "runner_on_failed"
            else:
                states.finish(host, stage)
                run.status = "ok"
                event = "runner_on_ok"
            session.add_all([host, run])
            session.add(
                StageEvent(stage_run_id=run.id, host_name=name, event=event, task=stage, created_at=ended)
            )
            if stage == "collect":
                for item in ("memory.lime", "var-log.tar.gz"):
                    session.add(
                        EvidenceItem(
                            host_name=name,
                            path=f"/evidence/{name}/{item}",
                            sha256=evidence_hash(name, item),
                            size=1_048_576,
                            collected_by="alice",
                            collected_at=ended,
                            stage_run_id=run.id,
                        )
                    )
            if stage == "restore":
                session.add(
                    RestorePoint(
                        host_name=name,
                        snapshot_id=snapshot_id(name),
                        snapshot_time=T0 - timedelta(days=4),
                        cutoff=T0 - PLAN[name][1],
                        skipped=[
                            {
                                "id": "9d8c7b6a",
                                "time": (T0 - timedelta(days=2)).isoformat(),
                                "why": "after the cutoff",
                            }
                        ],
                        chosen_at=began,
                    )
                )
            audit.record(
                session, "alice", "run", {"wave": wave}, {"stage": stage, "state": host.state}, host=name
            )


def evidence_hash(name: str, item: str) -> str:
    return hashlib.sha256(f"{name}/{item}".encode()).hexdigest()


def snapshot_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]
