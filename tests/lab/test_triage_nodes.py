"""Triage through execution nodes on the local lab: each site's hosts checked by its node's own
`orchestrator triage agent` over SSH, results streamed back into the controller's database, verdicts
and evidence equal to a local triage of the same lab, and a node killed mid-triage leaving its
unfinished hosts as `error: node lost`, checked again by the next triage.

Real sshd hosts, real nodes running the product's code; this two-node lab is this module's own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import needs_lab
from tests.lab.node_support import HOSTS, NODES, SEED, orchestrator, site_of

pytestmark = [pytest.mark.lab, needs_lab]
TIMEOUT = "20"
AGE = re.compile(r"age_days=[0-9.]+")  # per host: a host whose sshd is stopped costs this, and no more


def triage(db: Path, lab: Path, *args: str) -> tuple[int, dict]:
    proc = orchestrator(db, "triage", "-i", str(lab / "inventory"), "--timeout", TIMEOUT, *args, "--json")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, 1), err
    return proc.returncode, json.loads(out)


def comparable(result: dict) -> dict:
    """What must not depend on where a host was checked: all but its duration, its `info` matches
    (see `info`) and, in evidence, the age of items (measured from each run's start, to 0.001 day,
    and the runs compared are a minute apart)."""
    matches = [
        {**m, "evidence": AGE.sub("age_days=*", m["evidence"])}
        for m in result["matches"]
        if m["severity"] != "info"
    ]
    return {**{k: v for k, v in result.items() if k != "duration_s"}, "matches": matches}


def info(result: dict) -> dict[str, str]:
    """A host's `info` matches (the timeline check). Its probe reads lines under a CPU time limit: on a
    loaded machine one run may complete it and another not (then the engine skips the check), so these
    are compared where both runs have them."""
    return {
        m["check_id"]: AGE.sub("age_days=*", m["evidence"])
        for m in result["matches"]
        if m["severity"] == "info"
    }


def findings(result: dict) -> tuple:
    ranked = sorted(m["check_id"] for m in result["matches"] if m["severity"] != "info")
    return result["verdict"], result["reason"], result["compromise_time"], ranked


def audit_nodes(db: Path, run_id: int) -> dict[str, str]:
    con = sqlite3.connect(db)
    for (details,) in con.execute("SELECT details FROM audit_log WHERE command = 'triage'"):
        data = json.loads(details)
        if data["run_id"] == run_id:
            return data.get("nodes") or {}
    raise AssertionError(f"no audit row for triage run {run_id}")


@pytest.fixture(scope="module")
def local_run(site_lab: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    db = tmp_path_factory.mktemp("local") / "local.db"
    _, data = triage(db, site_lab, "--local")
    assert audit_nodes(db, data["run_id"]) == {}
    return {r["host"]: r for r in data["results"]}


def test_node_triage_gives_the_verdicts_and_evidence_of_a_local_triage(
    site_lab: Path, local_run: dict[str, dict], tmp_path: Path
) -> None:
    db = tmp_path / "nodes.db"
    _, data = triage(db, site_lab)
    sites = site_of(site_lab)
    assert set(sites.values()) == {"exec-01", "exec-02"}
    # Every site host went through its node (the nodes themselves and the rest were checked here).
    assert audit_nodes(db, data["run_id"]) == sites
    remote = {r["host"]: r for r in data["results"]}
    assert set(remote) == set(local_run)
    verdicts = {r["verdict"] for h, r in remote.items() if h in sites}
    assert {"infected", "clean"} <= verdicts, verdicts  # the comparison covers findings, not only clean
    assert any(r["matches"] for h, r in remote.items() if h in sites)
    different = {h: (comparable(local_run[h]), comparable(r)) for h, r in remote.items()}
    differ = {h: d for h, d in different.items() if d[0] != d[1]}
    assert not differ, json.dumps(differ, indent=1)
    for host, result in remote.items():
        both = info(result).keys() & info(local_run[host]).keys()
        assert {c: info(result)[c] for c in both} == {c: info(local_run[host])[c] for c in both}, host
    # Stored as for a local run: `triage show` reads a node's host like any other.
    host = next(h for h in sites if remote[h]["verdict"] == "infected")
    proc = orchestrator(db, "triage", "show", host, "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    shown = json.loads(out)["latest"]
    assert shown["verdict"] == "infected" and [m["evidence"] for m in shown["matches"]] == [
        m["evidence"] for m in remote[host]["matches"]
    ]


def test_a_node_lost_mid_triage_leaves_its_unfinished_hosts_as_node_lost_retried_next_time(
    site_lab: Path, local_run: dict[str, dict], tmp_path: Path
) -> None:
    from orchestrator_lab import LabConfig, up

    db = tmp_path / "lost.db"
    sites = site_of(site_lab)
    node = "exec-01"
    mine = sorted(h for h, n in sites.items() if n == node)
    # The node's hosts that answer at once (the lab also has a hung sshd: it takes the whole timeout).
    checked = [h for h in mine if local_run[h]["duration_s"] < 5]
    assert len(checked) >= 2, local_run
    # One of the node's hosts hangs (its sshd stopped: the node waits for its banner) so that the node
    # is killed with that host unfinished and the others done.
    hung = next((h for h in checked if local_run[h]["verdict"] == "infected"), checked[0])
    pids = site_lab / "pids"
    host_pid = json.loads((pids / f"{hung}.json").read_text())["pid"]
    os.kill(host_pid, signal.SIGSTOP)
    try:
        proc = orchestrator(db, "triage", "-i", str(site_lab / "inventory"), "--timeout", TIMEOUT, "--json")
        try:
            finished = _wait_for_results(db, set(checked) - {hung}, proc)
            assert hung not in finished  # stored as they came: the others are in the database already
            os.kill(json.loads((pids / f"{node}.json").read_text())["pid"], signal.SIGKILL)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        os.kill(host_pid, signal.SIGCONT)
    assert proc.returncode == 1, err
    results = {r["host"]: r for r in json.loads(out)["results"]}
    lost = results[hung]
    assert lost["verdict"] == "error" and lost["reason"].startswith(f"node lost: execution node {node} lost")
    assert lost["matches"] == []
    # The node's finished hosts keep their verdicts, the others are lost too (the lab's hung host);
    # the other node and the local hosts are untouched.
    for host in set(results) - {hung, node}:
        if host in mine and host not in finished and results[host]["verdict"] == "error":
            assert results[host]["reason"].startswith("node lost"), host
        else:
            assert comparable(results[host]) == comparable(local_run[host]), json.dumps(
                [comparable(results[host]), comparable(local_run[host])], indent=1
            )
    proc = orchestrator(db, "triage", "show", hung, "--json")
    shown, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(shown)["latest"]["reason"].startswith("node lost")

    # The node comes back (the lab restarts what died): the next triage checks the lost host again.
    manifest = json.loads((site_lab / "manifest.json").read_text())
    up(LabConfig(dir=site_lab, hosts=HOSTS, nodes=NODES, seed=SEED, net=manifest["net"]))
    _, data = triage(db, site_lab)
    again = {r["host"]: r for r in data["results"]}
    # (The lab's restart rewrote files the `info` timeline check lists: findings are compared.)
    assert findings(again[hung]) == findings(local_run[hung])
    proc = orchestrator(db, "triage", "show", hung, "--history", "1", "--json")
    shown, err = proc.communicate(timeout=120)
    history = json.loads(shown)
    assert history["latest"]["verdict"] == local_run[hung]["verdict"]
    assert history["history"][0]["reason"].startswith("node lost")


def _wait_for_results(db: Path, hosts: set[str], proc: subprocess.Popen) -> set[str]:
    """The hosts of the newest run stored so far, once `hosts` are all among them."""
    deadline = time.monotonic() + 120
    stored: set[str] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            con = sqlite3.connect(db)
            try:
                stored = {
                    name
                    for (name,) in con.execute(
                        "SELECT host_name FROM triage_result WHERE run_id = (SELECT MAX(id) FROM triage_run)"
                    )
                }
            except sqlite3.OperationalError:  # the schema is still being created
                stored = set()
            finally:
                con.close()
            if hosts <= stored:
                return stored
        time.sleep(0.2)
    pytest.fail(f"the node's other hosts were not stored in time (stored: {sorted(stored)})")


def test_a_node_that_answers_for_a_host_it_was_not_given_is_refused(
    site_lab: Path, local_run: dict[str, dict], tmp_path: Path
) -> None:
    """A node is the attacker's as soon as it is compromised: its lines are checked, not believed."""
    import shutil

    # The node's "agent" (a script where the node sees it: the lab directory is shared with nodes)
    # reads the request and answers for a host of the other site, with a terminal escape on stderr.
    fake = site_lab / "hostile-agent.sh"
    line = {
        "host": "exec-01",
        "os": "linux",
        "verdict": "clean",
        "reason": None,
        "duration_s": 0.1,
        "compromise_time": None,
        "matches": [],
        "new_key": None,
    }
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{json.dumps(line)}'\nprintf '\\033]0;owned\\a' >&2\n")
    fake.chmod(0o755)
    inv = tmp_path / "inventory"
    shutil.copytree(site_lab / "inventory", inv)
    node_vars = inv / "group_vars" / "execution_node.yml"
    values = yaml.safe_load(node_vars.read_text())
    node_vars.write_text(yaml.safe_dump({**values, "recovery_node_orchestrator": str(fake)}))
    db = tmp_path / "hostile.db"
    proc = orchestrator(db, "triage", "-i", str(inv), "--timeout", TIMEOUT, "--json")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    results = {r["host"]: r for r in json.loads(out)["results"]}
    sites = site_of(site_lab)
    for host, node in sites.items():
        assert results[host]["verdict"] == "error", host
        assert results[host]["reason"].startswith(f"execution node {node} refused: it sent a result for host")
    # The nodes themselves were checked here, as before: nothing a node said reached them.
    assert comparable(results["exec-01"]) == comparable(local_run["exec-01"])
