"""Triage runs in the database: one run row, a result per host with the checks that matched, history
kept across runs, and what `triage show` reads back.

Results arrive from the worker pool one host at a time; they are written in batches (a transaction per
few hundred hosts, or every couple of seconds), not one per host: with 1,800 hosts a transaction each
would cost more than the checks, and a crash mid-run still leaves every finished batch on disk.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.errors import OrchestratorError
from orchestrator.inventory import Host
from orchestrator.store import Store, analyze, audit
from orchestrator.store import hosts as host_store
from orchestrator.store.models import CheckMatch, TriageResult, TriageRun, utcnow
from orchestrator.timefmt import iso_exact
from orchestrator.triage.engine import HostResult, Settings, counts, match_dict

BATCH_SIZE = 200
BATCH_SECONDS = 2.0


class RunRecorder:
    """Writes one triage run as its results come in."""

    def __init__(self, store: Store, operator: str) -> None:
        self.store = store
        self.operator = operator
        self.run_id: int | None = None
        self._pending: list[HostResult] = []
        self._last_flush = time.monotonic()

    def start(
        self,
        hosts: Sequence[Host],
        pack_paths: list[str],
        settings: Settings,
        limit: str | None,
        stage: str | None = None,
    ) -> int:
        """Snapshot the hosts (a fleet triage) and open the run row, before any host is contacted."""
        with self.store.write() as session:
            if stage is None:
                host_store.sync(session, hosts)
            run = TriageRun(
                stage=stage,
                operator=self.operator,
                limit=limit,
                forks=settings.forks,
                timeout_s=settings.timeout,
                packs=pack_paths,
                host_count=len(hosts),
            )
            session.add(run)
            session.flush()
            assert run.id is not None
            self.run_id = run.id
        return self.run_id

    def add(self, result: HostResult) -> None:
        self._pending.append(result)
        self.tick()

    def tick(self) -> None:
        """Write the pending results when the batch is full or old enough: called on each result and
        while none arrives (a slow last host must not hold the others back from the database)."""
        if not self._pending:
            return
        if len(self._pending) >= BATCH_SIZE or time.monotonic() - self._last_flush >= BATCH_SECONDS:
            with self.store.write() as session:
                self._flush(session)

    def _flush(self, session: Session) -> None:
        assert self.run_id is not None
        rows = [
            TriageResult(
                run_id=self.run_id,
                host_name=r.host,
                verdict=r.verdict,
                reason=r.reason,
                duration_s=r.duration_s,
                compromise_time=r.compromise_time,
            )
            for r in self._pending
        ]
        session.add_all(rows)
        session.flush()
        session.add_all(
            CheckMatch(
                result_id=row.id,
                check_id=hit.check_id,
                title=hit.title,
                severity=hit.severity,
                evidence=hit.evidence,
                first_seen=hit.first_seen,
            )
            for row, result in zip(rows, self._pending, strict=True)
            for hit in result.hits
        )
        self._pending = []
        self._last_flush = time.monotonic()

    def finish(
        self,
        results: Sequence[HostResult],
        command: str,
        args: dict[str, Any],
        complete: bool = True,
        nodes: dict[str, str] | None = None,
    ) -> TriageRun:
        """Write what is left, close the run and append the command's audit row, in one transaction.
        An interrupted run keeps its results and counts but no finish time: it reads as incomplete.
        `nodes`: host -> the execution node that checked it, kept in the audit row."""
        tally = counts(results)
        trusted = {r.host: r.new_key for r in results if r.new_key}
        with self.store.write() as session:
            self._flush(session)
            run = session.get(TriageRun, self.run_id)
            assert run is not None
            run.finished_at = utcnow() if complete else None
            run.counts = tally
            session.add(run)
            details: dict[str, Any] = {"run_id": self.run_id, "hosts": len(results), "counts": tally}
            if not complete:
                details["interrupted"] = True
            if nodes:
                details["nodes"] = dict(sorted(nodes.items()))
            if args.get("trust_new_keys"):
                details["trust_new_keys"] = True
                details["new_host_keys_accepted"] = trusted
            audit.record(session, self.operator, command, args, details)
            analyze.after_bulk_write(
                session, [TriageResult.__tablename__, CheckMatch.__tablename__], len(results)
            )
        return run


def host_results(store: Store, host: str, history: int = 0) -> dict[str, Any]:
    """A host's latest triage result with its evidence, and up to `history` older results."""
    with store.read() as session:
        rows = session.exec(
            select(TriageResult, TriageRun)
            .join(TriageRun, col(TriageRun.id) == TriageResult.run_id)
            .where(TriageResult.host_name == host)
            .order_by(col(TriageResult.run_id).desc(), col(TriageResult.id).desc())
            .limit(history + 1)
        ).all()
        if not rows:
            raise OrchestratorError(f"no triage result for host {host!r}: run 'orchestrator triage' first")
        latest, latest_run = rows[0]
        matches = session.exec(
            select(CheckMatch).where(CheckMatch.result_id == latest.id).order_by(col(CheckMatch.id))
        ).all()
        return {
            "host": host,
            "latest": {
                **_result_dict(latest, latest_run),
                "matches": [match_dict(m) for m in matches],
            },
            "history": [_result_dict(r, run) for r, run in rows[1:]],
        }


def _result_dict(result: TriageResult, run: TriageRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "run_started_at": iso_exact(run.started_at),
        "verdict": result.verdict,
        "reason": result.reason,
        "duration_s": round(result.duration_s, 3),
        "compromise_time": iso_exact(result.compromise_time),
    }
