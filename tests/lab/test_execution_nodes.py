"""Execution nodes on the local lab: stages sent to a lab host through ansible-runner's streaming mode
(`transmit` here, `ansible-runner worker` on the node over SSH, `process` back here), results in the
database exactly as for local runs, and a node killed mid-stage leaving its hosts resumable.

Real sshd hosts, a real ansible-runner worker on the node, real restic; this lab is this module's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlmodel import col, select

from orchestrator.execution import states
from orchestrator.store import Store
from orchestrator.store.models import AuditEntry, EvidenceItem, Host, StageEvent, StageRun
from tests.conftest import Cli, needs_lab
from tests.lab.node_support import HOSTS, NODES, SEED, orchestrator, site_of

pytestmark = [
    pytest.mark.lab,
    needs_lab,
]


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_inventory_refuses_bad_execution_nodes(cli: Cli, tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        "all:\n  hosts:\n"
        "    a: {ansible_host: 127.0.0.2, recovery_execution_node: nowhere}\n"
        "    b: {ansible_host: 127.0.0.3, recovery_execution_node: b}\n"
        "    c: {ansible_host: 127.0.0.4, recovery_execution_node: w}\n"
        "    d: {ansible_host: 127.0.0.5, recovery_execution_node: e}\n"
        "    e: {ansible_host: 127.0.0.6, recovery_execution_node: f}\n"
        "    f: {ansible_host: 127.0.0.7}\n"
        "    w: {ansible_host: 127.0.0.8, ansible_connection: winrm, ansible_winrm_transport: ntlm}\n"
    )
    result = cli("inventory", "check", "-i", str(inv))
    assert result.exit_code == 2
    text = result.output
    assert f"{inv}:3" in text and "host a: unknown execution node 'nowhere'" in text
    assert "host b: recovery_execution_node names the host itself" in text
    assert "host c: execution node w is reached over winrm" in text
    assert "host d: execution node e has an execution node of its own (f)" in text
    assert "host e:" not in text


def test_stages_run_on_nodes_and_resume_after_a_node_dies(site_lab: Path, tmp_path: Path) -> None:
    db, runs, inv = tmp_path / "nodes.db", tmp_path / "runs", str(site_lab / "inventory")
    # Waves of at most 5 hosts, so that a later wave has rebuild work of its own.
    plan = ("plan", "-i", inv, "--max-wave-size", "5")
    for step in (("triage", "-i", inv, "--timeout", "15"), plan, ("plan", "approve")):
        rc, out, err = finish(orchestrator(db, *step))
        assert rc in (0, 1), err  # triage exits 1: the lab has unreachable hosts on purpose
    store = Store.open(str(db))
    nodes = site_of(site_lab)
    manifest = json.loads((site_lab / "manifest.json").read_text())

    # Wave 1 all through one node (--node), whatever the inventory says; the node itself runs here.
    rc, out, err = finish(
        orchestrator(
            db,
            "run",
            "-i",
            inv,
            "--wave",
            "1",
            "--node",
            "exec-01",
            "--yes",
            "--runs-dir",
            str(runs),
            "--json",
        )
    )
    assert rc == 0, err
    wave1 = {h["name"]: h for h in json.loads(out)["hosts"] if h["wave"] == 1}
    # A host whose dependency nobody could reach is rebuilt and waits, isolated (issue 14).
    assert wave1 and all(h["outcome"] in ("recovered", "awaiting") for h in wave1.values()), wave1
    with store.read() as session:
        stages = [
            json.loads(a.details) if isinstance(a.details, str) else a.details
            for a in session.exec(select(AuditEntry).where(AuditEntry.command == "run stage"))
        ]
    placed = {}
    for details in stages:
        placed.update(details.get("nodes") or {})
    # Wave 1's hosts, and the containment of every infected host before it, all through exec-01.
    assert set(wave1) - {"exec-01"} <= set(placed) and set(placed.values()) == {"exec-01"}, placed
    assert list(runs.glob("*/*-w1-validate-a1/node-exec-01/artifacts/run/job_events/*.json"))
    # What was streamed to the node (a copy of the inventory, the playbooks) is not kept as an artifact.
    assert not list(runs.glob("*/*/node-*/inventories")) and not list(runs.glob("*/*/node-*/project"))

    # A later wave through each host's own node; the node of a rebuilt host is killed mid-stage.
    with store.read() as session:
        later = [w for w in range(2, 10) if "rebuild" in _plan_wave(session, w).values()]
        assert later, "no later wave with a rebuild"
        target = str(later[0])
        plan_hosts = _plan_wave(session, later[0])
    rebuilt = sorted(h for h, action in plan_hosts.items() if action == "rebuild")
    victim_node = nodes[rebuilt[0]]
    victims = sorted(h for h in plan_hosts if nodes.get(h) == victim_node)
    run = orchestrator(db, "run", "-i", inv, "--wave", target, "--yes", "--runs-dir", str(runs), "--json")
    try:
        # Kill the node while it runs a stage after collect (the wipe or later) for its hosts.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with store.read() as session:
                running = session.exec(
                    select(StageRun).where(
                        StageRun.status == "running",
                        col(StageRun.host_name).in_(victims),
                        col(StageRun.stage).in_(["wipe", "reimage", "restore", "validate"]),
                    )
                ).first()
                started = (
                    running is not None
                    and session.exec(
                        select(StageEvent).where(
                            StageEvent.stage_run_id == running.id, StageEvent.event == "runner_on_start"
                        )
                    ).first()
                )
            if started and running.stage != "reimage":  # reimage (lab method) runs on the controller
                break
            time.sleep(0.2)
        else:
            pytest.fail("no stage started on the node in time")
        killed_stage = running.stage
        pid = json.loads((site_lab / "pids" / f"{victim_node}.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)  # PID 1 of the node's namespace: every process of the node dies
        rc, out, err = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
    assert rc == 1, err
    assert "interrupted (run again to resume them)" in err
    report = {h["name"]: h for h in json.loads(out)["hosts"]}
    # Where the engine really placed each host of the wave (a site's node may serve nested groups too).
    with store.read() as session:
        placed_now: dict[str, str] = {}
        for entry in session.exec(select(AuditEntry).where(AuditEntry.command == "run stage")):
            details = json.loads(entry.details) if isinstance(entry.details, str) else entry.details
            if details.get("wave") == int(target):
                placed_now.update(details.get("nodes") or {})
    victims = sorted(set(victims) | {h for h, n in placed_now.items() if n == victim_node})
    cut = [h for h in victims if report[h]["outcome"] == "interrupted"]
    assert running.host_name in cut, report
    assert all(f"execution node {victim_node} lost" in report[h]["reason"] for h in cut)
    cut_in: dict[str, str] = {}  # host -> the stage the node died in
    with store.read() as session:
        for name in cut:
            row = session.exec(select(Host).where(Host.name == name)).one()
            assert row.state not in (states.FAILED, states.RECOVERED)  # left "-ing": resumable
            last = session.exec(
                select(StageRun).where(StageRun.host_name == name).order_by(col(StageRun.id).desc())
            ).first()
            assert last.status == "interrupted" and victim_node in (last.message or "")
            cut_in[name] = last.stage
    # In the stage seen running, or a later one: the host's next stage starts as soon as its own run
    # ends (waves and stage runs overlap), which can be before the kill lands.
    order = states.STAGE_ORDER
    assert order.index(cut_in[running.host_name]) >= order.index(killed_stage), (cut_in, killed_stage)
    others = [h for h in plan_hosts if h not in victims and h != victim_node]  # the node itself died
    assert all(report[h]["outcome"] in ("recovered", "awaiting", "blocked") for h in others), report

    # The node comes back (the lab restarts what died); the next run resumes the cut hosts.
    from orchestrator_lab import LabConfig, up

    up(LabConfig(dir=site_lab, hosts=HOSTS, nodes=NODES, seed=SEED, net=manifest["net"]))
    rc, out, err = finish(
        orchestrator(db, "run", "-i", inv, "--wave", target, "--yes", "--runs-dir", str(runs), "--json")
    )
    assert rc == 0, err
    report = {h["name"]: h for h in json.loads(out)["hosts"]}
    assert all(report[h]["outcome"] in ("recovered", "awaiting") for h in plan_hosts), report
    with store.read() as session:
        for name in cut:
            runs_of = list(
                session.exec(select(StageRun).where(StageRun.host_name == name).order_by(col(StageRun.id)))
            )
            done = [r.stage for r in runs_of if r.status == "ok"]
            # Each stage done once: the interrupted one repeated, none before it, none skipped.
            path = states.path_for(report[name]["action"], report[name]["action"] == "protected")
            assert done == [s for s in path if s in done] and len(done) == len(set(done)), done
            # Reconnected, or validated and waiting isolated for a dependency nobody could reach.
            assert done[-1] == ("validate" if report[name]["outcome"] == "awaiting" else "reconnect")
            assert cut_in[name] in done  # the stage the node died in, done on the second run
        evidence = {e.host_name for e in session.exec(select(EvidenceItem))}
        assert set(rebuilt) <= evidence
        events = session.exec(
            select(StageEvent.host_name).where(col(StageEvent.host_name).in_(victims)).distinct()
        ).all()
        assert set(victims) <= set(events)
    # `status` tells hosts run through nodes exactly as local ones.
    rc, out, err = finish(orchestrator(db, "status", "--json"))
    assert rc == 0, err
    fleet = json.loads(out)
    done = fleet["by_category"]["recovered"] + fleet["by_category"].get("awaiting", 0)
    assert done == len(wave1) + len(plan_hosts), fleet["by_category"]
    # The hosts to rebuild in the waves not run yet are contained (isolated, evidence collected) and
    # wait there for their wave: in progress, and nothing else is.
    with store.read() as session:
        ran = {1, int(target)}
        contained = [
            h
            for w in range(2, 50)
            if w not in ran
            for h, action in _plan_wave(session, w).items()
            if action == "rebuild"
        ]
        collected = session.exec(select(Host).where(col(Host.name).in_(contained))).all()
    assert {h.state for h in collected} <= {"collected"}, {h.name: h.state for h in collected}
    assert fleet["by_category"]["in_progress"] == len(contained), (fleet["by_category"], contained)
    assert fleet["by_category"]["failed"] == 0


def _plan_wave(session, wave: int) -> dict[str, str]:
    from orchestrator.planning.store import load_approved_plan

    view = load_approved_plan(session)
    return {m.host_name: m.action for m in view.members if m.wave == wave and m.action != "hold"}
