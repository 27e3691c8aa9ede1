"""Restore points (restore): each restic host's snapshot, chosen before the playbook (and kept for a
resumed restore), recorded in the transaction that enters the host into the stage, its id passed to
the playbook. A host whose point cannot be chosen is held for a person, and held before anything
earlier on its path destroys the old system."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from orchestrator import lifecycle
from orchestrator.execution import restore_points
from orchestrator.execution.runner import HostResult
from orchestrator.execution.stages.base import Hook
from orchestrator.store.models import Host, RestorePoint, utcnow
from orchestrator.triage import compromise

if TYPE_CHECKING:
    from orchestrator.execution.engine import Engine

SNAPSHOT_ID = re.compile(r"[0-9a-f]{8,64}")
# The stage that records the restore point, and the rebuild path's stages before it.
STAGE = next(s.name for s in lifecycle.STAGES if "restore_point" in s.records)
EARLIER = frozenset(lifecycle.REBUILD_STAGES[: lifecycle.REBUILD_STAGES.index(STAGE)])


class RestorePoints(Hook):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.points: dict[str, restore_points.Choice] = {}
        self.new: set[str] = set()  # chosen in this run, recorded when the host enters the stage

    def hold_before_wave(self, nxt: dict[str, str | None]) -> dict[str, tuple[str, HostResult]]:
        """Hosts about to be rebuilt and restored from backups whose restore point cannot be chosen
        (no trusted time, or one older than every snapshot the backups hold) are held for a person,
        never wiped first."""
        run = self.run
        held: dict[str, tuple[str, HostResult]] = {}
        for name, stage in nxt.items():
            host = run.inventory.hosts[name]
            if stage not in EARLIER or run.paths[name] is not lifecycle.REBUILD_STAGES:
                continue
            if (host.restore_method or "none") != "restic":
                continue
            moment, margin, found = self.cutoff(name)
            if moment is not None:
                try:
                    snaps = self.restic(name).snapshots(name)
                except restore_points.RestoreError as exc:
                    found = f"its backups cannot be listed: {exc}"
                else:
                    oldest = min((s.time for s in snaps), default=None)
                    if oldest is None:
                        found = "its backups hold no snapshot of it"
                    elif moment - margin <= oldest:
                        found = (
                            f"restore point before {(moment - margin).isoformat(timespec='seconds')} is older "
                            f"than the oldest backup ({oldest.isoformat(timespec='seconds')})"
                        )
            if found is not None:
                held[name] = (str(stage), HostResult(False, None, held_for_person(found, name)))
        return held

    def before(self, hosts: list[str]) -> dict[str, HostResult]:
        """Choose (or, for a resumed restore, keep) each restic host's snapshot; hold hosts without one."""
        run = self.run
        self.points = {}
        points = self.points
        refused: dict[str, HostResult] = {}
        with run.store.read() as session:
            rows = {h.name: h for h in session.exec(select(Host).where(col(Host.name).in_(hosts)))}
            kept = {}
            for name in hosts:
                if rows[name].state in (lifecycle.ACTIVE[STAGE], lifecycle.FAILED):
                    point = session.exec(
                        select(RestorePoint)
                        .where(RestorePoint.host_name == name)
                        .order_by(col(RestorePoint.id).desc())
                    ).first()
                    if point is not None:
                        kept[name] = point
        scanner = run.o.scanner or restore_points.pack_scanner(run.o.packs)
        for name in hosts:
            host = run.inventory.hosts[name]
            if (host.restore_method or "none") != "restic":
                continue
            decided = run.restore_choices.get(name)
            if name in kept and decided is not None and _aware(decided.at) > _aware(kept[name].chosen_at):
                del kept[name]  # a person decided after that point was chosen: theirs holds
            if name in kept and not run.o.check:
                point = kept[name]
                snap = restore_points.Snapshot(point.snapshot_id, point.snapshot_time or utcnow(), name)
                points[name] = restore_points.Choice(
                    name, point.cutoff or utcnow(), snap, list(point.skipped)
                )
                continue
            moment, margin, problem = self.cutoff(name)
            if moment is None:
                refused[name] = HostResult(
                    False, None, held_for_person(problem or "no compromise time", name)
                )
                continue
            try:
                points[name] = restore_points.choose(
                    self.restic(name), name, moment, scanner, margin, scratch_parent=run.root
                )
                self.new.add(name)
            except restore_points.RestoreError as exc:
                refused[name] = HostResult(False, None, held_for_person(f"restore point: {exc}", name))
        for name, choice in list(points.items()):
            # Read from the backup repository, which may sit on a host the attacker held: an id goes
            # into the extra vars and restic's command line only if it is one.
            if choice.snapshot is not None and not SNAPSHOT_ID.fullmatch(choice.snapshot.id):
                del points[name]
                self.new.discard(name)
                refused[name] = HostResult(
                    False, None, held_for_person("restore point: the snapshot id is not a restic id", name)
                )
        return refused

    def on_begin(self, session: Session, host: str) -> None:
        choice = self.points.get(host)
        if choice is not None and choice.snapshot is not None and host in self.new:
            self.new.discard(host)
            session.add(
                RestorePoint(
                    host_name=host,
                    snapshot_id=choice.snapshot.id,
                    snapshot_time=choice.snapshot.time,
                    cutoff=choice.cutoff,
                    skipped=choice.skipped,
                )
            )

    def extravars(self, per_host: dict[str, dict[str, Any]], extravars: dict[str, Any]) -> None:
        for name, entry in per_host.items():
            choice = self.points.get(name)
            if choice is not None and choice.snapshot is not None:
                entry["snapshot_id"] = choice.snapshot.id

    def restic(self, name: str) -> restore_points.Restic:
        host = self.run.inventory.hosts[name]
        repo = host.vars.get("recovery_restic_repository")
        password_file = host.vars.get("recovery_restic_password_file")
        if not repo or not password_file:
            raise restore_points.RestoreError(
                "set recovery_restic_repository and recovery_restic_password_file in the inventory"
            )
        options = host.vars.get("recovery_restic_options") or []
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise restore_points.RestoreError("recovery_restic_options must be a list of strings")
        return restore_points.Restic(str(repo), str(password_file), options)

    def cutoff(self, name: str) -> tuple[datetime | None, timedelta, str | None]:
        """What chooses `name`'s restore point: a person's decision (exactly its time, whichever
        command recorded it: `store.decisions.restore_cutoffs`), else the host's own compromise
        time if it passes the checks that need no backups (margin applied); never another host's.
        (None, margin, why) when neither may."""
        run = self.run
        chosen = run.restore_choices.get(name)
        if chosen is not None:
            return _aware(chosen.before), timedelta(0), None
        moment = run.triage.get(name, {}).get("compromise_time")
        found = compromise.problem(moment, utcnow(), None, None, compromise.TimeRules())
        if found is not None or moment is None:
            return None, run.o.restore_margin, found
        return _aware(moment), run.o.restore_margin, None


def held_for_person(problem: str, host: str) -> str:
    return (
        f"held for a person (this stage did not run): {problem}; decide with 'orchestrator host restore-point "
        f"{host} --before TIME --why TEXT' (or --accept), then run again"
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


HOOK = RestorePoints
