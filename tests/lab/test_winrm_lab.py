"""The lab's Windows stand-in, through the real clients: pywinrm (unmodified) and ansible-playbook.

One stand-in process serves a host per scenario on its own loopback address (127.61.0.x) for the whole
module; tests that change a host use the scratch host. Everything goes over real HTTP on loopback with
Basic or NTLM (message-encrypted) authentication.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import winrm
from hypothesis import given, settings
from hypothesis import strategies as st
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError

from orchestrator_lab.windows import commands
from orchestrator_lab.windows import scenarios as windows_scenarios
from orchestrator_lab.windows.hoststate import HostState
from orchestrator_lab.windows.launcher import Endpoint, start, stop, write_credentials

USER, PASSWORD = "Administrator", "Lab-Passw0rd!"
INFECTION = datetime(2025, 3, 14, 2, 30, tzinfo=UTC)
HOSTS = {  # name -> (address, scenario)
    "WINCLEAN": ("127.61.0.11", "clean"),
    "WINLB3": ("127.61.0.12", "lockbit3"),
    "WINLB2": ("127.61.0.13", "lockbit2"),
    "WINSUSP": ("127.61.0.14", "suspicious"),
    "WINLOOK": ("127.61.0.15", "lookalikes"),
    "WINSCRATCH": ("127.61.0.16", "clean"),
    "WINHANG": ("127.61.0.17", "clean"),
}


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.states: dict[str, Path] = {}
        self.details: dict[str, dict] = {}
        self.verdicts: dict[str, str] = {}
        rng = random.Random(2025)
        for name, (_address, kind) in HOSTS.items():
            state, verdict, details = windows_scenarios.make_state(kind, rng, INFECTION, hostname=name)
            if name == "WINHANG":
                state["faults"] = {"hang": True}
            path = root / name / "state.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(state))
            self.states[name], self.details[name], self.verdicts[name] = path, details, verdict
        self.credentials = root / "winrm-users.json"
        write_credentials(self.credentials, {USER: PASSWORD})
        self.pid_file, self.log_file = root / "winrm.pid", root / "winrm.log"
        self.pid = start(
            [Endpoint(address, 5985, self.states[name]) for name, (address, _k) in HOSTS.items()],
            self.credentials,
            pid_file=self.pid_file,
            log_file=self.log_file,
        )

    def state(self, name: str) -> dict:
        return json.loads(self.states[name].read_text())

    def session(
        self, name: str, transport: str = "ntlm", password: str = PASSWORD, **kwargs
    ) -> winrm.Session:
        return winrm.Session(HOSTS[name][0], auth=(USER, password), transport=transport, **kwargs)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = Lab(tmp_path_factory.mktemp("winrm-lab"))
    yield lab
    stop(lab.pid)


def probe_script(probes: list[dict]) -> str:
    header = base64.b64encode(json.dumps(probes).encode()).decode()
    # The body is what real PowerShell would run; the stand-in answers from the header instead.
    return f"$ErrorActionPreference = 'Stop'\n# orchestrator-probes: {header}\nWrite-Output 'probe body'\n"


def run_probes(session: winrm.Session, probes: list[dict]) -> dict[str, dict]:
    result = session.run_ps(probe_script(probes))
    assert result.status_code == 0, result.std_err
    lines = [json.loads(line) for line in result.std_out.decode().splitlines() if line.strip()]
    assert [line["id"] for line in lines] == [p["id"] for p in probes]
    return {line["id"]: line for line in lines}


ALL_PROBES = [
    {
        "id": "notes3",
        "kind": "files",
        "roots": ["C:\\Users", "C:\\Data"],
        "patterns": ["*.README.txt"],
        "max_depth": 6,
        "max_results": 200,
        "hash": True,
    },
    {
        "id": "notes2",
        "kind": "files",
        "roots": ["C:\\"],
        "patterns": ["Restore-My-Files.txt"],
        "max_depth": 8,
        "max_results": 200,
    },
    {
        "id": "icons",
        "kind": "files",
        "roots": ["C:\\ProgramData"],
        "patterns": ["*.ico", "*.bmp"],
        "max_depth": 0,
        "max_results": 50,
    },
    {
        "id": "winlogon",
        "kind": "registry",
        "path": "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon",
        "name": None,
    },
    {
        "id": "firewall",
        "kind": "registry",
        "path": "HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall\\*",
        "name": "EnableFirewall",
    },
    {
        "id": "run",
        "kind": "registry",
        "path": "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run",
        "name": "XO1XADpO01",
    },
    {"id": "lockbitkey", "kind": "registry", "path": "HKCU\\SOFTWARE\\LockBit", "name": None},
    {"id": "services", "kind": "services", "names": ["VSS", "*sql*", "Veeam*"]},
    {"id": "cleared", "kind": "eventlog", "log": "Security", "event_ids": [1102]},
    {"id": "shadows", "kind": "shadow_copies"},
    {"id": "tasks", "kind": "scheduled_tasks"},
]


# -- transports and authentication ---------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_pywinrm_run_cmd_and_run_ps(lab: Lab, transport: str) -> None:
    session = lab.session("WINCLEAN", transport)
    result = session.run_cmd("hostname")
    assert (result.status_code, result.std_out, result.std_err) == (0, b"WINCLEAN\r\n", b"")
    assert session.run_cmd("whoami").std_out == b"winclean\\administrator\r\n"
    ps = session.run_ps(
        "Write-Output 'hello world'; $env:COMPUTERNAME\nGet-Service -Name VSS | Select-Object -ExpandProperty Status"
    )
    assert (ps.status_code, ps.std_out.decode().splitlines()) == (0, ["hello world", "WINCLEAN", "Running"])
    # NTLM over HTTP: every SOAP message after the handshake travelled sealed (pywinrm's default).
    assert (session.protocol.transport.encryption is not None) == (transport == "ntlm")


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
@pytest.mark.parametrize(("user", "password"), [(USER, "wrong-password"), ("nobody", PASSWORD)])
def test_wrong_credentials_refused(lab: Lab, transport: str, user: str, password: str) -> None:
    session = winrm.Session(HOSTS["WINCLEAN"][0], auth=(user, password), transport=transport)
    with pytest.raises(InvalidCredentialsError):
        session.run_cmd("hostname")


def test_unauthenticated_request_gets_windows_challenge(lab: Lab) -> None:
    response = requests.post(f"http://{HOSTS['WINCLEAN'][0]}:5985/wsman", data=b"<x/>", timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Negotiate, Basic realm="WSMAN"'
    assert response.headers["Server"] == "Microsoft-HTTPAPI/2.0"


def test_unknown_shell_is_a_wsman_fault(lab: Lab) -> None:
    protocol = lab.session("WINCLEAN", "basic").protocol
    with pytest.raises(winrm.exceptions.WSManFaultError) as fault:
        protocol.run_command("00000000-0000-0000-0000-000000000000", "hostname")
    assert fault.value.wsman_fault_code == 2150858843
    assert fault.value.fault_subcode == "w:InvalidSelectors"


def test_unknown_commands_fail_with_stderr(lab: Lab) -> None:
    session = lab.session("WINCLEAN")
    cmd = session.run_cmd("frobnicate", ["--now"])
    assert cmd.status_code == 1 and b"'frobnicate' is not recognized" in cmd.std_err
    ps = session.run_ps("Invoke-Frobnicate -Now")
    assert ps.status_code == 1 and b"The term 'Invoke-Frobnicate' is not recognized" in ps.std_err
    construct = session.run_ps("foreach ($x in 1..3) { $x }")
    assert construct.status_code == 1 and b"does not emulate" in construct.std_err


def test_output_larger_than_one_envelope_arrives_whole(lab: Lab) -> None:
    session = lab.session("WINSCRATCH")
    line = "0123456789abcdef" * 8
    assert session.run_ps(f"Set-Content -Path C:\\Windows\\Temp\\big.txt -Value '{line}'").status_code == 0
    for _ in range(11):  # 128 B -> 256 KiB, well past one 150 KB envelope
        assert (
            session.run_ps(
                "Add-Content C:\\Windows\\Temp\\big.txt (Get-Content C:\\Windows\\Temp\\big.txt -Raw)"
            ).status_code
            == 0
        )
    shell = session.protocol.open_shell()
    command = session.protocol.run_command(shell, "type C:\\Windows\\Temp\\big.txt")
    receives = 0
    chunks, done = [], False
    while not done:
        out, _err, code, done = session.protocol.get_command_output_raw(shell, command)
        chunks.append(out)
        receives += 1
    session.protocol.close_shell(shell)
    text = b"".join(chunks).decode()
    assert receives > 1 and code == 0
    assert text.count(line) == 2048


def test_long_scripts_fail_on_the_command_line_and_pass_through_stdin(lab: Lab) -> None:
    """As on real Windows: WinRS runs the line through cmd.exe (8191 characters), so a large script must
    be sent on stdin to `powershell -Command -` (what Ansible does), not with `run_ps`."""
    session = lab.session("WINLB3")
    probes = [dict(ALL_PROBES[0], id=f"p{i}") for i in range(60)]
    script = probe_script(probes)
    too_long = session.run_ps(script)
    assert too_long.status_code == 1 and too_long.std_err == b"The command line is too long.\r\n"
    protocol = session.protocol
    shell = protocol.open_shell(codepage=65001)
    command = protocol.run_command(shell, "powershell", ["-NoProfile", "-NonInteractive", "-Command", "-"])
    protocol.send_command_input(shell, command, script.encode(), end=True)
    out, err, code = protocol.get_command_output(shell, command)
    protocol.cleanup_command(shell, command)
    protocol.close_shell(shell)
    assert (code, err) == (0, b"")
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [line["id"] for line in lines] == [p["id"] for p in probes]
    assert {r["path"] for r in lines[-1]["results"]} == set(lab.details["WINLB3"]["notes"])


def test_hung_host_answers_operation_timeout_and_can_be_signalled(lab: Lab) -> None:
    session = lab.session("WINHANG", operation_timeout_sec=1, read_timeout_sec=15)
    protocol = session.protocol
    shell = protocol.open_shell()
    command = protocol.run_command(shell, "hostname")
    started = time.monotonic()
    with pytest.raises(WinRMOperationTimeoutError):
        protocol.get_command_output_raw(shell, command)
    assert (
        0.9 < time.monotonic() - started < 14
    )  # the server waited OperationTimeout, not the client's read timeout
    protocol.cleanup_command(shell, command)
    protocol.close_shell(shell)


# -- triage probe protocol -----------------------------------------------------------------------------
def test_probes_on_lockbit3_host(lab: Lab) -> None:
    details = lab.details["WINLB3"]
    answers = run_probes(lab.session("WINLB3"), ALL_PROBES)
    notes = {r["path"]: r for r in answers["notes3"]["results"]}
    assert set(notes) == set(details["notes"])
    assert all(notes[p]["sha256"] == details["planted_files"][p] for p in notes)
    assert all(r["mtime"] >= details["compromise_time"] for r in notes.values())
    ext = details["extension"]
    assert {r["path"] for r in answers["icons"]["results"]} == {
        f"C:\\ProgramData\\{ext}.ico",
        f"C:\\ProgramData\\{ext}.bmp",
    }
    winlogon = {r["name"]: r["value"] for r in answers["winlogon"]["results"]}
    assert winlogon["AutoAdminLogon"] == "1" and winlogon["DefaultPassword"]
    assert [r["value"] for r in answers["firewall"]["results"]] == [0, 0]
    services = {r["name"]: r["status"] for r in answers["services"]["results"]}
    assert services == dict.fromkeys(["MSSQLSERVER", "SQLWriter", "VSS", "VeeamTransportSvc"], "Stopped")
    assert [r["id"] for r in answers["cleared"]["results"]] == [1102]
    assert answers["shadows"]["results"] == []
    assert answers["run"]["results"] == [] and answers["lockbitkey"]["results"] == []
    hkcr = run_probes(
        lab.session("WINLB3"), [{"id": "hkcr", "kind": "registry", "path": f"HKCR\\.{ext}", "name": None}]
    )
    assert hkcr["hkcr"]["results"] == [{"path": f"HKCR\\.{ext}", "name": "(default)", "value": ext}]


def test_probes_on_lockbit2_host(lab: Lab) -> None:
    details = lab.details["WINLB2"]
    answers = run_probes(lab.session("WINLB2", "basic"), ALL_PROBES)
    assert {r["path"] for r in answers["notes2"]["results"]} == set(details["notes"])
    assert "sha256" not in answers["notes2"]["results"][0]  # only when the probe asks for hashes
    assert answers["notes3"]["results"] == []
    assert [r["name"] for r in answers["run"]["results"]] == ["XO1XADpO01"]
    assert answers["lockbitkey"]["results"]  # the key exists
    assert answers["shadows"]["results"] == []
    files = run_probes(
        lab.session("WINLB2"),
        [
            {
                "id": "enc",
                "kind": "files",
                "roots": ["C:\\"],
                "patterns": ["*.lockbit"],
                "max_depth": 10,
                "max_results": 3,
            }
        ],
    )
    assert files["enc"]["truncated"] is True and len(files["enc"]["results"]) == 3
    assert len(details["encrypted_files"]) > 3


@pytest.mark.parametrize("name", ["WINCLEAN", "WINLOOK"])
def test_probes_on_clean_hosts_show_no_indicator(lab: Lab, name: str) -> None:
    answers = run_probes(lab.session(name), ALL_PROBES)
    assert lab.verdicts[name] == "clean"
    for probe in ("notes3", "notes2", "icons", "run", "lockbitkey", "cleared"):
        assert answers[probe]["results"] == [], probe
    assert {r["status"] for r in answers["services"]["results"]} == {"Running"}
    assert len(answers["shadows"]["results"]) == 3
    assert {r["name"]: r["value"] for r in answers["winlogon"]["results"]}["AutoAdminLogon"] == "0"
    assert [r["value"] for r in answers["firewall"]["results"]] == [1, 1]
    assert all(
        r["path"].startswith("\\Microsoft\\") or r["path"] == "\\" for r in answers["tasks"]["results"]
    )


def test_lookalike_files_are_there_to_be_ignored(lab: Lab) -> None:
    answers = run_probes(
        lab.session("WINLOOK"),
        [
            {
                "id": "readme",
                "kind": "files",
                "roots": ["C:\\"],
                "patterns": ["README.txt", "~$*"],
                "max_depth": 10,
            },
            {"id": "tasks", "kind": "scheduled_tasks"},
        ],
    )
    found = {r["path"] for r in answers["readme"]["results"]}
    assert found == set(lab.details["WINLOOK"]["lookalike_files"])
    names = {r["name"] for r in answers["tasks"]["results"]}
    assert {"Adobe Acrobat Update Task", "MicrosoftEdgeUpdateTaskMachineCore"} <= names


def test_probes_on_suspicious_host_show_one_weak_sign(lab: Lab) -> None:
    details = lab.details["WINSUSP"]
    answers = run_probes(lab.session("WINSUSP"), ALL_PROBES)
    assert answers["notes3"]["results"] == answers["notes2"]["results"] == answers["cleared"]["results"] == []
    assert len(answers["shadows"]["results"]) == 3
    vss = next(r for r in answers["services"]["results"] if r["name"] == "VSS")
    tasks = {r["name"] for r in answers["tasks"]["results"]}
    if details["sign"] == "vss_disabled":
        assert (vss["status"], vss["start_type"]) == ("Stopped", "Disabled")
        assert "SystemHealthMonitor" not in tasks
    else:
        assert vss["status"] == "Running"
        assert details["task"]["name"] in tasks


def test_bad_probe_header_is_an_error(lab: Lab) -> None:
    result = lab.session("WINCLEAN").run_ps("# first line\n# orchestrator-probes: not-base64!\n")
    assert result.status_code == 1 and b"does not decode" in result.std_err


# -- state changes, persistence and reload -------------------------------------------------------------
def test_file_commands_change_the_host_state(lab: Lab) -> None:
    session = lab.session("WINSCRATCH")
    path = "C:\\Evidence\\case-42\\note.txt"
    assert session.run_ps(f"Test-Path '{path}'").std_out == b"False\r\n"
    assert (
        session.run_ps(
            "New-Item -ItemType Directory -Path C:\\Evidence\\case-42 -Force | Out-Null"
        ).status_code
        == 0
    )
    assert session.run_ps(f"Set-Content -Path '{path}' -Value 'collected by lab'").status_code == 0
    assert session.run_ps(f"Get-Content '{path}'").std_out == b"collected by lab\r\n"
    assert session.run_cmd(f"type {path}").std_out == b"collected by lab\r\n"
    on_disk = lab.state("WINSCRATCH")["files"][path]
    assert on_disk["content"] == "collected by lab\r\n" and on_disk["size"] == 18
    assert session.run_ps("Stop-Service -Name VSS").status_code == 0
    assert lab.state("WINSCRATCH")["services"]["VSS"]["status"] == "Stopped"
    assert session.run_ps("Start-Service VSS; (Get-Service VSS).Status").std_out == b"Running\r\n"
    assert session.run_ps(f"Remove-Item -Path '{path}' -Force").status_code == 0
    assert session.run_ps(f"Test-Path '{path}'").std_out == b"False\r\n"
    missing = session.run_ps(f"Get-Content '{path}'")
    assert missing.status_code == 1 and b"because it does not exist" in missing.std_err
    assert path not in lab.state("WINSCRATCH")["files"]


def test_state_replaced_from_outside_is_picked_up(lab: Lab) -> None:
    session = lab.session("WINSCRATCH", "basic")
    state = lab.state("WINSCRATCH")
    state["files"]["C:\\Users\\Public\\reimaged.txt"] = {
        "content": "fresh\r\n",
        "size": 7,
        "sha256": "00",
        "mtime": "2025-03-15T00:00:00Z",
    }
    tmp = lab.states["WINSCRATCH"].with_suffix(".new")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, lab.states["WINSCRATCH"])
    assert session.run_ps("Get-Content C:\\Users\\Public\\reimaged.txt").std_out == b"fresh\r\n"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
def test_set_content_round_trips_any_quoted_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("roundtrip") / "state.json"
    path.write_text(json.dumps({"hostname": "H", "dirs": ["C:\\Temp"]}))
    session = commands.Session(
        HostState(path), USER, "C:\\Temp", commands.default_env("H", USER), "127.0.0.1"
    )
    quoted = (
        "'"
        + text.replace("'", "''").replace("\u2019", "\u2019\u2019").replace("\u2018", "\u2018\u2018")
        + "'"
    )
    written = ps(session, f"Set-Content -Path C:\\Temp\\t.txt -Value {quoted}")
    assert written.exit_code == 0, written.stderr
    assert json.loads(path.read_text())["files"]["C:\\Temp\\t.txt"]["content"] == text + "\r\n"


# -- Ansible's winrm connection ------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_ansible_playbook_raw_tasks(lab: Lab, tmp_path: Path, transport: str) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    winscratch:\n"
        f"      ansible_host: {HOSTS['WINSCRATCH'][0]}\n"
        "      ansible_connection: winrm\n      ansible_port: 5985\n      ansible_winrm_scheme: http\n"
        f"      ansible_winrm_transport: {transport}\n      ansible_user: {USER}\n"
        "      ansible_password: \"{{ lookup('env', 'LAB_WINRM_PASSWORD') }}\"\n"
    )
    marker = f"C:\\Windows\\Temp\\ansible-{transport}.txt"
    playbook = tmp_path / "raw.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - raw: hostname\n      register: name\n"
        f"    - raw: Set-Content -Path {marker} -Value 'ansible {transport}'\n"
        f"    - raw: Get-Content {marker}\n      register: content\n"
        "    - assert:\n        that:\n"
        "          - name.stdout_lines == ['WINSCRATCH']\n"
        f"          - content.stdout_lines == ['ansible {transport}']\n"
    )
    env = {
        **os.environ,
        "LAB_WINRM_PASSWORD": PASSWORD,
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok=4" in result.stdout and "failed=0" in result.stdout
    assert lab.state("WINSCRATCH")["files"][marker]["content"] == f"ansible {transport}\r\n"
    assert PASSWORD not in result.stdout + result.stderr


# -- process lifecycle ---------------------------------------------------------------------------------
def test_separate_process_starts_and_stops_cleanly(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(windows_scenarios.make_state("clean", random.Random(1), INFECTION, hostname="SOLO")[0])
    )
    creds = tmp_path / "users.json"
    write_credentials(creds, {"operator": "other-secret"}, allow_unencrypted=False)
    assert oct(creds.stat().st_mode & 0o777) == "0o600"
    pid = start(
        [Endpoint("127.61.0.30", 5985, state)],
        creds,
        pid_file=tmp_path / "p.pid",
        log_file=tmp_path / "l.log",
    )
    try:
        solo = winrm.Session("127.61.0.30", auth=("operator", "other-secret"), transport="ntlm")
        assert solo.run_cmd("hostname").std_out == b"SOLO\r\n"
        # AllowUnencrypted=false, as on a default Windows listener: plaintext bodies over HTTP are refused
        for transport, kwargs in (("basic", {}), ("ntlm", {"message_encryption": "never"})):
            plain = winrm.Session(
                "127.61.0.30", auth=("operator", "other-secret"), transport=transport, **kwargs
            )
            with pytest.raises(InvalidCredentialsError):
                plain.run_cmd("hostname")
        # accounts are per host: the main lab's account is unknown here, and vice versa
        with pytest.raises(InvalidCredentialsError):
            winrm.Session("127.61.0.30", auth=(USER, PASSWORD), transport="ntlm").run_cmd("hostname")
        with pytest.raises(InvalidCredentialsError):
            lab.session("WINCLEAN", password="other-secret").run_cmd("hostname")
    finally:
        assert stop(pid)
    assert not (tmp_path / "p.pid").exists()
    assert not list(tmp_path.glob(".users.json.ntlm-*"))  # the NTLM account file went with the process
    with pytest.raises(OSError):
        socket.create_connection(("127.61.0.30", 5985), timeout=1)
    assert "other-secret" not in (tmp_path / "l.log").read_text()


# -- the command interpreter, in-process (no network: fast, many cases) --------------------------------
@pytest.fixture
def lockbit2_session(tmp_path: Path) -> commands.Session:
    state, _verdict, _details = windows_scenarios.make_state(
        "lockbit2", random.Random(5), INFECTION, hostname="LB2"
    )
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    return commands.Session(
        HostState(path), USER, f"C:\\Users\\{USER}", commands.default_env("LB2", USER), "127.61.0.99"
    )


def ps(session: commands.Session, script: str) -> commands.Outcome:
    return commands.run(
        "powershell -NoProfile -EncodedCommand " + base64.b64encode(script.encode("utf-16-le")).decode(),
        session,
    )


def test_registry_remediation_commands(lockbit2_session: commands.Session) -> None:
    run_key = "HKCU:\\Software\\Microsoft\\Windows\\CurrentVersion\\Run"
    assert ps(lockbit2_session, "Test-Path HKCU:\\SOFTWARE\\LockBit").stdout == "True\r\n"
    assert ps(lockbit2_session, f"Get-ItemPropertyValue -Path '{run_key}' -Name XO1XADpO01").stdout.endswith(
        ".exe\r\n"
    )
    assert ps(lockbit2_session, f"Remove-ItemProperty -Path '{run_key}' -Name XO1XADpO01").exit_code == 0
    assert ps(lockbit2_session, "Remove-Item -Path HKCU:\\SOFTWARE\\LockBit -Recurse -Force").exit_code == 0
    fw = "HKLM:\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall\\DomainProfile"
    assert ps(lockbit2_session, f"Set-ItemProperty -Path {fw} -Name EnableFirewall -Value 1").exit_code == 0
    registry = json.loads(lockbit2_session.state.path.read_text())["registry"]
    assert "XO1XADpO01" not in registry["HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run"]
    assert "OneDrive" in registry["HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run"]
    assert "HKCU\\SOFTWARE\\LockBit" not in registry
    assert (
        registry["HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall\\DomainProfile"]["EnableFirewall"] == 1
    )
    missing = ps(lockbit2_session, f"Get-ItemPropertyValue -Path '{run_key}' -Name XO1XADpO01")
    assert missing.exit_code == 1 and missing.stderr.startswith("#< CLIXML\r\n")


@pytest.mark.parametrize(
    ("line", "exit_code", "expected"),
    [
        ("cmd /c echo hi && whoami", 0, "hi\r\nlb2\\administrator\r\n"),
        ("cmd /c exit /b 3", 3, ""),
        ("echo", 0, "ECHO is on.\r\n"),
        ("ipconfig /all", 0, "IPv4 Address. . . . . . . . . . . : 127.61.0.99"),
        ("vssadmin list shadows", 0, "No items found that satisfy the query."),
        ("type C:\\Users\\Administrator\\Desktop\\LockBit-note.hta", 0, "<html>"),
        ('powershell -Command "exit 7"', 7, ""),
        ("powershell -c \"try { Get-Content C:\\nope } catch { Write-Output 'caught' }\"", 0, "caught\r\n"),
        (
            'powershell -c "(Get-Service VSS).Status; (Get-Service VSS).StartType"',
            0,
            "Stopped\r\nDisabled\r\n",
        ),
        ('powershell -c "Start-Service VSS"', 1, "cannot be started"),
        ('powershell -c "Get-ChildItem C:\\Users\\Public\\Documents -Name"', 0, "Restore-My-Files.txt"),
        (
            'powershell -c "Get-FileHash C:\\Windows\\System32\\drivers\\etc\\hosts | Select-Object -ExpandProperty Algorithm"',
            0,
            "SHA256\r\n",
        ),
        ('powershell -c "Get-Date -Format o"', 0, "T"),
        ('powershell -c "$x = \'a b\'; Write-Output \\"[$x] $env:USERNAME\\""', 0, "[a b] Administrator\r\n"),
        ('powershell -c "Get-Service -Name Nope"', 1, "Cannot find any service with service name 'Nope'"),
    ],
)
def test_command_lines(lockbit2_session: commands.Session, line: str, exit_code: int, expected: str) -> None:
    outcome = commands.run(line, lockbit2_session)
    assert outcome.exit_code == exit_code, outcome.stderr
    assert expected in (outcome.stdout if exit_code in (0, 3, 7) else outcome.stderr)


def test_lab_playbook_raw_scripts(lockbit2_session: commands.Session) -> None:
    """The shapes the stage playbooks send to lab Windows hosts: if/else blocks, wildcard wipes."""
    marker = "C:\\ProgramData\\recovery\\isolated"
    isolate = (
        "New-Item -ItemType Directory -Force -Path 'C:\\ProgramData\\recovery' | Out-Null;\n"
        f"Set-Content -Path '{marker}' -Value 'isolated by the recovery orchestrator'"
    )
    assert ps(lockbit2_session, isolate).exit_code == 0
    lift = (
        f"if (Test-Path '{marker}') {{ Remove-Item -Force -Path '{marker}' }}\nelse {{ 'was not isolated' }}"
    )
    assert ps(lockbit2_session, lift).stdout == ""
    assert ps(lockbit2_session, lift).stdout == "was not isolated\r\n"
    wipe = "".join(
        f"if (Test-Path '{p}') {{ Remove-Item -Recurse -Force -Path '{p}\\*' }};\n"
        for p in ("C:\\Users", "C:\\Data")
    )
    assert ps(lockbit2_session, wipe).exit_code == 0
    files = json.loads(lockbit2_session.state.path.read_text())["files"]
    assert not [p for p in files if p.startswith(("C:\\Users\\", "C:\\Data\\"))]
    assert [p for p in files if p.startswith("C:\\Windows\\")]
    check = "if ((Test-Path C:\\Users\\*) -eq $false -and $true) { 'x' }"
    assert ps(lockbit2_session, "Test-Path C:\\Users; Test-Path C:\\Users\\*").stdout == "True\r\nFalse\r\n"
    assert (
        ps(lockbit2_session, "if ((Get-Service VSS).Status -ne 'Running') { 'down' } else { 'up' }").stdout
        == "down\r\n"
    )
    assert ps(lockbit2_session, check).exit_code == 1  # -and is beyond the subset: refused, not guessed
