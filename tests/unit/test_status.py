"""`orchestrator status` and `status HOST` on a real database holding a recovery halfway through:
counts by bucket, wave and tier, the hosts needing a person, the estimate, the filters, one host's
timeline, and reading while another process writes."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import pty
import select as selectlib
import signal
import struct
import subprocess
import sys
import termios
import time
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from sqlmodel import select

from orchestrator.reporting import durations, fleet, host_view
from orchestrator.reporting.selection import HostFilter
from orchestrator.store import Store, audit
from orchestrator.store.models import Host
from tests.conftest import Cli
from tests.unit import reporting_support as scenario


@pytest.fixture(scope="module")
def recovery_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: every test here only reads it (tests that write build their own)."""
    workdir = tmp_path_factory.mktemp("status")
    scenario.build(str(workdir / "recovery.db"), workdir).close()
    return workdir / "recovery.db"


@pytest.fixture
def status_cli(recovery_db: Path) -> Cli:
    return Cli(recovery_db)


def _status(db: Path | str, **filters: object) -> dict:
    store = Store.open(str(db))
    try:
        return fleet.status(store, HostFilter(**filters), now=scenario.NOW)  # type: ignore[arg-type]
    finally:
        store.close()


def test_fleet_counts_by_bucket_stage_wave_and_tier(recovery_db: Path) -> None:
    data = _status(recovery_db)
    assert data["total"] == 10
    assert data["by_category"] == scenario.EXPECTED_BUCKETS
    assert data["in_progress_by_stage"] == {"restore": 1}
    assert data["failed_by_stage"] == {"reimage": 1}
    assert data["plan"]["id"] == 1 and data["plan"]["status"] == "approved"  # not the newer draft
    waves = {w["wave"]: w for w in data["waves"]}
    assert (waves[1]["total"], waves[1]["recovered"], waves[1]["failed"], waves[1]["protected"]) == (
        3,
        1,
        1,
        1,
    )
    assert (waves[2]["recovered"], waves[2]["in_progress"], waves[2]["percent_recovered"]) == (2, 1, 66.7)
    assert (waves[3]["pending"], waves[4]["pending"]) == (1, 2)
    assert (waves[None]["total"], waves[None]["hold"]) == (1, 1)  # held: no wave
    tiers = {t["tier"]: t for t in data["tiers"]}
    assert (tiers[0]["total"], tiers[0]["recovered"], tiers[0]["failed"], tiers[0]["protected"]) == (
        3,
        1,
        1,
        1,
    )
    assert (tiers[1]["total"], tiers[1]["hold"], tiers[1]["in_progress"]) == (4, 1, 1)
    assert sum(t["total"] for t in data["tiers"]) == sum(w["total"] for w in data["waves"]) == 10


def test_hosts_needing_a_person_come_with_their_reason(recovery_db: Path) -> None:
    attention = _status(recovery_db)["attention"]
    assert attention["count"] == 3
    by_host = {row["host"]: row for row in attention["hosts"]}
    assert [row["host"] for row in attention["hosts"]] == ["dc02", "backup01", "pacs01"]  # most urgent first
    assert by_host["dc02"]["why"] == "failed" and by_host["dc02"]["stage"] == "reimage"
    assert "PXE boot timed out" in by_host["dc02"]["reason"]
    assert by_host["backup01"]["why"] == "protected_infected" and by_host["backup01"]["verdict"] == "infected"
    assert "PROTECTED HOST FOUND INFECTED" in by_host["backup01"]["reason"]
    assert by_host["pacs01"]["why"] == "hold" and "unreachable" in by_host["pacs01"]["reason"]
    assert by_host["pacs01"]["since"] == "2025-03-01T05:30:00Z"  # set aside by the plan approved then


def test_elapsed_and_estimate_come_from_measured_stage_durations(recovery_db: Path) -> None:
    timing = _status(recovery_db)["timing"]
    assert timing["started_at"] == "2025-03-01T06:00:00Z"
    assert timing["elapsed_s"] == (scenario.NOW - scenario.T0).total_seconds()
    assert timing["stage_medians_s"]["reimage"] == 600.0 and timing["stage_medians_s"]["harden"] == 300.0
    assert timing["basis"] == "measured" and timing["unmeasured_stages"] == []
    assert timing["eta_s"] == scenario.EXPECTED_ETA_S
    assert timing["finish_at"] == "2025-03-01T09:20:00Z"  # NOW 08:10 + 70 min
    waves = {w["wave"]: w for w in _status(recovery_db)["waves"]}
    assert waves[2]["remaining_stages"] == ["restore", "validate", "reconnect"] and waves[2]["eta_s"] == 1800
    # The failed host waits for a person, not for the clock; the protected one will be verified.
    assert waves[1]["remaining_stages"] == ["validate", "harden", "reconnect"] and waves[1]["eta_s"] == 1500


def test_estimate_without_measurements_says_what_it_lacks(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "fresh.db"))
    with store.write() as session:
        session.add(Host(name="lonely"))
    data = fleet.status(store)
    store.close()
    assert data["by_category"]["pending"] == 1 and data["plan"] is None
    assert data["timing"]["elapsed_s"] is None and data["timing"]["basis"] == "done"


def test_estimate_falls_back_to_the_plan_then_says_it_is_a_lower_bound() -> None:
    medians = {"validate": 100.0, "reconnect": 50.0}
    planned = {1: 900.0, 2: 800.0}
    verify = ("validate", "harden", "reconnect")
    measured = durations.estimate({1: ("validate", "reconnect")}, medians, planned, started_waves={1})
    assert (measured.eta_s, measured.basis) == (150.0, "measured")
    planned_only = durations.estimate({1: ("validate", "reconnect"), 2: verify}, medians, planned, {1})
    # Waves overlap: the longest (wave 2, the plan's 800 s), not 150 + 800.
    assert (planned_only.eta_s, planned_only.basis, planned_only.per_wave_s) == (
        800.0,
        "plan",
        {1: 150, 2: 800},
    )
    partial = durations.estimate({2: verify}, medians, planned, started_waves={2})
    assert (partial.eta_s, partial.basis, partial.unmeasured_stages) == (150.0, "partial", ["harden"])
    assert durations.estimate({}, medians, planned, set()).basis == "done"
    assert durations.estimate({}, medians, planned, set(), shared_s=500.0).eta_s == 0  # nothing left


def test_the_estimate_counts_the_workers_the_waves_share() -> None:
    # 120 hosts still to validate and reconnect (150 s each) on 50 workers: 18,000 s of work, 360 s at
    # best, more than one wave's 150 s.
    medians = {"validate": 100.0, "reconnect": 50.0}
    work = durations.remaining_work({("verify", "harden"): 0, ("rebuild", "validated"): 120}, medians)
    assert work == 120 * 50.0  # a validated rebuild has reconnect left only
    work = durations.remaining_work({("verify", "planned"): 120}, medians)
    assert work == 120 * 150.0
    eta = durations.estimate({1: ("validate", "reconnect")}, medians, {}, {1}, shared_s=work / 50)
    assert (eta.eta_s, eta.basis) == (360.0, "measured")


@pytest.mark.parametrize(
    ("filters", "hosts", "buckets"),
    [
        ({"wave": 2}, 3, {"recovered": 2, "in_progress": 1}),
        ({"tier": 0}, 3, {"recovered": 1, "failed": 1, "protected": 1}),
        ({"state": "failed"}, 1, {"failed": 1}),
        ({"state": "hold"}, 1, {"hold": 1}),  # held by the plan, its state still "new"
        ({"state": "pending"}, 3, {"pending": 3}),
        ({"state": "restoring"}, 1, {"in_progress": 1}),
        ({"pattern": "ehr*"}, 2, {"recovered": 1, "in_progress": 1}),
        ({"pattern": "domain_controllers:!dc02"}, 1, {"recovered": 1}),
        ({"tier": 1, "state": "recovered", "wave": 2}, 2, {"recovered": 2}),
    ],
)
def test_filters(recovery_db: Path, filters: dict, hosts: int, buckets: dict) -> None:
    data = _status(recovery_db, **filters)
    assert data["total"] == hosts
    assert {k: v for k, v in data["by_category"].items() if v} == buckets
    assert sum(w["total"] for w in data["waves"]) == hosts


def test_cli_json_equals_the_library_and_filters_apply(status_cli: Cli, recovery_db: Path) -> None:
    data = status_cli.json("status", "--wave", "1")
    assert data["total"] == 3 and data["by_category"]["failed"] == 1
    assert data["filters"] == {"wave": 1, "tier": None, "state": None, "limit": None}
    full = status_cli.json("status")
    library = _status(recovery_db)
    assert {k: full[k] for k in ("by_category", "waves", "tiers")} == {
        k: library[k] for k in ("by_category", "waves", "tiers")
    }


def test_cli_refuses_bad_filters_in_one_line(status_cli: Cli) -> None:
    for args, message in (
        (("--state", "sleeping"), "not a state or bucket"),
        (("-l", "nosuchgroup*"), "matches no host"),
    ):
        result = status_cli("status", *args)
        assert result.exit_code == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert status_cli("status", "dc01", "--tier", "1").exit_code == 2


def test_table_shows_buckets_waves_tiers_and_who_needs_a_person(status_cli: Cli) -> None:
    result = status_cli("status")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for text in ("Hosts by state", "in progress", "restore 1", "Waves", "Tiers", "life-critical clinical"):
        assert text in out
    assert "Needs a person: 3 host(s)" in out and "PXE boot timed out" in out and "protected, infected" in out
    assert "ETA 1h 10m" in out  # the longest wave: waves overlap


def test_host_timeline_tells_the_whole_story(recovery_db: Path) -> None:
    store = Store.open(str(recovery_db))
    data = host_view.timeline(store, "ehr-db01")
    store.close()
    assert data["host"]["tier"] == 1 and data["host"]["data_categories"] == ["health", "personal"]
    assert data["state"] == "recovered" and data["bucket"] == "recovered"
    assert [t["verdict"] for t in data["triage"]] == ["infected", "clean"]
    first = data["triage"][0]
    assert first["compromise_time"] == "2025-02-27T06:00:00Z"
    assert (
        first["matches"][0]["check_id"] == "lockbit3_ransom_note"
        and "README" in first["matches"][0]["evidence"]
    )
    assert data["plan"]["action"] == "rebuild" and data["plan"]["wave"] == 2
    assert [s["stage"] for s in data["stages"]] == list(scenario.states.REBUILD)
    restore = next(s for s in data["stages"] if s["stage"] == "restore")
    assert restore == restore | {
        "status": "ok",
        "started_at": "2025-03-01T08:00:00Z",
        "finished_at": "2025-03-01T08:10:00Z",
        "duration_s": 600.0,
    }
    assert [e["event"] for e in restore["events"]] == ["runner_on_start", "runner_on_ok"]
    assert [e["sha256"] for e in data["evidence"]] == [
        scenario.evidence_hash("ehr-db01", "memory.lime"),
        scenario.evidence_hash("ehr-db01", "var-log.tar.gz"),
    ]
    assert data["restore_point"]["snapshot_id"] == scenario.snapshot_id("ehr-db01")
    assert data["restore_point"]["skipped"][0]["id"] == "9d8c7b6a"
    assert len(data["audit"]) == 15
    assert data["audit"][-2]["details"] == {"stage": "reconnect", "state": "recovered"}
    assert data["audit"][-1]["command"] == "run stage"  # a wave-wide entry naming the host
    assert data["remaining_stages"] == [] and data["eta_s"] is None
    kinds = [item["kind"] for item in data["timeline"]]
    assert kinds.index("compromise") < kinds.index("triage") < kinds.index("stage")


def test_host_in_progress_has_its_estimate_and_failed_host_its_message(status_cli: Cli) -> None:
    restoring = status_cli.json("status", "ehr-app01")
    assert "run stage" not in [a["command"] for a in restoring["audit"]]  # it names ehr-db01 only
    assert (
        restoring["remaining_stages"] == ["restore", "validate", "reconnect"] and restoring["eta_s"] == 1800
    )
    assert restoring["stages"][-1]["status"] == "running" and restoring["stages"][-1]["finished_at"] is None
    failed = status_cli("status", "dc02")
    assert failed.exit_code == 0 and "PXE boot timed out after 600 s" in failed.stdout
    assert "memory.lime" in failed.stdout and scenario.evidence_hash("dc02", "memory.lime") in failed.stdout


def test_unknown_host_suggests_close_names(status_cli: Cli) -> None:
    result = status_cli("status", "dc1")
    assert result.exit_code == 2 and "no host 'dc1'" in result.stderr and "dc01" in result.stderr


def _writer(db: str, rounds: int, done: Event, enough: Event, count: Synchronized) -> None:
    """Another orchestrator process: flips hosts between states and appends audit rows, at least
    `rounds` times and on until the reader has seen both states (a loaded machine may run every round
    between two reads), always an even number of times (the host ends "new")."""
    store = Store.open(db)
    i = 0
    while i < rounds or i % 2 or (not enough.is_set() and i < 100 * rounds):
        with store.write() as session:
            host = session.exec(select(Host).where(Host.name == "ws-er-001")).one()
            host.state = "validating" if i % 2 == 0 else "new"
            host.version += 1
            session.add(host)
            audit.record(session, "writer", "run", {"round": i}, {"state": host.state}, host="ws-er-001")
        i += 1
    store.close()
    count.value = i
    done.set()


def test_status_reads_while_another_process_writes(tmp_path: Path) -> None:
    db = str(tmp_path / "busy.db")
    scenario.build(db, tmp_path).close()
    spawn = multiprocessing.get_context("spawn")
    done, enough, count = spawn.Event(), spawn.Event(), spawn.Value("i", 0)
    writer = spawn.Process(target=_writer, args=(db, 300, done, enough, count))
    writer.start()
    store = Store.open(db)
    seen: set[int] = set()
    reads = 0
    try:
        while not done.is_set() or reads < 5:
            data = fleet.status(store)
            seen.add(data["by_category"]["in_progress"])
            if seen == {1, 2}:
                enough.set()
            assert host_view.timeline(store, "ws-er-001")["host"]["name"] == "ws-er-001"
            reads += 1
    finally:
        enough.set()
        writer.join(timeout=60)
    assert writer.exitcode == 0
    assert seen == {1, 2}, "the reader should have seen both the writer's states"
    # Every committed write is visible to the next read: the final state, all audit rows.
    with store.read() as session:
        assert audit.verify(session) is None
    final = host_view.timeline(store, "ws-er-001")
    store.close()
    assert final["state"] == "new" and len(final["audit"]) == count.value >= 300
    assert reads > 5


def test_watch_redraws_until_ctrl_c(tmp_path: Path) -> None:
    """In a terminal (a pty): a change committed by another process shows up, Ctrl-C exits 0."""
    db = str(tmp_path / "watched.db")
    scenario.build(db, tmp_path).close()
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 220, 0, 0))
    exe = Path(sys.executable).with_name("orchestrator")
    env = {**os.environ, "TERM": "xterm"}
    proc = subprocess.Popen(
        [str(exe), "--db", db, "status", "--watch", "--interval", "0.3"],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
        close_fds=True,
    )
    os.close(child)
    seen = b""

    def read_until(marker: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = selectlib.select([main], [], [], 0.2)
            if ready:
                seen += os.read(main, 65536)
        assert marker in seen, seen[-2000:].decode(errors="replace")

    try:
        read_until(b"Needs a person: 3 host(s)")
        store = Store.open(db)
        with store.write() as session:
            host = session.exec(select(Host).where(Host.name == "file01")).one()
            host.state, host.stage, host.state_reason = "failed", "isolate", "isolate: switch port refused"
            session.add(host)
        store.close()
        read_until(b"Needs a person: 4 host(s)")
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:  # keep draining: a full pty blocks it
            if selectlib.select([main], [], [], 0.2)[0]:
                try:
                    seen += os.read(main, 65536)
                except OSError:  # the child closed its side
                    break
        assert proc.wait(timeout=60) == 0  # a loaded machine: the pty closes before the exit
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    assert b"switch port refused" in seen


def test_status_json_keys_are_stable(status_cli: Cli) -> None:
    data = status_cli.json("status")
    assert list(data) == [
        "generated_at",
        "filters",
        "plan",
        "total",
        "by_category",
        "by_state",
        "in_progress_by_stage",
        "failed_by_stage",
        "tiers",
        "waves",
        "containment",
        "decisions",
        "next_steps",
        "attention",
        "timing",
    ]
    host = status_cli.json("status", "dc01")
    assert json.dumps(host)  # serialisable as printed
    assert list(host) == [
        "host",
        "state",
        "stage",
        "bucket",
        "state_reason",
        "state_changed_at",
        "synced_at",
        "triage",
        "plan",
        "stages",
        "evidence",
        "restore_point",
        "audit",
        "remaining_stages",
        "eta_s",
        "eta_unmeasured_stages",
        "timeline",
    ]
