"""Choose the snapshot a rebuilt host gets its data back from, and prove it clean first.

The newest snapshot of the host taken before its estimated compromise time minus a safety margin is
restored into a scratch directory and scanned with the triage packs' own checks, their roots moved
under the scratch directory (the same rendered script and the same match rules as on a live host; the
`command` probes, which describe a running system, do not apply to a backup). A snapshot with any
suspicious or infected finding is skipped, with its findings, for the next older one; the choice and
the skipped snapshots become a RestorePoint row.

restic reads its password from a file (`--password-file`): the password itself never passes through
this process's arguments, its logs or the database.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import OrchestratorError
from orchestrator.triage.compromise import DEFAULT_MARGIN

# The packs (pydantic models, YAML) and the script renderer (Jinja2) are imported when a snapshot is
# scanned, not whenever the engine is: most runs restore nothing.
if TYPE_CHECKING:
    from orchestrator.triage import packs as packs_lib

DIRTY = frozenset({"suspicious", "infected"})
RESTIC_TIMEOUT = 600
SCAN_TIMEOUT = 300


class RestoreError(OrchestratorError):
    """No usable restore point (no snapshot before the cutoff, all dirty, restic failed)."""


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: datetime
    hostname: str
    paths: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:8]


@dataclass
class Finding:
    check_id: str
    severity: str
    title: str
    paths: list[str]


@dataclass
class Choice:
    host: str
    cutoff: datetime
    snapshot: Snapshot | None
    skipped: list[dict[str, Any]] = field(default_factory=list)


class Restic:
    """The few restic commands restore-point selection needs, against one repository."""

    def __init__(self, repository: str, password_file: str, options: Iterable[str] = ()) -> None:
        """`options`: restic's extended options (`sftp.command=ssh ...`), for a repository reached
        with its own SSH key and known_hosts rather than the operator's SSH configuration."""
        if not Path(password_file).is_file():
            raise RestoreError(f"restic password file {password_file} does not exist")
        self.repository = repository
        self.password_file = password_file
        self.options = [f"--option={option}" for option in options]

    def _run(self, *args: str) -> str:
        cmd = [
            "restic",
            "--no-cache",
            "--no-lock",
            "-r",
            self.repository,
            "--password-file",
            self.password_file,
            *self.options,
        ]
        try:
            result = subprocess.run(
                [*cmd, *args], capture_output=True, text=True, timeout=RESTIC_TIMEOUT, check=False
            )
        except FileNotFoundError as exc:
            raise RestoreError("restic is not installed: apt-get install restic") from exc
        except subprocess.TimeoutExpired as exc:
            raise RestoreError(f"restic {args[0]} did not finish in {RESTIC_TIMEOUT} s") from exc
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise RestoreError(f"restic {args[0]} failed: {lines[-1] if lines else result.returncode}")
        return result.stdout

    def snapshots(self, host: str) -> list[Snapshot]:
        data = json.loads(self._run("snapshots", "--json", "--host", host) or "[]")
        return sorted(
            (
                Snapshot(
                    s["id"],
                    datetime.fromisoformat(s["time"]),
                    s.get("hostname", ""),
                    tuple(s.get("paths", ())),
                )
                for s in data
            ),
            key=lambda s: s.time,
            reverse=True,
        )

    def restore(self, snapshot: Snapshot, target: Path) -> None:
        self._run("restore", snapshot.id, "--target", str(target))


def _under(scratch: Path, path: str) -> str:
    return str(scratch) + path if path.startswith("/") else path


def _homes(scratch: Path) -> list[str]:
    homes = [scratch / "root", *sorted(p for p in (scratch / "home").glob("*") if p.is_dir())]
    return [str(h) for h in homes if h.is_dir()]


def _expand(roots: Iterable[str]) -> list[str]:
    """Root aliases (@data, @temp) to paths; @homes stays, it depends on the restored tree."""
    from orchestrator.triage import packs as packs_lib

    out: list[str] = []
    for root in roots:
        expansion = packs_lib.ROOT_ALIASES.get(root)
        for item in _expand(expansion) if expansion else [root]:
            if item not in out:
                out.append(item)
    return out


def _relocate(check: packs_lib.AnyCheck, scratch: Path) -> packs_lib.AnyCheck | None:
    """The check with every root and path moved under `scratch`; None for checks that read a live
    system (`command` probes)."""
    kind = check.kind
    if kind == "command":
        return None
    probe_value = getattr(check.probe, kind)
    if kind in ("files", "extensions"):
        roots: list[str] = []
        for root in _expand(probe_value.roots):
            roots.extend(_homes(scratch) if root == "@homes" else [_under(scratch, root)])
        update: dict[str, Any] = {
            "roots": roots or [str(scratch)],
            "prune": [_under(scratch, p) for p in probe_value.prune],
        }
    elif kind == "lines":
        paths: list[str] = []
        for path in probe_value.paths:
            if path.startswith("@home/"):
                paths.extend(f"{home}/{path[6:]}" for home in _homes(scratch))
            else:
                paths.append(_under(scratch, path))
        update = {"paths": paths or [str(scratch / "nonexistent")]}
    else:  # Windows kinds have no meaning on a restored tree
        return None
    probe = check.probe.model_copy(update={kind: probe_value.model_copy(update=update)})
    return check.model_copy(update={"probe": probe})


def scan_tree(scratch: Path, checks: Iterable[packs_lib.AnyCheck]) -> list[Finding]:
    """Run the packs' Linux checks over a restored tree; return what matched (paths relative to the host)."""
    from orchestrator.triage import packs as packs_lib
    from orchestrator.triage import scripts

    relocated = [c for c in (_relocate(c, scratch) for c in checks if c.os == "linux") if c is not None]
    if not relocated:
        return []
    script = scripts.render("linux", relocated)
    try:
        result = subprocess.run(
            ["sh", "-s"], input=script.text, capture_output=True, text=True, timeout=SCAN_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RestoreError(f"the snapshot scan did not finish in {SCAN_TIMEOUT} s") from exc
    output = scripts.parse(script, result.stdout)
    if not output.finished:
        raise RestoreError(f"the snapshot scan stopped early: {(result.stderr or '').strip()[:200]}")
    findings = []
    prefix = str(scratch)
    for check in relocated:
        probe = output.results.get(check.probe_id)
        if probe is None:
            continue
        matched = packs_lib.evaluate(check, probe.items)
        if matched is None or check.severity not in DIRTY:
            continue
        paths = sorted(
            {str(i.get("path") or i.get("sample") or "").removeprefix(prefix) for i in matched} - {""}
        )
        findings.append(Finding(check.id, check.severity, check.title, paths[:20]))
    return findings


Scanner = Callable[[Path], list[Finding]]


def choose(
    restic: Restic,
    host: str,
    compromise_time: datetime,
    scanner: Scanner,
    margin: timedelta = DEFAULT_MARGIN,
    max_candidates: int = 10,
    scratch_parent: Path | None = None,
) -> Choice:
    """The newest clean snapshot of `host` before `compromise_time - margin` (RestoreError if none)."""
    cutoff = compromise_time - margin
    choice = Choice(host=host, cutoff=cutoff, snapshot=None)
    candidates = [s for s in restic.snapshots(host) if s.time < cutoff]
    if not candidates:
        raise RestoreError(f"{host}: no snapshot before {cutoff.isoformat(timespec='seconds')}")
    for snapshot in candidates[:max_candidates]:
        scratch = Path(tempfile.mkdtemp(prefix="orchestrator-scan-", dir=scratch_parent))
        try:
            restic.restore(snapshot, scratch)
            findings = scanner(scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not findings:
            choice.snapshot = snapshot
            return choice
        choice.skipped.append(
            {
                "snapshot_id": snapshot.id,
                "time": snapshot.time.isoformat(),
                "findings": [
                    {"check_id": f.check_id, "severity": f.severity, "paths": f.paths} for f in findings
                ],
            }
        )
    raise RestoreError(
        f"{host}: the {len(choice.skipped)} newest snapshot(s) before {cutoff.isoformat(timespec='seconds')} "
        f"are not clean ({', '.join(s['snapshot_id'][:8] for s in choice.skipped)})"
    )


def pack_scanner(extra_packs: Iterable[str] = ()) -> Scanner:
    """A scanner with the shipped packs plus the operator's."""
    from orchestrator.triage import packs as packs_lib

    checks = packs_lib.checks_for(packs_lib.load(extra_packs), "linux")
    return lambda scratch: scan_tree(scratch, checks)
