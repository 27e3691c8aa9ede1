"""The preflight (`orchestrator doctor`, and before every run) on this real controller, and
ansible-playbook's own error line where a stage never finished."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from orchestrator.execution import engine, preflight, runner
from orchestrator.store import Store
from orchestrator.store.models import StageRun
from tests.conftest import ROOT, Cli
from tests.lab.execution_support import approved_plan, toy_inventory, toy_playbooks

CORPUS = Path(__file__).resolve().parents[1] / "data" / "inventories"


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with python and ansible-playbook but neither ssh nor restic."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python3", "ansible-playbook"):
        found = shutil.which(tool, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_doctor_passes_on_a_ready_controller(cli: Cli, tmp_path: Path) -> None:
    result = cli("doctor", "--runs-dir", str(tmp_path / "runs"), "--json")
    assert result.exit_code == 0, result.output + result.stderr
    data = json.loads(result.stdout)
    items = {c["item"] for c in data["checks"]}
    assert data["ok"] is True
    # every collection the shipped playbooks name, found by reading them
    assert {
        "collection community.general",
        "collection ansible.posix",
        "collection ansible.windows",
        "collection community.windows",
        "collection community.vmware",
    } <= items
    assert {"ansible-playbook", "playbooks", "ssh", "restic", "database", "runs folder"} <= items


def test_doctor_names_each_missing_thing_on_its_own_line(cli: Cli, tmp_path: Path, bare_path: Path) -> None:
    result = cli("doctor", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: ssh: not found on PATH (Linux hosts are reached over SSH)",
        "error: restic: not found on PATH (restores read restic snapshots on the controller)",
    ]


def test_winrm_hosts_need_credentials(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = str(CORPUS / "windows" / "hosts.yml")
    monkeypatch.delenv("CORPUS_WINRM_PASSWORD", raising=False)
    result = cli("doctor", "-i", inventory, "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: WinRM credentials for {h}: ansible_password is unset or renders empty (a lookup of an unset variable?)"
        for h in ("winsrv1", "winsrv2")
    ]
    monkeypatch.setenv("CORPUS_WINRM_PASSWORD", "from-the-vault")
    result = cli("doctor", "-i", inventory, "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.stderr
    assert "from-the-vault" not in result.output + result.stderr


def test_collections_and_task_files_follow_the_hosts(tmp_path: Path) -> None:
    playbooks = tmp_path / "playbooks"
    shutil.copytree(ROOT / "playbooks", playbooks)
    (playbooks / "tasks" / "reimage" / "ipmi.yml").write_text(
        "- name: Power cycle\n  corpus.absent.power_cycle:\n    state: restart\n"
    )
    from orchestrator import inventory

    hosts = list(inventory.load([str(CORPUS / "group_host_vars" / "hosts.ini")]).hosts.values())
    for host in hosts:
        host.reimage_method = "ipmi" if host.name == "www1" else "vsphere"
    hosts[1].restore_method = "restic"
    findings = preflight.check(playbooks, {"reimage": hosts, "restore": hosts}, None, None)
    by_item = {f.item: f for f in findings}
    assert by_item["collection community.vmware"].ok
    assert not by_item["collection corpus.absent"].ok
    assert "ansible-galaxy collection install corpus.absent" in by_item["collection corpus.absent"].detail
    assert by_item["restic"].ok
    reimage_files = preflight.stage_files(playbooks, "reimage", hosts)
    assert playbooks / "tasks" / "reimage" / "vsphere.yml" in reimage_files
    assert playbooks / "tasks" / "reimage" / "pxe.yml" not in reimage_files  # nobody's method here
    (playbooks / "tasks" / "restore" / "restic.yml").unlink()
    missing = [f for f in preflight.check(playbooks, {"restore": hosts}, None, None) if not f.ok]
    assert [str(f) for f in missing] == [
        f"playbook restic.yml: {playbooks / 'tasks' / 'restore' / 'restic.yml'} missing"
    ]


def test_run_refuses_before_anything_starts(cli: Cli, tmp_path: Path, bare_path: Path) -> None:
    inv = toy_inventory(
        tmp_path / "inv", {"ev": {"group": "evidence_store", "recovery_protected": True}, "a": {}}
    )
    store = Store.open(str(cli.db))
    approved_plan(store, inv, [("a", "rebuild", 1)])
    store.close()
    playbooks = toy_playbooks(tmp_path / "playbooks")
    options = engine.RunOptions(
        inventory=[str(inv)], operator="tester", runs_dir=tmp_path / "runs", playbooks=playbooks
    )
    with pytest.raises(preflight.PreflightError) as refused:
        engine.run(Store.open(str(cli.db)), options)
    assert [f.item for f in refused.value.missing] == ["ssh"]
    with Store.open(str(cli.db)).read() as session:
        assert not list(session.exec(select(StageRun)))
    assert not (tmp_path / "runs").exists()
    result = cli("run", "-i", str(inv), "--all", "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: ssh: not found on PATH (Linux hosts are reached over SSH)"
    )


def test_a_stage_that_never_ran_shows_ansibles_own_error(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"h1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    playbooks = toy_playbooks(tmp_path / "playbooks")
    spec = runner.StageSpec(
        stage="validate",
        playbook=playbooks / "no-such-stage.yml",
        inventory=[str(inventory)],
        hosts=["h1"],
        extravars={},
        private_dir=tmp_path / "private",
    )
    outcome = runner.run_stage(spec)
    assert outcome.hosts["h1"].message == (
        f"did not finish the stage: the playbook: {playbooks / 'no-such-stage.yml'} could not be found"
    )


def test_error_lines_are_single_bounded_plain_text() -> None:
    raw = "\x1b[0;31m[ERROR]: a \x1b]0;title\x07host said\x1b[0m " + "x" * 2000 + "\nnext line"
    line = runner.error_line(raw)
    assert line is not None and "\x1b" not in line and "\x07" not in line and "\n" not in line
    assert line.startswith("a ") and len(line) <= runner.MESSAGE_LIMIT
    assert runner.error_line("PLAY [all] ****\nok: [h1]") is None
    assert runner.error_line("ERROR! Syntax error in x.yml") == "Syntax error in x.yml"


def test_a_host_name_is_resolved_only_when_connecting_and_within_the_deadline() -> None:
    from orchestrator.triage.transports import Deadline, TransportError, resolve

    assert resolve("localhost", 22, Deadline(5))[4][0] in ("127.0.0.1", "::1")
    with pytest.raises(TransportError) as late:
        resolve("localhost", 22, Deadline(0))
    assert late.value.kind == "timeout"
