"""Hostile WS-Management endpoints and per-host Windows credentials, through the real CLI.

A compromised Windows host answers whatever it likes: it can drip one byte per second (which no read
timeout ever trips), or send an endless body. Triage must still end within its --timeout plus a few
seconds, with the host `unreachable` or `error`, and the healthy host next to it checked as usual.
Per-host (LAPS-style) passwords: two stand-in hosts with different accounts, each accepted only with its
own password, one from the environment and one from Ansible Vault.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator_lab.windows import scenarios as windows_scenarios
from orchestrator_lab.windows.launcher import Endpoint, start, stop, write_credentials
from tests.conftest import Cli

TIMEOUT = 5
SLACK = 3  # the guard's close and the slower hosts' bookkeeping, over the command's own fixed cost
USER = "Administrator"
PASSWORDS = {"WINA": "Laps-A-1f9c!x", "WINB": "Laps-B-77d0?q"}
ADDRESSES = {"WINA": "127.0.0.1", "WINB": "127.0.0.2"}
PORT = 5985


class HostileServer:
    """A TCP server on 127.0.0.1 that reads a request and answers with `behaviour(conn)`."""

    def __init__(self, behaviour: Callable[[socket.socket, threading.Event], None]) -> None:
        self.behaviour = behaviour
        self.stopping = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.closed_by_client = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        try:
            conn.recv(65536)  # the request's first bytes: enough, we never answer it properly
            self.behaviour(conn, self.stopping)
        except OSError:
            self.closed_by_client += 1  # the client hung up: what the deadline must do
        finally:
            conn.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.sock.close()


def drip_headers(conn: socket.socket, stopping: threading.Event) -> None:
    """A status line, then a header that never ends, one byte per second."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    while not stopping.wait(1.0):
        conn.sendall(b"a")


def drip_body(conn: socket.socket, stopping: threading.Event) -> None:
    """Honest headers announcing a small body that arrives one byte per second."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: 4000\r\n\r\n<"
    )
    while not stopping.wait(1.0):
        conn.sendall(b" ")


def huge_body(conn: socket.socket, stopping: threading.Event) -> None:
    """A chunked body without end, as fast as the client reads."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"A" * (1 << 20))
    sent = 0
    while not stopping.is_set() and sent < (1 << 30):
        conn.sendall(chunk)
        sent += len(chunk)


def redirect(conn: socket.socket, stopping: threading.Event) -> None:
    """A redirect elsewhere: the next request, and its NTLM exchange, would go where the host says."""
    conn.sendall(
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.2:5985/wsman\r\nContent-Length: 0\r\n\r\n"
    )


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two clean stand-in Windows hosts, each with its own local Administrator password (WINB refuses
    Basic, as a hardened listener does). One process
    each: the stand-in's NTLM acceptor reads one account file per process, so one process would accept
    the first matching `Administrator` line on both hosts."""
    root = tmp_path_factory.mktemp("winrm-hosts")
    rng = random.Random(13)
    pids = []
    try:
        for name, address in ADDRESSES.items():
            state, _verdict, _details = windows_scenarios.make_state(
                "clean", rng, datetime(2025, 3, 14, tzinfo=UTC), hostname=name
            )
            path = root / name / "state.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(state))
            creds = root / name / "accounts.json"
            write_credentials(creds, {USER: PASSWORDS[name]}, basic=name != "WINB")  # WINB: NTLM only
            pids.append(
                start(
                    [Endpoint(address, PORT, path)],
                    creds,
                    pid_file=root / name / "winrm.pid",
                    log_file=root / name / "winrm.log",
                )
            )
        yield root
    finally:
        for pid in pids:
            stop(pid)


def _winrm(address: str, port: int, password: str, **extra: object) -> dict:
    return {
        "ansible_host": address,
        "ansible_port": port,
        "ansible_connection": "winrm",
        "ansible_winrm_scheme": "http",
        "ansible_winrm_transport": "ntlm",
        "ansible_user": USER,
        "ansible_password": password,
        **extra,
    }


def test_dripping_and_huge_endpoints_end_within_the_timeout(standin: Path, cli: Cli, tmp_path: Path) -> None:
    servers = {
        name: HostileServer(b)
        for name, b in (
            ("drip-headers", drip_headers),
            ("drip-body", drip_body),
            ("huge", huge_body),
            ("redirect", redirect),
        )
    }
    try:
        hosts = {name: _winrm("127.0.0.1", s.port, "whatever-Passw0rd") for name, s in servers.items()}
        hosts["healthy"] = _winrm(ADDRESSES["WINA"], PORT, "{{ lookup('env', 'WINA_PASSWORD') }}")
        inventory = tmp_path / "hostile.yml"
        inventory.write_text(json.dumps({"windows": {"hosts": hosts}}))
        # The command's fixed cost on this machine now (start-up, inventory, database): one healthy host.
        started = time.monotonic()
        baseline = cli(
            "triage",
            "-i",
            str(inventory),
            "-l",
            "healthy",
            "--json",
            env={"WINA_PASSWORD": PASSWORDS["WINA"]},
        )
        fixed = time.monotonic() - started
        assert baseline.exit_code == 0, baseline.output + baseline.stderr
        started = time.monotonic()
        result = cli(
            "triage", "-i", str(inventory), "--timeout", str(TIMEOUT), "--json",
            env={"WINA_PASSWORD": PASSWORDS["WINA"]},
        )  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        for server in servers.values():
            server.close()
    assert result.exit_code == 1, result.output + result.stderr
    got = {r["host"]: r for r in json.loads(result.stdout)["results"]}
    assert elapsed < fixed + TIMEOUT + SLACK, (elapsed, fixed, got)
    assert got["healthy"]["verdict"] == "clean", got["healthy"]
    for name in ("drip-headers", "drip-body"):
        assert got[name]["verdict"] == "unreachable", got[name]
        assert got[name]["reason"].startswith("timeout: http://127.0.0.1:"), got[name]
        assert got[name]["duration_s"] < TIMEOUT + 1.5, got[name]
    assert got["huge"]["verdict"] == "error", got["huge"]
    assert "response over 4194304 bytes refused" in got["huge"]["reason"], got["huge"]
    assert got["huge"]["duration_s"] < TIMEOUT, got["huge"]
    assert got["redirect"]["verdict"] == "error", got["redirect"]
    assert "redirect (307) refused" in got["redirect"]["reason"], got["redirect"]


def _vault(tmp_path: Path, name: str, value: str) -> tuple[str, Path]:
    """`name: !vault ...` for host_vars, and the vault password file that opens it."""
    password_file = tmp_path / "vault-pass"
    password_file.write_text("correct horse\n")
    encrypted = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-vault")), "encrypt_string", "--vault-password-file",
         str(password_file), value, "--name", name],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return encrypted, password_file


def _cli_process(cli: Cli, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process: Ansible reads ANSIBLE_VAULT_PASSWORD_FILE once, at import."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "--db", str(cli.db), *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "ORCHESTRATOR_OPERATOR": "tester", **env},
    )  # fmt: skip


def _per_host_inventory(root: Path, vaulted: str, from_env: str, encrypted: str) -> Path:
    """wina and winb: host `from_env` reads its password from $WINA_PASSWORD, host `vaulted` from Vault."""
    inv = root / f"inv-{vaulted}"
    (inv / "host_vars").mkdir(parents=True)
    hosts = {name: _winrm(ADDRESSES[name.upper()], PORT, "") for name in ("wina", "winb")}
    hosts[from_env]["ansible_password"] = "{{ lookup('env', 'WINA_PASSWORD') }}"
    del hosts[vaulted]["ansible_password"]
    (inv / "hosts.yml").write_text(json.dumps({"windows": {"hosts": hosts}}))
    (inv / "host_vars" / f"{vaulted}.yml").write_text(encrypted)
    return inv


def test_per_host_passwords_each_accepted_only_by_its_own_host(
    standin: Path, cli: Cli, tmp_path: Path
) -> None:
    """LAPS-style: WINA's password from the environment, WINB's from Ansible Vault in host_vars; then the
    same two sources swapped between the hosts: each host refuses the other's password."""
    encrypted, vault_pass = _vault(tmp_path, "ansible_password", PASSWORDS["WINB"])
    env = {"WINA_PASSWORD": PASSWORDS["WINA"], "ANSIBLE_VAULT_PASSWORD_FILE": str(vault_pass)}
    own = _per_host_inventory(tmp_path, "winb", "wina", encrypted)
    result = _cli_process(cli, env, "triage", "-i", str(own), "--timeout", "10", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    got = {r["host"]: r for r in json.loads(result.stdout)["results"]}
    assert got["wina"]["verdict"] == "clean", got["wina"]
    assert got["winb"]["verdict"] == "clean", got["winb"]

    swapped = _per_host_inventory(tmp_path, "wina", "winb", encrypted)
    result = _cli_process(cli, env, "triage", "-i", str(swapped), "--timeout", "10", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    got = {r["host"]: r for r in json.loads(result.stdout)["results"]}
    for name in ("wina", "winb"):
        assert got[name]["verdict"] == "error", got[name]
        assert got[name]["reason"].startswith("auth failure"), got[name]
    for secret in PASSWORDS.values():
        assert secret not in result.stdout + result.stderr
        assert secret not in cli.db.read_bytes().decode("latin-1")


def test_validate_stage_recheck_ends_within_its_timeout(standin: Path, tmp_path: Path) -> None:
    """`run`'s validate stage re-checks hosts with the triage engine (given `run --scan-timeout`, read
    as `retriage.verdicts` reads it): a dripping host fails validation within that timeout, the healthy
    one passes."""
    from orchestrator import inventory as inventory_lib
    from orchestrator.execution.stages.retriage import verdicts as validated
    from orchestrator.triage import engine as triage_engine
    from orchestrator.triage import packs as packs_lib

    server = HostileServer(drip_body)
    try:
        inventory = tmp_path / "validate.yml"
        hosts = {
            "drip": _winrm("127.0.0.1", server.port, "whatever-Passw0rd"),
            "healthy": _winrm(ADDRESSES["WINA"], PORT, PASSWORDS["WINA"]),
        }
        inventory.write_text(json.dumps({"windows": {"hosts": hosts}}))
        loaded = inventory_lib.load([str(inventory)])
        started = time.monotonic()
        settings = triage_engine.Settings(forks=4, timeout=TIMEOUT)
        found = triage_engine.Triage(list(loaded.hosts.values()), packs_lib.load([]), settings).run()
        verdicts = validated(found)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert elapsed < TIMEOUT + 2, elapsed
    assert verdicts["healthy"] == (True, "clean")
    clean, reason = verdicts["drip"]
    assert not clean and reason.startswith("unreachable: timeout: http://127.0.0.1:"), reason


def test_basic_over_http_is_warned_once_naming_the_hosts(standin: Path, cli: Cli, tmp_path: Path) -> None:
    """Basic over HTTP works (the stand-in allows it, as a misconfigured listener would) but is named in
    one warning per command; `inventory check` also names the account shared by several hosts."""
    hosts = {
        "wina": _winrm(ADDRESSES["WINA"], PORT, PASSWORDS["WINA"], ansible_winrm_transport="basic"),
        "winb": _winrm(ADDRESSES["WINB"], PORT, PASSWORDS["WINB"], ansible_winrm_transport="basic"),
        "winc": _winrm("127.0.0.3", PORT, "Shared-1", ansible_winrm_scheme="https", ansible_port=5986),
        "wind": _winrm("127.0.0.4", PORT, "Shared-1", ansible_winrm_scheme="https", ansible_port=5986),
    }
    inventory = tmp_path / "basic.yml"
    inventory.write_text(json.dumps({"windows": {"hosts": hosts}}))
    result = cli("triage", "-i", str(inventory), "-l", "wina", "--timeout", "10", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    assert {r["verdict"] for r in json.loads(result.stdout)["results"]} == {"clean"}
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: Basic authentication over HTTP on wina: the password travels in clear (use HTTPS "
        "with certificate validation, or Kerberos; see docs/windows-credentials.md)"
    ]
    for secret in PASSWORDS.values():
        assert secret not in result.stdout + result.stderr

    check = cli("inventory", "check", "-i", str(inventory))
    assert check.exit_code == 0, check.stderr
    lines = [line for line in check.stderr.splitlines() if line.startswith("warning:")]
    assert lines[0].startswith("warning: Basic authentication over HTTP on wina, winb:")
    assert lines[1].startswith(
        "warning: one account (Administrator) shared by 2 Windows hosts over NTLM/Basic: winc, wind;"
    )
    assert len(lines) == 2 and "Shared-1" not in check.stderr + check.stdout


def test_the_inventory_transport_reaches_pywinrm(standin: Path, cli: Cli, tmp_path: Path) -> None:
    """ansible_winrm_transport decides how triage logs in: WINB refuses Basic and accepts NTLM. Kerberos
    cannot be tried end to end here (no KDC): a kerberos host fails with an auth reason saying what is
    missing, which shows the setting reached pywinrm's Protocol rather than a default."""
    hosts = {
        "ntlm": _winrm(ADDRESSES["WINB"], PORT, PASSWORDS["WINB"]),
        "basic": _winrm(ADDRESSES["WINB"], PORT, PASSWORDS["WINB"], ansible_winrm_transport="basic"),
        "kerberos": _winrm(ADDRESSES["WINA"], PORT, PASSWORDS["WINA"], ansible_winrm_transport="kerberos"),
    }
    results = {}
    for name, host in hosts.items():  # one host per run: they share an address
        inventory = tmp_path / f"{name}.yml"
        inventory.write_text(json.dumps({"windows": {"hosts": {name: host}}}))
        result = cli("triage", "-i", str(inventory), "--timeout", "10", "--json")
        results[name] = json.loads(result.stdout)["results"][0]
    assert results["ntlm"]["verdict"] == "clean", results["ntlm"]
    assert results["basic"]["verdict"] == "error", results["basic"]
    assert results["basic"]["reason"].startswith("auth failure"), results["basic"]
    assert results["kerberos"]["verdict"] == "error", results["kerberos"]
    assert results["kerberos"]["reason"].startswith("auth failure"), results["kerberos"]
    assert "erberos" in results["kerberos"]["reason"], results["kerberos"]


def test_playbooks_log_in_with_each_hosts_own_password(standin: Path, tmp_path: Path) -> None:
    """The playbooks' side: ansible-playbook's winrm connection reads the same per-host variables (one
    password from the environment, one from Vault), and a swapped password is refused there too."""
    encrypted, vault_pass = _vault(tmp_path, "ansible_password", PASSWORDS["WINB"])
    playbook = tmp_path / "ping.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.windows.win_ping:\n")
    env = {
        **os.environ,
        "WINA_PASSWORD": PASSWORDS["WINA"],
        "ANSIBLE_VAULT_PASSWORD_FILE": str(vault_pass),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_NOCOLOR": "1",
    }

    def play(inventory: Path) -> dict[str, dict]:
        run = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook)],
            capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        for secret in PASSWORDS.values():
            assert secret not in run.stdout + run.stderr
        return json.loads(run.stdout)["stats"]

    own = play(_per_host_inventory(tmp_path / "own", "winb", "wina", encrypted))
    assert {h: (s["ok"], s["failures"], s["unreachable"]) for h, s in own.items()} == {
        "wina": (1, 0, 0),
        "winb": (1, 0, 0),
    }
    swapped = play(_per_host_inventory(tmp_path / "swapped", "wina", "winb", encrypted))
    assert all(s["ok"] == 0 and (s["unreachable"] or s["failures"]) for s in swapped.values()), swapped
