"""The engine over real ansible-runner runs of toy stage playbooks on local-connection hosts: stage
order per path, retries, the failure threshold, dependants of failed hosts, protected hosts, refusals,
resumption after a crash, the operator's reset, and secrets kept out of the artifacts."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from sqlmodel import select

from orchestrator.errors import RefusedError
from orchestrator.execution import engine, host_reset
from orchestrator.store import Store
from orchestrator.store.models import AuditEntry, EvidenceItem, Host, PlanMember, StageEvent, StageRun
from tests.lab.execution_support import approved_plan, stages_run, toy_inventory, toy_playbooks

REBUILD = ["isolate", "collect", "wipe", "reimage", "restore", "validate", "reconnect"]
VERIFY = ["validate", "harden", "reconnect"]


def clean(hosts):  # the triage re-check's far end; the real one runs in the lab tests
    return {h.name: (True, "clean") for h in hosts}


@pytest.fixture
def world(tmp_path: Path):
    def make(hosts: dict, members: list, params: dict | None = None, **options):
        hosts = {"ev": {"group": "evidence_store", "recovery_protected": True}, **hosts}
        inv = toy_inventory(tmp_path / "inv", hosts)
        store = Store.open(str(tmp_path / "state.db"))
        approved_plan(store, inv, members, params)
        opts = engine.RunOptions(
            inventory=[str(inv)],
            operator="tester",
            runs_dir=tmp_path / "runs",
            playbooks=toy_playbooks(tmp_path / "playbooks"),
            validator=clean,
            **options,
        )
        return inv, store, opts

    return make


def states_of(store: Store) -> dict[str, tuple[str, str | None]]:
    with store.read() as s:
        return {h.name: (h.state, h.stage) for h in s.exec(select(Host))}


def test_paths_retries_events_evidence_and_protected_hosts(world, monkeypatch) -> None:
    monkeypatch.setenv("TOY_API_TOKEN", "s3cr3t-t0ken-value")
    inv, store, opts = world(
        {
            "a": {},
            "b": {"toy_fail_once": ["wipe"]},
            "c": {"recovery_depends_on": ["a"]},
            "p": {"recovery_protected": True},
        },
        # p is protected in the inventory: whatever the plan says, it only takes the verify path
        [
            ("a", "rebuild", 1),
            ("b", "rebuild", 1),
            ("p", "rebuild", 1),
            ("c", "verify", 2),
            ("ev", "protected", None),
        ],
        retries=1,
    )
    report = engine.run(store, opts)
    assert not report.failed and report.stopped is None
    assert {h: s for h, (s, _) in states_of(store).items() if h != "ev"} == dict.fromkeys("abcp", "recovered")
    assert stages_run(inv, "a") == REBUILD
    assert stages_run(inv, "b") == [*REBUILD[:3], "wipe", *REBUILD[3:]]  # wipe retried once
    assert stages_run(inv, "p") == VERIFY
    assert stages_run(inv, "c") == VERIFY
    assert stages_run(inv, "ev") == []
    with store.read() as s:
        runs = list(s.exec(select(StageRun)))
        b_wipe = sorted(
            (r.attempt, r.status, r.message) for r in runs if r.host_name == "b" and r.stage == "wipe"
        )
        assert b_wipe == [(1, "failed", "toy failure of wipe"), (2, "ok", None)]
        assert all(
            r.runner_dir and Path(r.runner_dir, "artifacts", "run", "job_events").is_dir() for r in runs
        )
        events = list(s.exec(select(StageEvent)))
        assert {e.event for e in events} >= {"runner_on_start", "runner_on_ok", "runner_on_failed"}
        assert all(e.stage_run_id for e in events)
        items = list(s.exec(select(EvidenceItem)))
        assert sorted(i.host_name for i in items) == ["a", "b"]
        assert all(
            i.collected_by == "tester" and i.sha256 == "ab" * 32 and i.stored_at == "ev:/x" for i in items
        )
        commands = [a.command for a in s.exec(select(AuditEntry))]
        assert commands[0] == "run start" and commands[-1] == "run end" and "run stage" in commands
    # Nothing secret in the artifacts: not the environment's token (ansible got it, see the log) ...
    blobs = [p.read_bytes() for p in Path(report.runs_dir).rglob("*") if p.is_file()]
    assert not any(b"s3cr3t-t0ken-value" in b for b in blobs)
    command = json.loads(next(Path(report.runs_dir).rglob("artifacts/run/command")).read_text())
    assert "TOY_API_TOKEN" not in command["env"] and command["env"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"


def test_failure_threshold_and_dependants_of_failed_hosts(world) -> None:
    inv, store, opts = world(
        {
            "a": {"toy_fail": ["isolate"]},
            "b": {},
            "c": {},
            "d": {},
            "e": {"recovery_depends_on": ["a"]},
            "f": {"recovery_depends_on": ["b"]},
        },
        [
            ("a", "rebuild", 1),
            ("b", "verify", 1),
            ("c", "verify", 1),
            ("d", "verify", 1),
            ("e", "verify", 2),
            ("f", "verify", 2),
        ],
        retries=0,
        max_fail_percentage=30,
    )
    report = engine.run(store, opts)
    assert [h.name for h in report.failed] == ["a"]
    assert report.hosts["a"].reason == "Fail when told: toy failure of isolate"
    # A dependency gates reconnection, not the work: e is verified, then waits for a (failed).
    assert report.hosts["e"].outcome == "awaiting" and "a (failed)" in report.hosts["e"].reason
    assert stages_run(inv, "e") == ["validate", "harden"] and stages_run(inv, "f") == VERIFY
    assert states_of(store)["a"] == ("failed", "isolate")
    assert states_of(store)["e"] == ("awaiting-dependencies", "harden")


def test_a_wave_stops_above_the_failure_threshold(world) -> None:
    # Three workers: wave 1's validate takes them all, so wave 2 can only start after it, and the
    # stop that validate's failures cause starts nothing more, in any wave.
    inv, store, opts = world(
        {"a": {"toy_fail": ["validate"]}, "b": {"toy_fail": ["validate"]}, "c": {}, "x": {}},
        [("a", "verify", 1), ("b", "verify", 1), ("c", "verify", 1), ("x", "verify", 2)],
        retries=0,
        max_fail_percentage=50,
        forks=3,
    )
    report = engine.run(store, opts)
    assert report.stopped and "2 of 3 hosts failed" in report.stopped
    assert stages_run(inv, "c") == ["validate"]  # harden was never reached
    assert stages_run(inv, "x") == [] and report.waves == [1]


def test_waves_overlap_within_the_capacity(world) -> None:
    """Issue 14: waves are not barriers. With one image server, the three rebuilds take turns (each
    holds it from wipe until it reaches reconnect); wave 2's verifications do not wait for wave 1."""
    slow = {"toy_slow": {"reimage": 2}}
    _, store, opts = world(
        {"r1": slow, "r2": slow, "r3": slow, "v1": {}, "v2": {}},
        [("r1", "rebuild", 1), ("r2", "rebuild", 1), ("r3", "rebuild", 2), ("v1", "verify", 2),
         ("v2", "verify", 2), ("ev", "protected", None)],
        params={"capacities": {"image-server": 1}},
        forks=3,
    )  # fmt: skip
    report = engine.run(store, opts)
    assert not report.failed and report.stopped is None
    with store.read() as s:
        runs = list(s.exec(select(StageRun).where(StageRun.wave > 0)))
        states = {h.name: h.state for h in s.exec(select(Host))}
    assert {states[h] for h in ("r1", "r2", "r3", "v1", "v2")} == {"recovered"}

    def span(host: str, stages: set[str]) -> tuple:
        mine = [r for r in runs if r.host_name == host and r.stage in stages]
        return min(r.started_at for r in mine), max(r.finished_at for r in mine)

    held = sorted(span(h, {"wipe", "reimage", "restore", "validate", "harden"}) for h in ("r1", "r2", "r3"))
    for (_, end), (start, _) in itertools.pairwise(held):
        assert end <= start, "two rebuilds held the one image server at once"
    wave1_end = max(span(h, {"reconnect"})[1] for h in ("r1", "r2"))
    assert min(span(h, {"validate"})[0] for h in ("v1", "v2")) < wave1_end  # no barrier between waves
    ran_at_once = [
        (a.host_name, b.host_name)
        for a in runs
        for b in runs
        if a.id < b.id
        and a.started_at < b.finished_at
        and b.started_at < a.finished_at
        and a.stage != b.stage
    ]
    assert ran_at_once, "no two stage runs overlapped"


def test_ctrl_c_stops_every_stage_run_under_way_and_the_next_run_resumes(world, tmp_path: Path) -> None:
    # Two waves validating at once, each in a stage run of its own (its own thread): Ctrl-C must stop
    # both, leave both hosts inside validate, and the next run repeats it.
    hosts = {"a": {"toy_slow": {"validate": 60}}, "b": {"toy_slow": {"validate": 60}}}
    inv, store, opts = world(hosts, [("a", "verify", 1), ("b", "verify", 2), ("ev", "protected", None)])

    def interrupt() -> None:
        for _ in range(600):
            with store.read() as s:
                if len(s.exec(select(StageRun).where(StageRun.status == "running")).all()) == 2:
                    break
            time.sleep(0.1)
        time.sleep(1)  # inside the playbooks' sleep
        os.kill(os.getpid(), signal.SIGINT)

    stopper = threading.Thread(target=interrupt)
    stopper.start()
    started = time.monotonic()
    report = engine.run(store, opts)
    stopper.join()
    assert time.monotonic() - started < 40, "the 60 s stage was not stopped"
    assert report.stopped and "interrupted" in report.stopped
    assert {report.hosts[h].outcome for h in "ab"} == {"interrupted"}
    assert states_of(store)["a"] == states_of(store)["b"] == ("validating", "validate")
    with store.read() as s:
        assert {r.status for r in s.exec(select(StageRun).where(StageRun.stage == "validate"))} == {
            "interrupted"
        }

    toy_inventory(
        inv.parent, {"ev": {"group": "evidence_store", "recovery_protected": True}, "a": {}, "b": {}}
    )
    report = engine.run(store, opts)
    assert not report.failed and report.stopped is None
    assert stages_run(inv, "a") == stages_run(inv, "b") == ["validate", "validate", "harden", "reconnect"]


def test_refusals_and_confirmation(world, tmp_path: Path) -> None:
    inv, store, opts = world({"a": {}, "b": {}}, [("a", "rebuild", 1), ("b", "verify", 1)])
    declined: list[engine.Pending] = []
    opts.confirm = lambda pending: declined.append(pending) or False
    with pytest.raises(RefusedError, match="not confirmed"):
        engine.run(store, opts)
    assert declined[0].rebuild == ["a"] and declined[0].verify == ["b"]
    # The verify host's validate and harden ran; the first destructive stage asked, and stopped there.
    assert stages_run(inv, "a") == [] and stages_run(inv, "b") == []
    # A plan changed after approval is refused before anything runs.
    with store.write() as s:
        member = s.exec(select(PlanMember).where(PlanMember.host_name == "b")).one()
        member.action = "rebuild"
        s.add(member)
    opts.confirm = None
    with pytest.raises(RefusedError, match="changed since"):
        engine.run(store, opts)
    empty = Store.open(str(tmp_path / "empty.db"))
    with pytest.raises(RefusedError, match="no approved plan"):
        engine.run(empty, opts)


def test_the_confirmation_comes_before_any_stage_run_of_any_wave(world) -> None:
    # Containment done earlier (nothing to contain now): the first destructive stage is a's wipe in
    # wave 2, yet b's verification in wave 1 must not start before the operator has said yes.
    inv, store, opts = world({"a": {}, "b": {}}, [("a", "rebuild", 2), ("b", "verify", 1)])
    with store.write() as s:
        a = s.exec(select(Host).where(Host.name == "a")).one()
        a.state, a.stage = "collected", "collect"
        s.add(a)
    opts.confirm = lambda pending: False
    with pytest.raises(RefusedError, match="not confirmed"):
        engine.run(store, opts)
    assert stages_run(inv, "a") == [] and stages_run(inv, "b") == []
    with store.read() as s:
        assert s.exec(select(StageRun)).all() == []


def test_resume_after_a_crash_and_the_operator_reset(world) -> None:
    inv, store, opts = world({"a": {}, "b": {}}, [("a", "rebuild", 1), ("b", "verify", 1)])
    # What a kill -9 leaves: a host inside wipe with its StageRun still "running".
    with store.write() as s:
        a = s.exec(select(Host).where(Host.name == "a")).one()
        a.state, a.stage = "wiping", "wipe"
        s.add(a)
        s.add(StageRun(plan_id=1, wave=1, host_name="a", stage="wipe", status="running"))
    report = engine.run(store, opts)
    assert not report.failed
    assert stages_run(inv, "a") == REBUILD[2:]  # resumed at wipe: isolate and collect are not repeated
    with store.read() as s:
        stale = s.exec(
            select(StageRun).where(StageRun.host_name == "a", StageRun.attempt == 1, StageRun.stage == "wipe")
        ).one()
        assert stale.status == "interrupted"
    # Back to wipe after restore: only through the audited reset.
    with pytest.raises(RefusedError), store.write() as s:
        from orchestrator.execution import states

        states.begin(s.exec(select(Host).where(Host.name == "a")).one(), "wipe", states.REBUILD)
    assert host_reset.reset_host(store, "alice", "a", "wipe", {"to": "wipe"}) == ("recovered", "collected")
    with store.read() as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.command == "host reset")).one()
        assert entry.operator == "alice" and entry.host_name == "a" and entry.details["after_restore_began"]
    with pytest.raises(RefusedError, match="not on host b's path"):
        host_reset.reset_host(store, "alice", "b", "wipe", {})


def _forks_used(report) -> set[int]:
    """The --forks of every ansible-playbook the run started, from ansible-runner's own record."""
    used = set()
    for path in Path(report.runs_dir).rglob("artifacts/run/command"):
        argv = json.loads(path.read_text())["command"]
        used.add(int(argv[argv.index("--forks") + 1]))
    return used


@pytest.mark.parametrize("given", [None, 2])
def test_a_run_uses_the_plans_forks_unless_given_its_own(world, given: int | None) -> None:
    # Four hosts of one kind: the run's workers are shared by its stage runs, each host with a worker
    # of its own, so the first validate takes every worker and the last host has one alone.
    members = [*((h, "verify", 1) for h in "abcd"), ("ev", "protected", None)]
    _, store, opts = world({h: {} for h in "abcd"}, members, params={"forks": 3}, forks=given)
    notes: list[str] = []

    class Notes:
        def __getattr__(self, name):
            return notes.append if name == "note" else lambda *a, **k: None

    opts.observer = Notes()
    report = engine.run(store, opts)
    assert not report.failed
    assert _forks_used(report) == {given or 3, 4 - (given or 3)}
    with store.read() as s:
        start = s.exec(select(AuditEntry).where(AuditEntry.command == "run start")).one()
    assert start.args["forks"] == given  # what was typed: nothing, or the operator's own
    assert start.details["forks"] == (given or 3) and start.details["plan_forks"] == 3
    drift = [n for n in notes if "--forks" in n]
    assert drift == ([] if given is None else ["warning: --forks 2, the plan was packed and estimated for 3"])


def test_runs_started_within_one_second_get_their_own_directories(tmp_path: Path) -> None:
    """A run resumed in the second its killed predecessor started must not reuse its directory."""
    from orchestrator.private import unique_dir

    first = unique_dir(tmp_path / "runs", "20261129T034118Z-plan1")
    second = unique_dir(tmp_path / "runs", "20261129T034118Z-plan1")
    assert (first.name, second.name) == ("20261129T034118Z-plan1", "20261129T034118Z-plan1-2")
    assert first.is_dir() and second.is_dir()
