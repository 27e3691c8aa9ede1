"""Check packs: validation with file and line, the rendered scripts run for real, matching, evidence.

The Linux script is run here by the real /bin/sh (and bash, and busybox sh when installed) against a
temporary tree, with a pack whose roots point into it: the same script triage sends over SSH.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.triage import evidence, packs, scripts
from tests.conftest import Cli

SHELLS = [s for s in ("/bin/sh", "/bin/bash") if os.path.exists(s)]


def _pack(tmp_path: Path, text: str, name: str = "incident.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# --- Shipped packs -------------------------------------------------------------------------------


def test_shipped_packs_cover_the_primer_and_render_valid_scripts() -> None:
    loaded = packs.load()
    ids = {c.id for p in loaded for c in p.checks}
    assert {"linux-lockbit", "windows-lockbit", "generic-ransomware"} <= {p.id for p in loaded}
    for needed in (
        "lockbit3-note-linux",
        "lockbit2-note-linux",
        "lockbit-linux-locker-binary",
        "mass-rename-unreadable",
        "hidden-binary-in-temp",
        "cron-runs-from-temp",
        "systemd-unit-runs-from-temp",
        "unexpected-authorized-key",
        "lockbit3-note-windows",
        "lockbit2-run-key",
        "security-log-cleared",
        "backup-services-disabled",
        "scheduled-task-runs-from-user-writable-dir",
    ):
        assert needed in ids
    linux = scripts.render("linux", packs.checks_for(loaded, "linux"))
    for shell in SHELLS:
        subprocess.run([shell, "-n"], input=linux.text, text=True, check=True)
    # One tree walk for all the checks that look in the same places: the data roots are walked once.
    assert linux.text.count(' find "$@"') == len([g for g in linux.groups if g.startswith("walk-")])
    assert (
        sum("/srv" in line and "find" not in line and "for r in" in line for line in linux.text.splitlines())
        == 1
    )
    windows = scripts.render("windows", packs.checks_for(loaded, "windows"))
    assert windows.text.splitlines()[1].startswith("# orchestrator-probes: ")


# --- Errors name the file and the line -------------------------------------------------------------

HEADER = """\
pack: incident
title: Our incident
checks:
  - id: our-note
    title: The note we saw
    os: linux
    severity: infected
"""


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        (
            "    probe:\n      files: {roots: [/srv], patterns: ['x.txt']\n",
            10,
            "invalid YAML: did not find expected ',' or '}' (while parsing a flow mapping on line 9)",
        ),
        ("    serverity: high\n    probe: {command: id}\n", 8, "unknown key 'serverity'"),
        (
            "    probe:\n      registry: {path: 'HKLM\\\\X'}\n",
            9,
            "probe kind 'registry' is not available on linux",
        ),
        (
            "    probe: {files: {roots: [/srv], patterns: ['*.txt']}}\n    match:\n      where: {name: '([a-z'}\n",
            10,
            "invalid regular expression",
        ),
        (
            "    probe: {files: {roots: [/srv], patterns: ['*.txt']}}\n    match:\n      where: {nmae: 'x'}\n",
            10,
            "unknown field(s) nmae",
        ),
        (
            "    probe:\n      files:\n        roots: [/srv]\n        patterns: [a]\n        max_depth: deep\n",
            12,
            "max_depth",
        ),
        ("    probe: {command: id}\n    probe: {command: id}\n", 9, "duplicate key 'probe'"),
        ("    probe:\n      files: {roots: [srv], patterns: [a]}\n", 9, "must be an absolute path"),
    ],
)
def test_pack_errors_name_file_line_and_reason(tmp_path: Path, body: str, line: int, reason: str) -> None:
    path = _pack(tmp_path, HEADER + body)
    with pytest.raises(packs.PackError) as caught:
        packs.load([path])
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert reason in message


def test_missing_os_and_duplicate_ids_are_refused_with_their_line(tmp_path: Path) -> None:
    no_os = _pack(tmp_path, HEADER.replace("    os: linux\n", "") + "    probe: {command: id}\n", "a.yml")
    with pytest.raises(
        packs.PackError, match=rf"^{no_os}:4: checks\[our-note\]\.os: missing required key 'os'"
    ):
        packs.load([no_os])
    reused = _pack(
        tmp_path,
        HEADER.replace("our-note", "lockbit3-note-linux") + "    probe: {command: id}\n",
        "b.yml",
    )
    with pytest.raises(
        packs.PackError, match=rf"^{reused}:4: check id 'lockbit3-note-linux' is already defined in "
    ):
        packs.load([reused])


def test_a_bad_pack_stops_the_run_before_any_connection(cli: Cli, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.71.200.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    web1: {{ansible_host: 127.71.200.1, ansible_port: {port}}}\n")
    bad = _pack(tmp_path, HEADER + "    probe: {files: {roots: [/srv], patterns: []}}\n")
    result = cli("triage", "-i", str(inventory), "--pack", str(bad), "--timeout", "3")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}:8: checks[our-note].probe.files.patterns:")
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    assert not cli.db.exists()


def test_triage_packs_lists_and_validates(cli: Cli, tmp_path: Path) -> None:
    extra = _pack(tmp_path, HEADER + "    probe: {files: {roots: ['@data'], patterns: ['*.HLJkNskOq']}}\n")
    data = cli.json("triage", "packs", "--pack", str(extra))
    mine = next(p for p in data["packs"] if p["id"] == "incident")
    assert mine["checks"] == [
        {
            "id": "our-note",
            "title": "The note we saw",
            "os": "linux",
            "severity": "infected",
            "probe": "files",
        }
    ]
    script = cli("triage", "script", "--os", "linux", "--pack", str(extra))
    assert script.exit_code == 0 and "HLJkNskOq" in script.stdout


# --- The Linux script on a real tree ---------------------------------------------------------------

ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    data = root / "srv" / "data"
    data.mkdir(parents=True)
    for i in range(6):
        (data / f"report{i}.docx.HLJkNskOq").write_bytes(os.urandom(5000))
    (data / "HLJkNskOq.README.txt").write_text("Your data is stolen and encrypted\n")
    (data / "README.txt").write_text("Shared data of this server.\n")  # look-alike
    (data / "project.README.txt").write_text("Release notes.\n")  # look-alike: not a 9-character id
    (data / "~$budget.docx").write_text("owner\n")  # office lock file
    (data / "backup.tar.gz").write_bytes(os.urandom(3000))
    temp = root / "tmp"
    temp.mkdir()
    dropped = temp / ".cache-upd"
    dropped.write_bytes(ELF + os.urandom(300) + b"\x00LockBit Linux/ESXi locker\x00" + os.urandom(50))
    dropped.chmod(0o755)
    script_like = temp / "cleanup.sh"
    script_like.write_text("#!/bin/sh\nrm -f /tmp/x\n")
    script_like.chmod(0o755)
    for i in range(130):
        (temp / f"junk{i}.bin").write_bytes(ELF)
        (temp / f"junk{i}.bin").chmod(0o755)
    ssh = root / "home" / "ann" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGv9YhL0dQmGkGZVKj5pS1ZC4mSlq0Uy+pEwJ7fJRhZb root@kali\n"
        "# a comment line\n"
    )
    os.utime(ssh / "authorized_keys", (1_700_000_000, 1_700_000_000))
    cron = root / "cron.d"
    cron.mkdir()
    (cron / "php-sessions").write_text("*/7 * * * * root /tmp/.cache-upd >/dev/null 2>&1\n")
    (cron / "logrotate-app").write_text("25 6 * * * root /usr/sbin/logrotate /etc/logrotate.conf\n")
    return root


def _tree_pack(tmp_path: Path, root: Path) -> Path:
    return _pack(
        tmp_path,
        f"""
        pack: tree
        title: Checks rooted in a test tree
        checks:
          - id: t-note
            title: note
            os: linux
            severity: infected
            probe: {{files: {{roots: ["{root}/srv"], patterns: ["*.README.txt"]}}}}
            match: {{where: {{name: '^[A-Za-z0-9]{{9}}\\.README\\.txt$'}}}}
          - id: t-renames
            title: renames
            os: linux
            severity: infected
            probe: {{extensions: {{roots: ["{root}/srv"], min_files: 3, data_extensions: [docx, pdf]}}}}
            match: {{at_least: {{data_files: 5, entropy: 7.0}}}}
          - id: t-locker
            title: locker
            os: linux
            severity: infected
            probe:
              files: {{roots: ["{root}/tmp"], patterns: ["*"], executable: true, hash: true, magic: true,
                      strings: ["LockBit Linux/ESXi locker"], max_results: 100}}
            match: {{where: {{strings: LockBit}}}}
          - id: t-keys
            title: keys
            os: linux
            severity: suspicious
            probe: {{lines: {{paths: ["{root}/home/*/.ssh/authorized_keys"]}}}}
            match: {{where: {{fingerprint: '^SHA256:'}}}}
          - id: t-cron
            title: cron
            os: linux
            severity: suspicious
            probe: {{lines: {{paths: ["{root}/cron.d/*"]}}}}
            match: {{where: {{line: '(^|\\s)/tmp/'}}}}
          - id: t-command
            title: command
            os: linux
            severity: info
            probe: {{command: "printf 'one\\\\ntwo\\\\n'"}}
        """,
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_linux_script_reads_a_real_tree(tmp_path: Path, tree: Path, shell: str) -> None:
    loaded = packs.load([_tree_pack(tmp_path, tree)], shipped=False)
    checks = packs.checks_for(loaded, "linux")
    script = scripts.render("linux", checks)
    proc = subprocess.run([shell, "-c", script.text], capture_output=True, text=True, timeout=60, check=True)
    output = scripts.parse(script, proc.stdout)
    assert output.finished and not output.failures()
    found = {c.id: packs.evaluate(c, output.results[c.probe_id].items) for c in checks}

    assert [i["name"] for i in found["t-note"]] == ["HLJkNskOq.README.txt"]  # look-alikes left out
    (renamed,) = found["t-renames"]
    assert (renamed["ext"], renamed["count"], renamed["data_files"]) == ("HLJkNskOq", 6, 6)
    assert renamed["entropy"] > 7.5
    (locker,) = found["t-locker"]
    dropped = tree / "tmp" / ".cache-upd"
    assert locker["path"] == str(dropped)
    assert locker["sha256"] == hashlib.sha256(dropped.read_bytes()).hexdigest()
    assert locker["magic"] == "7f454c46" and locker["strings"] == ["LockBit Linux/ESXi locker"]
    temp = output.results[checks[2].probe_id]
    assert temp.truncated and len(temp.items) == 100  # bounded, and says so
    (key,) = found["t-keys"]
    assert key["key_comment"] == "root@kali" and key["mtime"] == 1_700_000_000
    blob = base64.b64decode(key["line"].split()[1])
    assert key["fingerprint"] == "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip(
        "="
    )
    assert [i["path"].rsplit("/", 1)[1] for i in found["t-cron"]] == ["php-sessions"]
    assert [i["line"] for i in found["t-command"]] == ["one", "two"]


def test_output_from_an_interrupted_script_is_partial_never_clean(tmp_path: Path, tree: Path) -> None:
    loaded = packs.load([_tree_pack(tmp_path, tree)], shipped=False)
    script = scripts.render("linux", packs.checks_for(loaded, "linux"))
    full = subprocess.run(["/bin/sh", "-c", script.text], capture_output=True, text=True, check=True).stdout
    cut = full[: full.index(f"{script.nonce} B lines")]
    output = scripts.parse(script, cut)
    assert not output.finished
    assert any("stopped before" in f for f in output.failures())
    forged = scripts.parse(script, full.replace(script.nonce, "orch0000000000000000"))
    assert not forged.finished and all(not r.items for r in forged.results.values())


# --- Matching and evidence -------------------------------------------------------------------------


def _check(match: dict, kind: str = "registry") -> packs.AnyCheck:
    return packs.WindowsCheck.model_validate(
        {
            "id": "c",
            "title": "t",
            "os": "windows",
            "severity": "suspicious",
            "probe": {kind: {"path": "HKLM\\X"}} if kind == "registry" else {kind: {}},
            "match": match,
        }
    )


def test_match_rules() -> None:
    items = [
        {"path": "HKLM\\X", "name": "AutoAdminLogon", "value": "1"},
        {"path": "HKLM\\X", "name": "Shell", "value": "explorer.exe"},
    ]
    assert packs.evaluate(_check({"where": {"value": "^1$"}}), items) == [items[0]]
    assert packs.evaluate(_check({"unless": {"name": "Shell"}, "min_count": 2}), items) is None
    assert packs.evaluate(_check({"contains": {"value": ["EXPLORER"]}}), items) == [items[1]]
    assert packs.evaluate(_check({"any_of": {"name": ["shell", "userinit"]}}), items) == [items[1]]
    assert packs.evaluate(_check({"absent": True}, "shadow_copies"), []) == []
    assert packs.evaluate(_check({"absent": True}, "shadow_copies"), [{"id": "{1}"}]) is None


@settings(max_examples=60, deadline=None)
@given(
    secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=30),
    lines=st.lists(st.text(max_size=600), min_size=1, max_size=80),
)
def test_evidence_is_bounded_and_never_holds_a_secret(secret: str, lines: list[str]) -> None:
    items = [{"path": f"/srv/{i}", "line": f"{line}{secret}{line}"} for i, line in enumerate(lines)]
    text = evidence.render(items, evidence.Scrubber({secret, "other-secret"}))
    assert secret not in text
    assert len(text) <= evidence.MAX_TOTAL + 2 * evidence.MAX_FIELD + 100
    if len(items) > evidence.MAX_ITEMS:
        assert evidence.TRUNCATED in text


def test_busybox_sh_reads_the_same_tree(tmp_path: Path, tree: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox not installed")
    loaded = packs.load([_tree_pack(tmp_path, tree)], shipped=False)
    checks = packs.checks_for(loaded, "linux")
    script = scripts.render("linux", checks)
    proc = subprocess.run(
        [busybox, "sh", "-c", script.text], capture_output=True, text=True, timeout=60, check=True
    )
    output = scripts.parse(script, proc.stdout)
    assert output.finished
    note = next(c for c in checks if c.id == "t-note")
    assert [i["name"] for i in packs.evaluate(note, output.results[note.probe_id].items)] == [
        "HLJkNskOq.README.txt"
    ]


def test_a_pack_directory_adds_every_pack_in_it(tmp_path: Path) -> None:
    directory = tmp_path / "incident"
    directory.mkdir()
    _pack(directory, HEADER + "    probe: {files: {roots: ['@data'], patterns: ['*.HLJkNskOq']}}\n", "a.yml")
    _pack(
        directory,
        HEADER.replace("incident", "incident-b").replace("our-note", "our-key")
        + "    probe: {command: id}\n",
        "b.yaml",
    )
    loaded = packs.load([directory])
    assert {"incident", "incident-b"} <= {p.id for p in loaded}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(packs.PackError, match=r"no \*\.yml pack in this directory"):
        packs.load([empty])
    with pytest.raises(packs.PackError, match="no such pack file or directory"):
        packs.load([tmp_path / "missing.yml"])
