"""Recovery that moves, on the local lab (real sshd hosts, WinRM stand-ins, restic, ansible-playbook):
containment first for every infected host whatever its wave, dependencies gating reconnection and not
the rebuild, the network team's list for the hosts nobody can reach, a person's decision to rebuild
them out of band, and kill -9 during containment resuming like any stage. Two labs: 16 hosts, seed 11
(the DNS server does not answer, most services depend on it) and the demo's (`make demo`: 20 Linux
hosts and 2 Windows ones, seed 7: an EHR application server, a lab system and a workstation held).

Each lab here is this module's own: the runs destroy its infections.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import col, select

from orchestrator import inventory
from orchestrator.store import Store
from orchestrator.store.models import (
    ContainmentRequest,
    EvidenceItem,
    Host,
    StageRun,
    TriageResult,
    TriageRun,
)
from tests.conftest import Cli, needs_lab

pytestmark = [pytest.mark.lab, needs_lab]
ORCHESTRATOR = str(Path(sys.executable).parent / "orchestrator")
DIRTY = ("infected", "suspicious")


def _up(base: Path, **config: object) -> Path:
    from orchestrator_lab import LabConfig, free_net, up

    directory = base / "lab"
    up(LabConfig(dir=directory, net=free_net(), **config))  # type: ignore[arg-type]
    return directory


LABS = {
    "dns-unreachable": {"hosts": 16, "seed": 11, "infected": 0.4},
    "demo": {"hosts": 20, "windows": 2, "seed": 7, "infected": 0.4},  # as scripts/demo.sh brings it up
}


@pytest.fixture(scope="module", params=sorted(LABS))
def flow_lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from orchestrator_lab import down

    directory = _up(tmp_path_factory.mktemp(f"flowlab-{request.param}"), **LABS[request.param])
    try:
        yield directory
    finally:
        down(directory)


def _planned(lab: Path, db: Path) -> Cli:
    cli = Cli(db)
    inv = str(lab / "inventory")
    assert cli("triage", "-i", inv, "--timeout", "15").exit_code in (0, 1)
    assert cli("plan", "-i", inv).exit_code == 0
    assert cli("plan", "approve", "--by", "tester").exit_code == 0
    return cli


def _dependants(lab: Path, root: str) -> set[str]:
    """Every host that depends on `root`, directly or through others."""
    hosts = inventory.load([str(lab / "inventory")]).hosts
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, host in hosts.items():
            if name not in found and any(d == root or d in found for d in host.depends_on_hosts):
                found.add(name)
                changed = True
    return found


def test_containment_first_dependencies_gate_reconnection_and_a_decision_brings_the_rest_back(
    flow_lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns_lab = flow_lab
    manifest = json.loads((dns_lab / "manifest.json").read_text())
    linux = {h["name"] for h in manifest["hosts"] if h["os"] == "linux"}
    if (dns_lab / "winrm.env").exists():  # the Windows hosts' password, as an operator exports it
        key, _, value = (dns_lab / "winrm.env").read_text().strip().partition("=")
        monkeypatch.setenv(key, value)
    # The hosts nobody can reach or trust, as the lab's scenarios make them: the roots that hold others.
    roots = sorted(
        h["name"]
        for h in manifest["hosts"]
        if h["scenario"]["expected_verdict"] in ("unreachable", "error") and not h.get("protected")
    )
    assert roots
    cli = _planned(dns_lab, tmp_path / "recovery.db")
    inv = str(dns_lab / "inventory")
    runs = str(tmp_path / "runs")

    result = cli("run", "-i", inv, "--all", "--yes", "--runs-dir", runs, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    store = Store.open(str(cli.db))
    with store.read() as s:
        fleet = select(TriageResult).join(TriageRun, TriageRun.id == TriageResult.run_id)
        verdicts = {r.host_name: r.verdict for r in s.exec(fleet.where(TriageRun.stage == None))}  # noqa: E711
        rechecks = list(s.exec(select(TriageRun).where(TriageRun.stage == "validate")))
        rechecked = {
            r.host_name: (r.run_id, r.verdict)
            for r in s.exec(fleet.where(TriageRun.stage == "validate").order_by(TriageResult.id))
        }
        rows = {h.name: h for h in s.exec(select(Host))}
        runs_ = list(s.exec(select(StageRun).where(StageRun.check_mode == False)))  # noqa: E712
        requested = {r.host_name: r for r in s.exec(select(ContainmentRequest))}
    dirty = sorted(n for n, v in verdicts.items() if v in DIRTY and not rows[n].protected)
    assert dirty
    isolated = {r.host_name: r for r in runs_ if r.stage == "isolate" and r.status == "ok"}
    # Every reachable infected or suspicious host isolated (in containment, "wave 0") before any
    # rebuild work (the first wipe) began, whatever its wave or dependencies.
    assert set(dirty) <= set(isolated)
    assert {isolated[n].wave for n in dirty} == {0}
    first_wipe = min(r.started_at for r in runs_ if r.stage == "wipe")
    assert max(isolated[n].finished_at for n in dirty) <= first_wipe
    # Hosts nobody could reach: requested from the network team, with their address.
    unknown = sorted(
        n for n, v in verdicts.items() if v in ("unreachable", "error") and not rows[n].protected
    )
    assert unknown == roots and set(requested) == set(unknown)
    for root in roots:
        with open(requested[root].files[0], newline="") as f:
            listed = {row["host"]: row for row in csv.DictReader(f)}
        address = next(h["address"] for h in manifest["hosts"] if h["name"] == root)
        assert listed[root]["address"] == address
        assert "ip daddr @hosts4 drop" in Path(requested[root].files[1]).read_text()
    assert set(report["containment_requested"]) == set(unknown)
    # Dependencies gate service, not rebuild: the DNS server's dependants are rebuilt (or verified),
    # restored and validated, then wait isolated; the others are back.
    dependants = set().union(*(_dependants(dns_lab, root) for root in roots)) - set(roots)
    waiting = dependants & {n for n, h in rows.items() if h.state not in ("new", "planned")}
    assert waiting
    for name in waiting:
        assert rows[name].state == "awaiting-dependencies", (name, rows[name].state)
        # The reason names what it still waits for, as it ended: no dependency recovered since.
        named = re.findall(r"([^\s,]+) \(", rows[name].state_reason.split(": ", 1)[1])
        assert named and all(rows[d].state != "recovered" for d in named), (name, rows[name].state_reason)
        assert not any(r.host_name == name and r.stage == "reconnect" for r in runs_)
        if rows[name].restore_method == "restic" and name in dirty:
            assert any(r.host_name == name and r.stage == "restore" and r.status == "ok" for r in runs_)
        if name in dirty and name in linux:  # a rebuilt host stays isolated (a clean one never was)
            assert (dns_lab / "hosts" / name / "var/tmp/recovery-isolated").exists(), (
                f"{name} is not isolated"
            )
    # The validate stage's re-triage is a triage run of its own, finished and audited like any: every
    # host that passed validate was found clean by it, and `triage show` reads it as the host's latest.
    validated = {r.host_name for r in runs_ if r.stage == "validate" and r.status == "ok"}
    assert validated and rechecks and all(r.finished_at is not None for r in rechecks)
    assert {h: v for h, (_, v) in rechecked.items() if h in validated} == dict.fromkeys(validated, "clean")
    host = sorted(validated & set(dirty))[0]
    shown = cli.json("triage", "show", host, "--history", "1")
    assert shown["latest"]["run_id"] == rechecked[host][0] and shown["latest"]["verdict"] == "clean"
    assert shown["history"][0]["verdict"] == verdicts[host]
    assert any(
        e["command"] == "triage" and e["args"].get("stage") == "validate"
        for e in cli.json("audit", "show", "--last", "0")["entries"]
    )
    others = {h for h, e in ((h["name"], h) for h in report["hosts"]) if h not in waiting}
    assert all(rows[h].state == "recovered" for h in others), {h: rows[h].state for h in others}
    status = cli.json("status")
    assert status["containment"]["requested"] == len(unknown) and status["containment"]["not_yet"] == 0
    assert status["by_category"]["awaiting"] == len(waiting)
    # Each held host that others wait for directly is named in a next step (bring it back or release).
    named = {d for n in waiting for d in re.findall(r"([^\s,]+) \(on hold", rows[n].state_reason)}
    assert named and named <= set(roots)
    for root in named:
        assert any(root in step and "wait" in step for step in status["next_steps"]), status["next_steps"]
    # Every one of the infected hosts passes a new triage clean (rebuilt, awaiting or not).
    fresh = cli("triage", "-i", inv, "-l", ",".join(dirty), "--json")
    assert fresh.exit_code == 0, fresh.output
    assert {r["host"]: r["verdict"] for r in json.loads(fresh.stdout)["results"]} == dict.fromkeys(
        dirty, "clean"
    )

    # A person decides: rebuild each held host through the lab's reimage (out of band), restored from
    # before the incident as its console shows; one more run brings the rest back.
    since = manifest["infection_time"]
    for root in roots:
        decided = cli(
            "host",
            "decide",
            root,
            "--rebuild",
            "--why",
            "console: sshd dead or key changed, reimage it",
            "--compromised-since",
            since,
        )
        assert decided.exit_code == 0, decided.output + decided.stderr
    assert {d["host"] for d in cli.json("status")["decisions"]} >= set(roots)
    result = cli("run", "-i", inv, "--all", "--yes", "--runs-dir", runs, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    with store.read() as s:
        rows = {h.name: h for h in s.exec(select(Host))}
        theirs = list(s.exec(select(StageRun).where(col(StageRun.host_name).in_(roots))))
    for root in roots:
        mine = [r for r in theirs if r.host_name == root]
        assert rows[root].state == "recovered", (root, rows[root].state, rows[root].state_reason)
        skipped = {r.stage: r.message for r in mine if r.status == "skipped"}
        assert set(skipped) == {"isolate", "collect", "wipe"} and all(
            "out of band" in m for m in skipped.values()
        )
        assert {r.stage for r in mine if r.status == "ok"} >= {"reimage", "restore", "validate", "reconnect"}
        assert not (dns_lab / "hosts" / root / "var/tmp/recovery-isolated").exists()
    assert all(rows[n].state == "recovered" for n in waiting), {n: rows[n].state for n in waiting}
    assert cli("audit", "verify").exit_code == 0


def _playbooks_of(runs: Path) -> list[int]:
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


def test_kill_9_during_containment_resumes_like_any_stage(tmp_path: Path) -> None:
    from orchestrator_lab import down

    lab = _up(tmp_path, hosts=6, seed=3, infected=0.6)
    try:
        cli = _planned(lab, tmp_path / "recovery.db")
        runs = tmp_path / "runs"
        command = [ORCHESTRATOR, "--db", str(cli.db), "contain", "-i", str(lab / "inventory"), "--yes",
                   "--runs-dir", str(runs), "--retries", "2", "--json"]  # fmt: skip
        env = {**os.environ, "ORCHESTRATOR_OPERATOR": "tester"}
        rng = random.Random(14)
        store = Store.open(str(cli.db))
        kills = 0
        for _ in range(4):
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                    start_new_session=True)  # fmt: skip
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                with store.read() as s:
                    if s.exec(
                        select(StageRun).where(StageRun.status == "running", StageRun.wave == 0)
                    ).first():
                        break
                time.sleep(0.05)
            if proc.poll() is not None:
                break  # finished before this kill
            time.sleep(rng.uniform(0.0, 2.5))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            for _ in range(100):  # the killed run's playbooks die with their process group
                if not _playbooks_of(runs):
                    break
                time.sleep(0.1)
            assert not _playbooks_of(runs)
        assert kills >= 1
        final = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert final.returncode == 0, final.stderr
        with store.read() as s:
            protected = {h.name for h in s.exec(select(Host)) if h.protected}
            plan_rebuild = {
                r.host_name for r in s.exec(select(TriageResult)) if r.verdict in DIRTY
            } - protected
            rows = {h.name: h for h in s.exec(select(Host))}
            stage_runs = list(s.exec(select(StageRun)))
            items = list(s.exec(select(EvidenceItem)))
        assert plan_rebuild
        assert all(rows[n].state == "collected" for n in plan_rebuild), {
            n: rows[n].state for n in plan_rebuild
        }
        assert {r.wave for r in stage_runs} == {0} and {r.stage for r in stage_runs} == {"isolate", "collect"}
        assert not [r for r in stage_runs if r.status == "running"]
        # Each host's evidence recorded once, whatever was repeated.
        assert max(Counter((i.host_name, i.path) for i in items).values()) == 1
        assert {i.host_name for i in items} == plan_rebuild
        assert cli("audit", "verify").exit_code == 0
        # The run then goes on from wipe: containment is not done twice.
        result = cli("run", "-i", str(lab / "inventory"), "--all", "--yes", "--runs-dir", str(runs), "--json")
        assert result.exit_code == 0, result.output + result.stderr
        with store.read() as s:
            later = [r for r in s.exec(select(StageRun)) if r.wave != 0]
        assert not [r for r in later if r.stage in ("isolate", "collect")]
    finally:
        down(lab)
