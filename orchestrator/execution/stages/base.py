"""The points of a stage attempt at which a stage's records are made; each does nothing unless the
stage's kind of record needs it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from orchestrator.execution.runner import HostResult

if TYPE_CHECKING:
    from orchestrator.execution.engine import Engine


class Hook:
    def __init__(self, engine: Engine) -> None:
        self.run = engine

    def hold_before_wave(self, nxt: dict[str, str | None]) -> dict[str, tuple[str, HostResult]]:
        """At the start of a wave, hosts to hold for a person before an earlier stage destroys
        anything: host -> (the stage it is held at, why)."""
        return {}

    def before(self, hosts: list[str]) -> dict[str, HostResult]:
        """Before the stage's first attempt: hosts that may not run it (held for a person)."""
        return {}

    def on_begin(self, session: Session, host: str) -> None:
        """In the transaction that enters the host into the stage."""

    def inputs(self, hosts: list[str], private: Path) -> None:
        """Files the playbook reads (host data travels in files, never in the extra vars)."""

    def extravars(self, per_host: dict[str, dict[str, Any]], extravars: dict[str, Any]) -> None:
        """What the playbook receives: our own ids, times and paths, nothing a host wrote."""

    def after(self, results: dict[str, HostResult], private: Path) -> None:
        """After the playbook: may turn a host's success into a failure."""

    def on_finish(self, session: Session, host: str, stage_run_id: int, now: Any) -> None:
        """In the transaction that records a host's success."""
