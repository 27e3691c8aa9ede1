"""Triage against the local lab: real sshd hosts with every scenario and WinRM stand-ins reached through
pywinrm's real protocol path. The lab's manifest is the ground truth.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator_lab import keys as lab_keys
from orchestrator_lab import load_manifest
from tests.conftest import Cli

pytestmark = pytest.mark.lab

TIMEOUT = 6


def _run(cli: Cli, lab: Any, *args: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    result = cli(
        "triage",
        "-i",
        str(lab.inventory),
        "--timeout",
        str(TIMEOUT),
        *args,
        "--json",
        env=lab.env(),
    )
    elapsed = time.monotonic() - started
    assert result.exit_code in (0, 1), result.output + result.stderr
    return result.exit_code, json.loads(result.stdout), elapsed


def _expected(host: dict) -> tuple[str, str, str | None]:
    """(verdict, reason prefix, compromise time) the host should get now. Tests that change a shared
    lab host put it back with a reimage (the lab's contract), which leaves the role's clean golden image
    and a new, published host key: such a host is clean whatever its scenario was."""
    scenario = host["scenario"]
    if host.get("reimages"):
        return "clean", "", None
    return scenario["expected_verdict"], scenario["expected_reason"] or "", scenario["compromise_time"]


def _untouched(lab: Any, kind: str, os_name: str | None = "linux") -> list[dict]:
    """Hosts still in their planted scenario (no test has reimaged them), from the current manifest."""
    hosts = [
        h
        for h in load_manifest(lab.dir)["hosts"]
        if h["scenario"]["kind"] == kind and os_name in (None, h["os"]) and not h.get("reimages")
    ]
    assert hosts, f"no {os_name or ''} lab host left in scenario {kind!r}: another test reimaged them all"
    return hosts


def _clean_linux(lab: Any) -> list[dict]:
    return [h for h in load_manifest(lab.dir)["hosts"] if h["os"] == "linux" and _expected(h)[0] == "clean"]


@pytest.fixture(scope="module")
def lab_run(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, int, dict, float, dict]:
    """One triage of the whole lab, shared by the checks below (a run costs a few seconds), with the
    manifest as it is at that moment."""
    cli = Cli(tmp_path_factory.mktemp("triage") / "recovery.db")
    return (cli, *_run(cli, lab), load_manifest(lab.dir))


def test_every_host_gets_the_verdict_the_manifest_expects(lab: Any, lab_run: tuple) -> None:
    _, code, data, elapsed, manifest = lab_run
    results = {r["host"]: r for r in data["results"]}
    wrong = []
    for host in manifest["hosts"]:
        verdict, reason, compromise = _expected(host)
        got = results[host["name"]]
        if got["verdict"] != verdict or not (got["reason"] or "").startswith(reason):
            wrong.append((host["name"], host["scenario"]["kind"], verdict, got["verdict"], got["reason"]))
        if compromise:
            assert (got["compromise_time"] or "")[:19] == compromise[:19], host["name"]
        assert got["duration_s"] <= TIMEOUT + 1, host["name"]
    assert not wrong
    assert {h["os"] for h in manifest["hosts"]} == {"linux", "windows"}  # Windows went through pywinrm
    kinds = {h["scenario"]["kind"] for h in manifest["hosts"]}
    assert {"lockbit3", "lockbit2", "linux_locker", "persistence", "lookalikes", "sshd_stopped"} <= kinds
    # Faulty hosts are checked alongside the others: the whole run takes about one timeout, not one per fault.
    assert elapsed < 2 * TIMEOUT + 10
    assert code == 1  # some hosts could not be checked: scripts notice


def test_the_run_is_stored_with_evidence_history_and_one_audit_row(lab: Any, lab_run: tuple) -> None:
    cli, _, data, _, _ = lab_run
    con = sqlite3.connect(cli.db)
    assert con.execute("SELECT COUNT(*) FROM triage_run").fetchone()[0] >= 1
    run_id = data["run_id"]
    stored = dict(
        con.execute("SELECT host_name, verdict FROM triage_result WHERE run_id = ?", (run_id,)).fetchall()
    )
    assert stored == {r["host"]: r["verdict"] for r in data["results"]}
    counts = json.loads(con.execute("SELECT counts FROM triage_run WHERE id = ?", (run_id,)).fetchone()[0])
    assert counts == data["counts"] and sum(counts.values()) == len(lab.manifest["hosts"])
    audit = con.execute("SELECT command, details FROM audit_log WHERE command = 'triage'").fetchall()
    assert any(json.loads(details)["run_id"] == run_id for _, details in audit)
    infected = _untouched(lab, "lockbit3")[0]
    shown = cli.json("triage", "show", infected["name"])
    assert shown["latest"]["verdict"] == "infected"
    note = next(m for m in shown["latest"]["matches"] if m["check_id"] == "lockbit3-note-linux")
    assert infected["scenario"]["details"]["note_name"] in note["evidence"]
    longest = con.execute("SELECT MAX(LENGTH(evidence)) FROM check_match").fetchone()[0]
    assert longest <= 5000


def test_evidence_is_bounded_with_a_marker(lab: Any, cli: Cli, tmp_path: Path) -> None:
    host = _clean_linux(lab)[0]
    noisy = tmp_path / "noisy.yml"
    noisy.write_text(
        "pack: noisy\ntitle: A check with far too much to say\ntrusted_keys: []\nchecks:\n"
        "  - id: noisy\n    title: noisy\n    os: linux\n    severity: info\n"
        "    probe: {command: \"head -c 5000 /dev/zero | tr '\\\\0' x; echo; seq 1 300\"}\n"
    )
    result = cli("triage", "-i", str(lab.inventory), "-l", host["name"], "--pack", str(noisy), "--json")
    assert result.exit_code == 0, result.stderr
    match = next(m for m in json.loads(result.stdout)["results"][0]["matches"] if m["check_id"] == "noisy")
    text = match["evidence"]
    assert text.startswith("line=" + "x" * 300 + "[truncated]")
    assert "[truncated] " in text.splitlines()[-1] and "more item(s) not shown" in text
    assert len(text) <= 5000
    stored = (
        sqlite3.connect(cli.db)
        .execute("SELECT evidence FROM check_match WHERE check_id = 'noisy'")
        .fetchone()
    )
    assert stored == (text,)


def test_faults_get_distinct_reasons_within_the_timeout(lab: Any, cli: Cli, tmp_path: Path) -> None:
    """Wrong key, unknown host key, a command that hangs and a name that does not resolve, next to a
    healthy host: each gets its own reason, within the timeout, without holding the others up."""
    hosts = {kind: _untouched(lab, kind)[0] for kind in ("sshd_stopped", "sshd_down")}
    clean = _clean_linux(lab)
    wrong_key = tmp_path / "wrong_key"
    lab_keys.write_keypair(wrong_key, "not-authorized")
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    lab_dir = Path(lab.dir)
    common = f"-o UserKnownHostsFile={lab_dir / 'known_hosts'} -o StrictHostKeyChecking=yes"
    inventory = tmp_path / "faults.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "vars": {
                        "ansible_user": "root",
                        "ansible_ssh_private_key_file": str(lab_dir / "id_ed25519"),
                        "ansible_ssh_common_args": common,
                    },
                    "hosts": {
                        "healthy": {"ansible_host": clean[0]["address"]},
                        "hangs": {"ansible_host": clean[1]["address"]},
                        "wrongkey": {
                            "ansible_host": clean[2]["address"],
                            "ansible_ssh_private_key_file": str(wrong_key),
                        },
                        "newkey": {
                            "ansible_host": clean[3]["address"],
                            "ansible_ssh_common_args": f"-o UserKnownHostsFile={empty_known_hosts}",
                        },
                        "noname": {"ansible_host": "-no-such-host.invalid"},
                        "stopped": {"ansible_host": hosts["sshd_stopped"]["address"]},
                        "down": {"ansible_host": hosts["sshd_down"]["address"]},
                    },
                }
            }
        )
    )
    hang = tmp_path / "hang.yml"
    hang.write_text(
        "pack: hang\ntitle: A check that never ends on one host\nchecks:\n"
        "  - id: hang\n    title: hang\n    os: linux\n    severity: info\n"
        f"    probe: {{command: 'if [ \"$(hostname)\" = {clean[1]['name']} ]; then sleep 600; fi'}}\n"
    )
    started = time.monotonic()
    result = cli("triage", "-i", str(inventory), "--pack", str(hang), "--timeout", "4", "--json")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    got = {r["host"]: r for r in json.loads(result.stdout)["results"]}
    assert got["healthy"]["verdict"] == "clean"
    assert (got["hangs"]["verdict"], got["hangs"]["reason"]) == ("error", "command timed out after 4s")
    assert got["wrongkey"]["verdict"] == "error" and got["wrongkey"]["reason"].startswith("auth failure")
    assert got["newkey"]["verdict"] == "error"
    assert got["newkey"]["reason"] == f"host key unknown: {clean[3]['address']} is not in {empty_known_hosts}"
    assert got["noname"]["verdict"] == "unreachable" and got["noname"]["reason"].startswith("DNS failure")
    assert got["stopped"]["verdict"] == "unreachable" and got["stopped"]["reason"].startswith("timeout")
    assert got["down"]["verdict"] == "unreachable" and got["down"]["reason"].startswith("connection refused")
    assert len({r["reason"].split(":")[0] for r in got.values() if r["reason"]}) == 6
    assert all(r["duration_s"] <= 5 for r in got.values())
    assert elapsed < 12

    trusted = cli("triage", "-i", str(inventory), "-l", "newkey", "--trust-new-keys", "--json")
    assert trusted.exit_code == 0, trusted.stderr
    assert json.loads(trusted.stdout)["results"][0]["verdict"] == "clean"
    details = json.loads(
        sqlite3.connect(cli.db)
        .execute("SELECT details FROM audit_log ORDER BY id DESC LIMIT 1")
        .fetchone()[0]
    )
    assert details["trust_new_keys"] is True
    assert details["new_host_keys_accepted"]["newkey"].startswith("ssh-ed25519 SHA256:")


def test_no_inventory_secret_reaches_the_database(lab: Any, cli: Cli, tmp_path: Path) -> None:
    """A secret the inventory holds (here: the value of a become password that an attacker also wrote
    into the host's files) is scrubbed from evidence; the WinRM password never appears at all."""
    host = _untouched(lab, "lockbit3")[0]
    planted = host["scenario"]["details"][
        "extension"
    ]  # appears in the notes and renamed files triage reports
    extra = tmp_path / "secrets.yml"
    extra.write_text(json.dumps({"all": {"hosts": {host["name"]: {"ansible_become_password": planted}}}}))
    windows = [h["name"] for h in lab.manifest["hosts"] if h["os"] == "windows"]
    result = cli(
        "triage",
        "-i",
        str(lab.inventory),
        "-i",
        str(extra),
        "-l",
        ":".join([host["name"], *windows]),
        "--json",
        env=lab.env(),
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["counts"]["infected"] >= 1
    blob = cli.db.read_bytes() + b"".join(p.read_bytes() for p in cli.db.parent.glob("recovery.db-*"))
    assert planted.encode() not in blob
    assert (lab.dir / "winrm.env").read_text().strip().partition("=")[2].encode() not in blob
    shown = cli.json("triage", "show", host["name"])
    assert "***" in json.dumps(shown)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "winhost.lab")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def _tls_front(address: str, backend: tuple[str, int], cert: Path, key: Path) -> tuple[int, Any]:
    """HTTPS in front of a WinRM stand-in (which speaks HTTP): a real TLS handshake for pywinrm."""
    import socket
    import ssl
    import threading

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server((address, 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def pump(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                raw.settimeout(10)
                client = context.wrap_socket(raw, server_side=True)
                client.settimeout(None)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            upstream = socket.create_connection(backend)
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], lambda: (stop.set(), listener.close())


def test_winrm_https_is_validated_by_default_and_bad_passwords_are_auth_failures(
    lab: Any, cli: Cli, tmp_path: Path
) -> None:
    win = next(
        h for h in load_manifest(lab.dir)["hosts"] if h["os"] == "windows" and _expected(h)[0] == "clean"
    )
    cert, key = _self_signed(tmp_path)
    port, stop = _tls_front("127.71.201.1", (win["address"], win["port"]), cert, key)
    port2, stop2 = _tls_front("127.71.201.2", (win["address"], win["port"]), cert, key)
    try:
        inventory = tmp_path / "winrm.yml"
        common = {
            "ansible_connection": "winrm",
            "ansible_port": port,
            "ansible_winrm_transport": "ntlm",
            "ansible_user": "Administrator",
            "ansible_password": "{{ lookup('env', 'LAB_WINRM_PASSWORD') }}",
        }
        inventory.write_text(
            json.dumps(
                {
                    "windows": {
                        "hosts": {
                            "validated": {"ansible_host": "127.71.201.1", **common},
                            "trusted": {
                                "ansible_host": "127.71.201.2",
                                **common,
                                "ansible_port": port2,
                                "ansible_winrm_server_cert_validation": "ignore",
                                "ansible_winrm_path": "/wsman/",
                            },
                            "wrongpw": {
                                "ansible_host": win["address"],
                                **common,
                                "ansible_port": win["port"],
                                "ansible_winrm_scheme": "http",
                                "ansible_password": "not-the-password",
                            },
                        }
                    }
                }
            )
        )
        result = cli("triage", "-i", str(inventory), "--timeout", "8", "--json", env=lab.env())
    finally:
        stop()
        stop2()
    assert result.exit_code == 1, result.stderr
    got = {r["host"]: r for r in json.loads(result.stdout)["results"]}
    assert got["validated"]["verdict"] == "error"
    assert got["validated"]["reason"].startswith("TLS certificate not trusted for https://127.71.201.1:")
    assert got["trusted"]["verdict"] == "clean", got["trusted"]
    assert got["wrongpw"]["verdict"] == "error" and got["wrongpw"]["reason"].startswith("auth failure")
    assert "not-the-password" not in cli.db.read_bytes().decode("latin-1")


def test_history_is_kept_and_shown_on_request(lab: Any, cli: Cli) -> None:
    host = _untouched(lab, "persistence")[0]
    first = cli("triage", "-i", str(lab.inventory), "-l", host["name"])
    assert first.exit_code == 0, first.stderr
    assert "hosts that are not clean" in first.stdout and host["name"] in first.stdout
    assert "infected" in first.stdout and "hidden-binary-in-temp" in first.stdout
    second = cli("triage", "-i", str(lab.inventory), "-l", host["name"], "--json")
    assert second.exit_code == 0, second.stderr
    latest = cli.json("triage", "show", host["name"])
    assert latest["history"] == [] and latest["latest"]["verdict"] == "infected"
    both = cli.json("triage", "show", host["name"], "--history", "5")
    assert [r["verdict"] for r in both["history"]] == ["infected"]
    assert both["history"][0]["run_id"] < both["latest"]["run_id"]
    text = cli("triage", "show", host["name"], "--history", "1")
    assert text.exit_code == 0 and "earlier runs" in text.stdout and "hidden-binary-in-temp" in text.stdout


def test_become_runs_the_script_under_sudo(lab: Any, cli: Cli, tmp_path: Path) -> None:
    if shutil.which("sudo") is None:
        pytest.skip("sudo is not installed (Debian package sudo)")
    infected = _untouched(lab, "persistence")[0]
    clean = _clean_linux(lab)[0]
    extra = tmp_path / "become.yml"
    extra.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {
                        infected["name"]: {"ansible_become": True},
                        clean["name"]: {"ansible_become": "yes", "ansible_become_method": "su"},
                    }
                }
            }
        )
    )
    result = cli(
        "triage",
        "-i",
        str(lab.inventory),
        "-i",
        str(extra),
        "-l",
        f"{infected['name']}:{clean['name']}",
        "--json",
    )
    got = {r["host"]: r for r in json.loads(result.stdout)["results"]}
    assert got[infected["name"]]["verdict"] == "infected"
    assert got[clean["name"]]["reason"] == "command failed: become method 'su' is not supported (use sudo)"


def test_an_interrupted_run_keeps_what_is_done_and_reads_as_incomplete(lab: Any, tmp_path: Path) -> None:
    from orchestrator import inventory, triage
    from orchestrator.store import Store
    from orchestrator.triage import packs

    inv = inventory.load([str(lab.inventory)])
    reachable = {
        h["name"] for h in load_manifest(lab.dir)["hosts"] if _expected(h)[0] not in ("unreachable", "error")
    }
    hosts = [h for h in inv.hosts.values() if h.os == "linux" and h.name in reachable][:6]
    store = Store.open(str(tmp_path / "recovery.db"))
    seen: list[str] = []

    def interrupt(result: Any) -> None:
        seen.append(result.host)
        if len(seen) == 2:
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        triage.run(
            store,
            "tester",
            hosts,
            packs.load(),
            triage.Settings(forks=2, timeout=TIMEOUT),
            on_result=interrupt,
        )
    assert time.monotonic() - started < TIMEOUT + 5
    store.close()
    con = sqlite3.connect(tmp_path / "recovery.db")
    assert con.execute("SELECT finished_at FROM triage_run").fetchall() == [(None,)]
    assert sorted(r for (r,) in con.execute("SELECT host_name FROM triage_result")) == sorted(seen)
    (details,) = con.execute("SELECT details FROM audit_log WHERE command = 'triage'").fetchone()
    assert json.loads(details)["interrupted"] is True


def test_evidence_store_keeps_notes_on_purpose_and_stays_clean(lab: Any, tmp_path: Path) -> None:
    """The evidence store holds ransom notes and encrypted samples after `collect`: its
    `recovery_triage_exclude` keeps triage out of them, and only out of them."""
    evid = next(h for h in load_manifest(lab.dir)["hosts"] if h["group"] == "evidence_store")
    planted = lab.dir / "hosts" / evid["name"] / "srv" / "evidence" / "wsed-02" / "pack"
    planted.mkdir(parents=True, exist_ok=True)
    for name in ("Restore-My-Files.txt", "HLJkNskOq.README.txt"):
        (planted / name).write_text("All your important files are stolen and encrypted!\n")
    try:
        cli = Cli(tmp_path / "recovery.db")
        _, data, _ = _run(cli, lab, "-l", evid["name"])
        assert data["results"][0]["verdict"] == "clean", data["results"][0]
        override = tmp_path / "override.yml"
        override.write_text(f"all:\n  hosts:\n    {evid['name']}:\n      recovery_triage_exclude: []\n")
        _, data, _ = _run(cli, lab, "-i", str(override), "-l", evid["name"])
        assert data["results"][0]["verdict"] == "infected", data["results"][0]
    finally:
        shutil.rmtree(planted.parent)
