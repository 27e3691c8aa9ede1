"""Ansible's Windows modules against the lab's stand-in: real ansible-playbook, real winrm connection,
the exec wrapper's manifest as Ansible builds it; results checked against the hosts' state files.

One stand-in process serves three hosts on 127.62.0.x for the module: a LockBit 3.0 host (read-only
tests), a LockBit 2.0 host and a scratch host that the registry, firewall and restore tests change. The
stage playbooks' own Windows task files are included where they run unchanged on the stand-in.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ansible.executor.powershell.module_manifest import (
    _bootstrap_powershell_script,
    _create_powershell_wrapper,
    _get_powershell_script,
)
from ansible.plugins.shell.powershell import ShellModule

from orchestrator_lab.windows import commands
from orchestrator_lab.windows import scenarios as windows_scenarios
from orchestrator_lab.windows.hoststate import HostState
from orchestrator_lab.windows.launcher import Endpoint, start, stop, write_credentials
from tests.conftest import ROOT

USER, PASSWORD = "Administrator", "Lab-Modules-Passw0rd!"
INFECTION = datetime(2025, 3, 14, 2, 30, tzinfo=UTC)
HOSTS = {
    "winlb3": ("127.62.0.11", "lockbit3"),
    "winlb2": ("127.62.0.12", "lockbit2"),
    "winscratch": ("127.62.0.13", "lockbit3"),
}
WINLOGON = "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon"
ROOTS = ["C:\\Users", "C:\\ProgramData"]
NOTE_PATTERNS = [
    "*.README.txt",
    "Restore-My-Files.txt",
    "LockBit-note.hta",
    "*README*LockBit*",
    "*.ico",
    "*.bmp",
    "*.hta",
]


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.states: dict[str, Path] = {}
        self.details: dict[str, dict] = {}
        rng = random.Random(62)
        for name, (_address, kind) in HOSTS.items():
            state, _verdict, details = windows_scenarios.make_state(
                kind, rng, INFECTION, hostname=name.upper()
            )
            path = root / name / "state.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(state))
            self.states[name], self.details[name] = path, details
        credentials = root / "users.json"
        write_credentials(credentials, {USER: PASSWORD})
        self.pid = start(
            [Endpoint(address, 5985, self.states[name]) for name, (address, _k) in HOSTS.items()],
            credentials,
            pid_file=root / "winrm.pid",
            log_file=root / "winrm.log",
        )
        self.inventory = root / "hosts.yml"
        self.inventory.write_text(
            "all:\n  vars:\n    ansible_connection: winrm\n    ansible_port: 5985\n"
            "    ansible_winrm_scheme: http\n    ansible_winrm_transport: ntlm\n"
            f"    ansible_user: {USER}\n"
            "    ansible_password: \"{{ lookup('env', 'LAB_WINRM_PASSWORD') }}\"\n  hosts:\n"
            + "".join(
                f"    {name}:\n      ansible_host: {address}\n" for name, (address, _k) in HOSTS.items()
            )
        )

    def state(self, name: str) -> dict:
        return json.loads(self.states[name].read_text())

    def playbook(
        self, tmp_path: Path, tasks: str, *args: str, hosts: str = "all"
    ) -> tuple[int, list[dict], str]:
        """Run a playbook; returns (exit code, the JSON callback's task results for `hosts`, output)."""
        playbook = tmp_path / "play.yml"
        playbook.write_text(f"- hosts: {hosts}\n  gather_facts: false\n  tasks:\n{tasks}")
        env = {
            **os.environ,
            "LAB_WINRM_PASSWORD": PASSWORD,
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
            "ANSIBLE_NOCOLOR": "1",
        }
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "-i",
                str(self.inventory),
                str(playbook),
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=tmp_path,
        )
        assert PASSWORD not in run.stdout + run.stderr
        report = json.loads(run.stdout)
        tasks_out = [
            {"name": t["task"]["name"], **{h: r for h, r in t["hosts"].items()}}
            for play in report["plays"]
            for t in play["tasks"]
        ]
        return run.returncode, tasks_out, run.stdout + run.stderr


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = Lab(tmp_path_factory.mktemp("winrm-modules"))
    yield lab
    stop(lab.pid)


def task(results: list[dict], name: str) -> dict:
    return next(t for t in results if t["name"] == name)


def expected_files(state: dict, roots: list[str], patterns: list[str], recurse: bool) -> list[str]:
    """What win_find must return, computed from the state file independently of the stand-in."""
    found = []
    for path in state["files"]:
        parent, name = path.rsplit("\\", 1)
        under = any(
            (path.lower().startswith(r.lower() + "\\") if recurse else parent.lower() == r.lower())
            for r in roots
        )
        if under and any(fnmatch.fnmatch(name.lower(), p.lower()) for p in patterns):
            found.append(path)
    return sorted(found, key=str.lower)


# -- through ansible-playbook ------------------------------------------------------------------------
EVIDENCE_TASKS = f"""
    - name: notes
      ansible.windows.win_find:
        paths: {json.dumps(ROOTS)}
        patterns: {json.dumps(NOTE_PATTERNS)}
        recurse: true
        hidden: true
      register: notes
    - name: top level only
      ansible.windows.win_find:
        paths: {json.dumps(ROOTS)}
        patterns: {json.dumps(NOTE_PATTERNS)}
    - name: regex, directories
      ansible.windows.win_find:
        paths: C:\\Users
        patterns: ['^(adm|pub)']
        use_regex: true
        file_type: directory
        recurse: true
        get_checksum: false
    - name: missing root warns
      ansible.windows.win_find:
        paths: ['C:\\Nowhere']
        patterns: ['*']
    - name: stat
      ansible.windows.win_stat:
        path: "{{{{ item }}}}"
        checksum_algorithm: sha256
      loop: "{{{{ notes.files | map(attribute='path') | list + ['C:\\\\Nope.txt'] }}}}"
      register: stats
    - name: stat a directory
      ansible.windows.win_stat:
        path: '%ProgramData%'
    - name: fetch
      ansible.builtin.fetch:
        src: "{{{{ item.stat.path }}}}"
        dest: "{{{{ playbook_dir }}}}/fetched/{{{{ item.stat.checksum }}}}"
        flat: true
      loop: "{{{{ stats.results | selectattr('stat.exists') | list }}}}"
      loop_control:
        label: "{{{{ item.stat.path }}}}"
    - name: services
      ansible.windows.win_service_info:
        name: "{{{{ item }}}}"
      loop: [VSS, WinRM, 'SQL*', Nope]
      register: services
    - name: ping
      ansible.windows.win_ping:
    - name: the WinRM port answers
      ansible.windows.win_wait_for:
        port: 5985
        timeout: 5
    - name: a closed port times out
      ansible.windows.win_wait_for:
        port: 1
        timeout: 1
        sleep: 1
      ignore_errors: true
    - name: a file is there
      ansible.windows.win_wait_for:
        path: C:\\Windows\\System32\\drivers\\etc\\hosts
        regex: localhost
        timeout: 2
"""


def test_evidence_modules_answer_from_the_state(lab: Lab, tmp_path: Path) -> None:
    code, results, output = lab.playbook(tmp_path, EVIDENCE_TASKS, hosts="winlb3")
    assert code == 0, output
    state = lab.state("winlb3")
    notes = task(results, "notes")["winlb3"]
    assert [f["path"] for f in notes["files"]] == expected_files(state, ROOTS, NOTE_PATTERNS, recurse=True)
    assert {f["path"] for f in notes["files"]} >= {
        n for n in lab.details["winlb3"]["notes"] if n.startswith(tuple(r + "\\" for r in ROOTS))
    }
    assert notes["matched"] == len(notes["files"]) and notes["examined"] > notes["matched"]
    assert all(f["filename"] == f["path"].rsplit("\\", 1)[1] and f["isreg"] for f in notes["files"])
    top = task(results, "top level only")["winlb3"]
    assert (
        [f["path"] for f in top["files"]] == expected_files(state, ROOTS, NOTE_PATTERNS, recurse=False) != []
    )
    dirs = task(results, "regex, directories")["winlb3"]["files"]
    assert [d["path"] for d in dirs] == ["C:\\Users\\Administrator", "C:\\Users\\Public"]
    assert all(d["isdir"] and d["checksum"] is None for d in dirs)
    assert "C:\\Nowhere" in task(results, "missing root warns")["winlb3"]["warnings"][0]

    stats = {r["item"]: r["stat"] for r in task(results, "stat")["winlb3"]["results"]}
    assert stats["C:\\Nope.txt"] == {"exists": False}
    for path, stat in stats.items():
        if not stat["exists"]:
            continue
        entry = state["files"][path]
        assert (stat["path"], stat["size"]) == (path, entry["size"])
        fetched = (tmp_path / "fetched" / stat["checksum"]).read_bytes()  # byte-identical copy, any size
        assert hashlib.sha256(fetched).hexdigest() == stat["checksum"] and len(fetched) == entry["size"]
        if "content" in entry:
            assert fetched == entry["content"].encode()
    for note, digest in lab.details["winlb3"]["planted_files"].items():
        assert stats.get(note, {"checksum": digest})["checksum"] == digest  # the hashes in the lab's manifest
    assert max(s.get("size", 0) for s in stats.values()) > 2**19  # at least one fetch took several chunks
    directory = task(results, "stat a directory")["winlb3"]["stat"]
    assert directory["isdir"] and directory["path"] == "C:\\ProgramData" and directory["size"] > 0

    by_name = {r["item"]: r for r in task(results, "services")["winlb3"]["results"]}
    assert [(s["name"], s["state"], s["start_mode"]) for s in by_name["VSS"]["services"]] == [
        ("VSS", "stopped", "disabled")
    ]
    assert by_name["WinRM"]["services"][0]["state"] == "started"
    assert [s["name"] for s in by_name["SQL*"]["services"]] == ["SQLWriter"]
    assert by_name["Nope"]["exists"] is False and by_name["Nope"]["services"] == []
    assert task(results, "ping")["winlb3"]["ping"] == "pong"
    assert task(results, "the WinRM port answers")["winlb3"]["wait_attempts"] == 1
    closed = task(results, "a closed port times out")["winlb3"]
    assert closed["failed"] and closed["msg"] == "timeout while waiting for 127.0.0.1:1 to start listening"
    assert lab.state("winlb3") == state  # reading changed nothing


HARDEN = f"""
    - name: harden
      ansible.builtin.include_tasks: {ROOT}/playbooks/tasks/harden/windows.yml
    - name: create a key and a dword
      ansible.windows.win_regedit:
        path: HKCU:\\Software\\Lab\\Sub
        name: Count
        data: '0x10'
        type: dword
      register: created
    - name: the key's default value
      ansible.windows.win_regedit:
        path: HKCU:\\Software\\Lab
        data: lab
"""


def test_win_regedit_check_mode_then_change_then_idempotent(lab: Lab, tmp_path: Path) -> None:
    before = lab.states["winscratch"].read_bytes()
    assert lab.state("winscratch")["registry"][WINLOGON]["AutoAdminLogon"] == "1"

    code, results, output = lab.playbook(tmp_path, HARDEN, "--check", hosts="winscratch")
    assert code == 0, output
    assert lab.states["winscratch"].read_bytes() == before  # check mode: reported, not written
    assert task(results, "create a key and a dword")["winscratch"]["changed"]

    code, results, output = lab.playbook(tmp_path, HARDEN, hosts="winscratch")
    assert code == 0, output
    registry = lab.state("winscratch")["registry"]
    assert registry[WINLOGON]["AutoAdminLogon"] == "0"
    assert "DefaultPassword" not in registry[WINLOGON] and "DefaultUserName" in registry[WINLOGON]
    for profile in ("DomainProfile", "StandardProfile"):
        assert registry[f"HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall\\{profile}"] == {}
    assert registry["HKCU\\Software\\Lab\\Sub"] == {"Count": 16}
    assert registry["HKCU\\Software\\Lab"] == {"(default)": "lab"}
    created = task(results, "create a key and a dword")["winscratch"]
    assert (created["changed"], created["data_changed"], created["data_type_changed"]) == (True, False, False)

    after = lab.states["winscratch"].read_bytes()
    code, results, output = lab.playbook(tmp_path, HARDEN, hosts="winscratch")
    assert code == 0, output
    assert '"changed": true' not in json.dumps([t.get("winscratch") for t in results])
    assert lab.states["winscratch"].read_bytes() == after


def test_validate_playbook_and_unemulated_modules_fail_clearly(lab: Lab, tmp_path: Path) -> None:
    tasks = f"""
    - name: validate
      ansible.builtin.include_tasks: {ROOT}/playbooks/tasks/validate/windows.yml
      vars:
        recovery_validate_services: [WinRM, EventLog]
        recovery_validate_ports: [5985]
    - name: unknown module
      ansible.windows.win_shell: Get-Process
      ignore_errors: true
    - name: unsupported option
      ansible.windows.win_stat:
        path: C:\\
        bogus: 1
      ignore_errors: true
    - name: option not emulated
      ansible.windows.win_find:
        paths: C:\\Users
        age: 1d
      ignore_errors: true
    - name: bad choice
      ansible.windows.win_regedit:
        path: HKLM:\\SOFTWARE\\Lab
        type: qword
        name: x
        data: 1
      ignore_errors: true
    - name: become is not emulated
      ansible.windows.win_ping:
      become: true
      become_method: runas
      become_user: SYSTEM
      ignore_errors: true
"""
    code, results, output = lab.playbook(tmp_path, tasks, hosts="winlb2")
    assert code == 0, output
    failures = {t["name"]: t["winlb2"]["msg"] for t in results if t["winlb2"].get("failed")}
    assert set(failures) == {
        "unknown module",
        "unsupported option",
        "option not emulated",
        "bad choice",
        "become is not emulated",
    }
    assert failures["unknown module"] == (
        "module ansible.windows.win_shell is not emulated by the lab's Windows stand-in: rehearse on the Vagrant lab"
    )
    assert failures["unsupported option"].startswith("Unsupported parameters for (win_stat) module: bogus.")
    assert failures["option not emulated"].startswith(
        "option age of module ansible.windows.win_find is not emulated"
    )
    assert "type qword of module ansible.windows.win_regedit is not emulated" in failures["bad choice"]
    assert "running under become_wrapper" in failures["become is not emulated"]


FIREWALL_AND_RESTORE = f"""
    - name: isolate
      ansible.builtin.include_tasks: {ROOT}/playbooks/tasks/isolate/windows.yml
    - name: restore
      ansible.builtin.include_tasks: {ROOT}/playbooks/tasks/restore/restic_windows.yml
      when: not ansible_check_mode  # as restic.yml includes it
    - name: isolated
      ansible.windows.win_stat:
        path: C:\\Restored
      register: isolated
    - name: reconnect
      ansible.builtin.include_tasks: {ROOT}/playbooks/tasks/reconnect/windows.yml
"""


def test_firewall_isolation_and_windows_restore_tasks(lab: Lab, tmp_path: Path) -> None:
    """The non-lab Windows paths of the stage playbooks: Windows Firewall isolation, the restic restore's
    zip/win_copy/win_unzip push, and the reconnect, on the scratch host's state."""
    restored = tmp_path / "restore" / "srv"
    (restored / "app" / "conf").mkdir(parents=True)
    files = {"app/conf/settings.ini": b"[db]\r\nhost=ehrdb\r\n", "app/blob.bin": bytes(range(256)) * 2000}
    for name, data in files.items():
        (restored / name).write_bytes(data)
    extra = [
        "-e", "recovery_isolation_method=firewall",
        "-e", '{"recovery_management_cidrs": ["127.62.0.0/16"]}',
        "-e", f"recovery_restore_dir={tmp_path / 'restore'}",
        "-e", "recovery_restic_source_root=/srv",
        "-e", f"recovery_restore_archive={tmp_path / 'restore.tar'}",
        "-e", "recovery_windows_restore_target=C:\\Restored",
    ]  # fmt: skip
    before = lab.states["winscratch"].read_bytes()
    code, results, output = lab.playbook(
        tmp_path, FIREWALL_AND_RESTORE, "--check", *extra, hosts="winscratch"
    )
    assert code == 0, output
    assert lab.states["winscratch"].read_bytes() == before

    code, results, output = lab.playbook(tmp_path, FIREWALL_AND_RESTORE, *extra, hosts="winscratch")
    assert code == 0, output
    state = lab.state("winscratch")
    for name, data in files.items():
        entry = state["files"]["C:\\Restored\\" + name.replace("/", "\\")]
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert "C:\\Windows\\Temp\\recovery-restore.zip" not in state["files"]  # delete_archive
    assert not [
        p for p in [*state["files"], *state["dirs"]] if "ansible-tmp-" in p
    ]  # the action's tmp dir went
    assert task(results, "isolated")["winscratch"]["stat"]["isdir"]
    firewall = state["firewall"]
    assert firewall["rules"] == {}  # the reconnect removed the management rule
    assert firewall["profiles"]["Public"] == {"enabled": True, "inbound": "Block", "outbound": "Allow"}
    rule_events = [
        r["winscratch"]["msg"]
        for r in results
        if "firewall rule" in str(r["winscratch"].get("msg", "")).lower()
    ]
    assert rule_events == [
        "Firewall rule 'Recovery management' created.",
        "Firewall rule(s) 'Recovery management' removed.",
    ]


# -- the exec wrapper's input, in-process (no network) -------------------------------------------------
@pytest.fixture
def session(tmp_path: Path) -> commands.Session:
    state, _verdict, _details = windows_scenarios.make_state(
        "lockbit2", random.Random(7), INFECTION, hostname="LB2"
    )
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    return commands.Session(
        HostState(path), USER, f"C:\\Users\\{USER}", commands.default_env("LB2", USER), "127.62.0.99"
    )


BOOTSTRAP = " ".join(
    ShellModule()._encode_script(
        _get_powershell_script("bootstrap_wrapper.ps1").decode(),
        as_list=True,
        strict_mode=False,
        preserve_rc=False,
    )
)


def run_module(session: commands.Session, name: str, args: dict) -> tuple[dict, int]:
    """Ansible's own manifest for module `name` (FQCN), sent as its winrm connection sends it."""
    namespace, collection, short = name.split(".")
    import importlib.resources

    package = f"ansible_collections.{namespace}.{collection}.plugins.modules"
    module_path = importlib.resources.files(package) / f"{short}.ps1"
    payload = _create_powershell_wrapper(
        name=f"{package}.{short}",
        module_data=module_path.read_bytes(),
        module_path=str(module_path),
        module_args=args,
        environment={},
        async_timeout=0,
        become_plugin=None,
        substyle="powershell",
        task_vars={},
        profile="legacy",
    )
    assert commands.needs_stdin(BOOTSTRAP)  # the command waits for its manifest, as powershell.exe would
    outcome = commands.run(BOOTSTRAP, session, payload)
    return json.loads(outcome.stdout), outcome.exit_code


def test_manifest_decoding_and_argument_checks(session: commands.Session) -> None:
    result, code = run_module(
        session,
        "ansible.windows.win_stat",
        {"dest": "%USERPROFILE%\\Desktop\\LockBit-note.hta", "get_checksum": "no"},
    )
    assert code == 0 and result["stat"]["path"] == "C:\\Users\\Administrator\\Desktop\\LockBit-note.hta"
    assert (
        "checksum" not in result["stat"]
        and result["invocation"]["module_args"]["checksum_algorithm"] == "sha1"
    )
    result, code = run_module(session, "ansible.windows.win_stat", {})
    assert code == 1 and result["failed"] and "missing required arguments: path" in result["msg"]
    result, code = run_module(
        session, "ansible.windows.win_stat", {"path": "C:\\", "checksum_algorithm": "md4"}
    )
    assert code == 1 and "value of checksum_algorithm must be one of" in result["msg"]
    result, code = run_module(
        session, "ansible.windows.win_wait_for", {"path": "C:\\Windows", "timeout": 1, "unknown": 1}
    )
    assert code == 0 and result["wait_attempts"] == 1  # a legacy module: unknown options are ignored
    result, code = run_module(session, "ansible.windows.win_service", {"name": "VSS", "state": "started"})
    assert code == 1 and "module ansible.windows.win_service is not emulated" in result["msg"]


def test_an_emulation_error_fails_the_task_not_the_server(session: commands.Session) -> None:
    state = json.loads(session.state.path.read_text())
    state["files"]["C:\\broken.bin"] = {"size": 10, "fill": "not hex", "mtime": "2025-01-01T00:00:00Z"}
    session.state.path.write_text(json.dumps(state))
    result, code = run_module(session, "ansible.windows.win_stat", {"path": "C:\\broken.bin"})
    assert code == 1 and result["msg"].startswith("Unhandled exception while executing module")
    result, code = run_module(
        session, "ansible.windows.win_stat", {"path": "C:\\broken.bin", "get_checksum": False}
    )
    assert code == 0 and result["stat"]["size"] == 10


def test_win_find_depth_and_case(session: commands.Session) -> None:
    def found(**args) -> list[str]:
        result, code = run_module(session, "ansible.windows.win_find", {"paths": ["C:\\Users"], **args})
        assert code == 0, result
        return [f["path"] for f in result["files"]]

    assert found(patterns=["*.LOCKBIT"], recurse=True, depth=1) == []
    deep = found(patterns=["*.LOCKBIT"], recurse=True)
    assert deep and deep == found(patterns=["*.lockbit"], recurse=True, depth=3)
    assert found(patterns=["\\.LOCKBIT$"], use_regex=True, recurse=True, case_sensitive=True) == []
    assert found(patterns=["\\.LOCKBIT$"], use_regex=True, recurse=True) == deep


def test_win_regedit_refuses_invalid_paths_and_dword_overflow(session: commands.Session) -> None:
    before = session.state.path.read_bytes()
    result, code = run_module(
        session, "ansible.windows.win_regedit", {"path": "HKLM\\SOFTWARE\\X", "name": "a", "data": "b"}
    )
    assert code == 1 and "is not a valid powershell path" in result["msg"]
    result, code = run_module(
        session,
        "ansible.windows.win_regedit",
        {"path": "HKLM:\\SOFTWARE\\X", "name": "a", "data": 2**32, "type": "dword"},
    )
    assert code == 1 and result["msg"] == "data cannot be larger than 0xffffffff when type is dword"
    assert session.state.path.read_bytes() == before


def test_fetch_and_put_scripts(session: commands.Session) -> None:
    def script(name: str, params: dict, data: bytes | None = None) -> commands.Outcome:
        wrapper, stdin = _bootstrap_powershell_script(name, params, has_input=data is not None)
        line = " ".join(
            ShellModule()._encode_script(wrapper, as_list=True, strict_mode=False, preserve_rc=False)
        )
        return commands.run(line, session, stdin + (data or b""))

    payload = bytes(range(256)) * 5000  # not UTF-8: kept as base64 in the state
    chunks = b"".join(
        base64.b64encode(payload[i : i + 250000]) + b"\r\n" for i in range(0, len(payload), 250000)
    )
    put = script("winrm_put_file.ps1", {"Path": "C:\\Windows\\Temp\\blob.bin"}, chunks)
    assert (put.exit_code, json.loads(put.stdout)) == (0, {"sha1": hashlib.sha1(payload).hexdigest()})
    offset, copy = 0, b""
    while True:
        out = script(
            "winrm_fetch_file.ps1",
            {"Path": "C:\\Windows\\Temp\\blob.bin", "BufferSize": 2**19, "Offset": offset},
        )
        data = base64.b64decode(out.stdout.strip())
        copy += data
        if len(data) < 2**19:
            break
        offset += len(data)
    assert copy == payload
    assert (
        script("winrm_fetch_file.ps1", {"Path": "C:\\Windows", "BufferSize": 10, "Offset": 0}).stdout
        == "[DIR]\r\n"
    )
    missing = script("winrm_fetch_file.ps1", {"Path": "C:\\nope", "BufferSize": 10, "Offset": 0})
    assert (missing.exit_code, missing.stderr) == (1, "C:\\nope does not exist\r\n")
    nowhere = script("winrm_put_file.ps1", {"Path": "C:\\No\\Such\\Dir\\x"}, b"")
    assert nowhere.exit_code == 1 and "Could not find a part of the path" in nowhere.stderr
