"""Evidence (collect): the evidence store and each host's triage results go in, the manifest each
host writes of what it stored comes back and is recorded, item by item, with the stage run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from orchestrator import inventory as inventory_lib
from orchestrator.errors import RefusedError
from orchestrator.execution import evidence_manifest
from orchestrator.execution.runner import HostResult
from orchestrator.execution.stages.base import Hook
from orchestrator.store.models import EvidenceItem
from orchestrator.timefmt import as_stored

if TYPE_CHECKING:
    from orchestrator.execution.engine import Engine

# The host's triage results, staged for the collect playbook to copy into the evidence pack.
TRIAGE_FILE = "triage.json"
MANIFEST_FILE = "manifest.json"
# The inventory group whose first host is the evidence store when --evidence-host names none.
EVIDENCE_GROUP = "evidence_store"


def evidence_host(inventory: inventory_lib.Inventory, named: str | None) -> str | None:
    """Where collect sends the evidence: `named` (--evidence-host), else the first host of the
    evidence_store group, else none (the engine refuses a rebuild without one)."""
    if named:
        if named not in inventory.hosts:
            raise RefusedError(f"evidence host {named} is not in the inventory")
        return named
    group = inventory.groups.get(EVIDENCE_GROUP) or []
    return group[0] if group else None


class Evidence(Hook):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.manifests: dict[str, list[dict[str, Any]]] = {}  # this attempt's, by host

    def inputs(self, hosts: list[str], private: Path) -> None:
        """Each host's triage results as a 0600 file in its staging folder."""
        for name in hosts:
            data = json.dumps(self.run.triage.get(name, {}), indent=2, sort_keys=True, default=as_stored)
            path = private / "staging" / name / TRIAGE_FILE
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data + "\n")

    def extravars(self, per_host: dict[str, dict[str, Any]], extravars: dict[str, Any]) -> None:
        extravars["recovery_evidence_host"] = self.run.evidence_host
        extravars["recovery_evidence_path"] = self.run.o.evidence_path

    def after(self, results: dict[str, HostResult], private: Path) -> None:
        """The manifest each host's collect wrote; a host without one did not finish collecting."""
        self.manifests = {}
        if self.run.o.check:
            return
        for name, result in results.items():
            if not result.ok:
                continue
            try:
                self.manifests[name] = evidence_manifest.read(private / "staging" / name / MANIFEST_FILE)
            except evidence_manifest.ManifestError as exc:
                results[name] = HostResult(False, "Report the stored items to the orchestrator", str(exc))

    def on_finish(self, session: Session, host: str, stage_run_id: int, now: Any) -> None:
        for item in self.manifests.get(host, []):
            session.add(
                EvidenceItem(
                    host_name=host,
                    path=item["path"],
                    sha256=item["sha256"],
                    size=item["size"],
                    collected_by=self.run.o.operator,
                    collected_at=now,
                    stage_run_id=stage_run_id,
                    stored_at=item.get("stored_at"),
                )
            )


HOOK = Evidence
