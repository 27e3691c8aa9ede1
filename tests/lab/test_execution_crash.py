"""Crash safety: `orchestrator run` killed with SIGKILL at 20+ random moments of a lab run, restarted
each time, ends in the same database and the same lab hosts as an uninterrupted run of the same lab
(a second lab from the same seed): no stage repeated that must not be, no host skipped, no evidence or
restore point recorded twice, and no playbook left running behind a killed orchestrator."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from sqlmodel import select

from orchestrator.store import Store
from orchestrator.store.models import EvidenceItem, Host, RestorePoint, StageRun
from tests.conftest import Cli, needs_lab
from tests.lab.test_execution_lab import BACKED_UP, tree

pytestmark = [
    pytest.mark.lab,
    needs_lab,
]
KILLS = 20
ORCHESTRATOR = str(Path(sys.executable).parent / "orchestrator")
# Lab-specific randomness (the lab's own SSH key is in every authorized_keys, the backup host's restic
# repository has its own random ids): not part of the comparison.
RANDOM_PARTS = ("authorized_keys", "triage.json", "MANIFEST.sha256")


def _lab(base: Path, net: str) -> tuple[Path, Cli]:
    from orchestrator_lab import LabConfig, up

    directory = base / "lab"
    up(LabConfig(dir=directory, hosts=6, seed=3, net=net, infected=0.6))
    cli = Cli(base / "recovery.db")
    inv = str(directory / "inventory")
    assert cli("triage", "-i", inv, "--timeout", "10").exit_code in (0, 1)
    assert cli("plan", "-i", inv).exit_code == 0
    assert cli("plan", "approve").exit_code == 0
    return directory, cli


def _run(cli: Cli, lab: Path, runs: Path, stderr: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [ORCHESTRATOR, "--db", str(cli.db), "run", "-i", str(lab / "inventory"), "--all", "--yes",
         "--runs-dir", str(runs), "--retries", "2", "--max-fail-percentage", "100", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("w") if stderr else subprocess.DEVNULL,
        env={**os.environ, "ORCHESTRATOR_OPERATOR": "tester"},
        start_new_session=True,
    )  # fmt: skip


def _playbooks_of(runs: Path) -> list[int]:
    """Processes still working for a run under `runs` (their command line names its directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(runs) in cmdline and "ansible-playbook" in cmdline:
            found.append(int(proc.name))
    return found


def _random_evidence(root: Path, rel: str) -> bool:
    """An evidence file stored under its index (files/000004) whose path on the host is lab-random."""
    pack, _, name = rel.rpartition("/files/")
    if not pack or "/" in name:
        return False
    index = json.loads((root / pack / "index.json").read_text())
    return any(i["file"] == f"files/{name}" and i["path"].endswith(RANDOM_PARTS) for i in index)


def _outcome(lab: Path, cli: Cli) -> dict:
    manifest = json.loads((lab / "manifest.json").read_text())
    t0 = datetime.fromisoformat(manifest["infection_time"].replace("Z", "+00:00"))
    with Store.open(str(cli.db)).read() as s:
        hosts = {h.name: (h.state, h.stage) for h in s.exec(select(Host))}
        points = [
            (p.host_name, (p.snapshot_time.replace(tzinfo=t0.tzinfo) - t0).total_seconds())
            for p in s.exec(select(RestorePoint))
        ]
        items = Counter(
            (i.host_name, i.path, i.sha256)
            for i in s.exec(select(EvidenceItem))
            if not i.path.endswith(RANDOM_PARTS)
        )
    trees = {}
    for host in sorted((lab / "hosts").iterdir()):
        for directory in (*BACKED_UP, "var/tmp"):
            root = host / directory
            for rel, digest in tree(root, ()).items():
                if (
                    rel.startswith((".ansible", ".ssh", "restic/"))
                    or rel.endswith((*RANDOM_PARTS, "index.json"))  # the index: compared as `items`
                    or rel.endswith("/")
                    or _random_evidence(root, rel)
                ):
                    continue
                trees[f"{host.name}:/{directory}/{rel}"] = digest
    return {"hosts": hosts, "points": sorted(points), "evidence": items, "trees": trees}


def test_kill_minus_nine_anywhere_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    from orchestrator_lab import down

    rng = random.Random(int(os.environ.get("KILL_SEED", "0")) or None)
    lab_a, cli_a = _lab(tmp_path / "a", "127.94.0.0/16")
    lab_b, cli_b = _lab(tmp_path / "b", "127.95.0.0/16")
    try:
        started = time.monotonic()
        proc = _run(cli_a, lab_a, tmp_path / "a" / "runs")
        assert proc.wait(timeout=900) == 0
        uninterrupted = time.monotonic() - started
        expected = _outcome(lab_a, cli_a)
        # Two infected hosts rebuilt one after the other (tier 0, then its dependant), two verified.
        assert sum(state == "recovered" for state, _ in expected["hosts"].values()) >= 3, expected["hosts"]

        runs_b = tmp_path / "b" / "runs"
        kills = 0
        errors = tmp_path / "b" / "stderr"
        while kills < KILLS:
            proc = _run(cli_b, lab_b, runs_b, errors)
            time.sleep(rng.uniform(0.3, min(3.0, uninterrupted / 10)))
            if proc.poll() is not None:  # finished before the kill point: the run is complete
                assert proc.returncode == 0, f"after {kills} kills: {errors.read_text()[-2000:]}"
                break
            os.kill(proc.pid, signal.SIGKILL)  # kill -9 of the orchestrator...
            proc.wait()
            kills += 1
            deadline = time.monotonic() + 10
            while _playbooks_of(runs_b) and time.monotonic() < deadline:  # ...its playbook dies with it
                time.sleep(0.2)
            assert not _playbooks_of(runs_b), "a playbook outlived the killed orchestrator"
        assert _run(cli_b, lab_b, runs_b).wait(timeout=900) == 0
        assert kills == KILLS, f"the run finished after {kills} kill points"
        got = _outcome(lab_b, cli_b)
        assert got["hosts"] == expected["hosts"]
        assert got["points"] == expected["points"]
        assert got["evidence"] == expected["evidence"]
        assert got["trees"] == expected["trees"]
        with Store.open(str(cli_b.db)).read() as s:
            interrupted = s.exec(select(StageRun).where(StageRun.status == "interrupted")).all()
        assert interrupted, "no kill landed inside a stage"
    finally:
        down(lab_a)
        down(lab_b)
