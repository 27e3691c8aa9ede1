"""Hostile hosts on the local lab, through the real CLI: what a compromised host returns is data, never a
template, a local path, markup or terminal control.

A lab of its own (the run rebuilds its hosts) with the attacks of issue 13 planted before the triage:
- a cron line and file names holding Jinja2 template syntax whose `lookup('pipe', ...)` would create a
  canary file on the controller if any playbook rendered host data as a template;
- file names that are rich markup (a directory `[` holding `]HOW_TO_DECRYPT...`, `[/]`), and names with
  terminal escapes: an OSC 8 hyperlink, an OSC 0 window title, CSI sequences, C1 CSI (as UTF-8 and as a
  raw byte), BEL and DEL;
- a host whose Python interpreter lies: its `find` results name a file with a `..` path that, joined to
  the controller's staging folder, lands on a canary path outside it (the real ansible-playbook runs
  that interpreter, over SSH, on the host);
- a host that writes markup and escape sequences on stderr (its ~/.bashrc) when the validation's triage
  runs, failing it.

Every command (triage, triage show, plan, approve, run --all, status, status HOST, report in every
format, plan export, audit show/verify) must exit 0 or 1 with no control character in its output; no
canary may appear; CSV cells are neutralised.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlmodel import select

from orchestrator.store import Store
from orchestrator.store.models import EvidenceItem
from tests.conftest import Cli, needs_lab

pytestmark = [pytest.mark.lab, needs_lab]

# hosts=5, seed=3: dns-01 (lockbit2) and ehrdb-01 (lockbit3) are rebuilt; ehrapp-01 (a changed host key)
# is reimaged first, so it is clean and takes the verify path.
MARKUP_HOST, LIAR_HOST, STDERR_HOST = "dns-01", "ehrdb-01", "ehrapp-01"
CONTROL = {*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)}
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

LIAR = """#!/usr/bin/python3
# The host's "Python": runs the real one and lies in the ransom-note search results while the host is
# still compromised (its own /opt holds the mark; a wipe removes it).
import hashlib, json, os, subprocess, sys
proc = subprocess.run(["/usr/bin/python3", *sys.argv[1:]], input=sys.stdin.buffer.read(), capture_output=True)
out = proc.stdout
if os.path.exists("/opt/.liar-armed"):
    try:
        result = json.loads(out)
    except ValueError:
        result = None
    args = (result or {}).get("invocation", {}).get("module_args", {}) if isinstance(result, dict) else {}
    if isinstance(result, dict) and "*.README.txt" in (args.get("patterns") or []):
        lie = "/opt/x" + "/.." * 40 + TARGET
        data = open(lie, "rb").read()
        result["files"].append({"path": lie, "checksum": hashlib.sha256(data).hexdigest(), "size": len(data),
                                "isreg": True, "mode": "0644", "xusr": False})
        out = json.dumps(result).encode()
sys.stdout.buffer.write(out)
sys.stderr.buffer.write(proc.stderr)
sys.exit(proc.returncode)
"""

BASHRC = r"""
case "$BASH_EXECUTION_STRING" in
  *"&& sleep 0"*) ;;  # Ansible's modules: left alone
  *) printf '[/] [bold]x[/bold] \033]0;ALL HOSTS CLEAN\007\033[2J\033[8mhidden\n' >&2; exit 1 ;;
esac
"""


def _controls(text: str) -> list[str]:
    return sorted({f"U+{ord(c):04X}" for c in text if ord(c) in CONTROL or 0xD800 <= ord(c) <= 0xDFFF})


def _plant(lab: Path, canary: str, target: Path, liar: Path) -> None:
    """Template syntax, markup and escapes on MARKUP_HOST; the lying interpreter on LIAR_HOST."""
    host = lab / "hosts" / MARKUP_HOST
    template = "{{ lookup('pipe', 'cd; touch " + canary + "') }}"
    (host / "etc" / "cron.d" / "upd").write_text(f"*/5 * * * * root /tmp/.cache/upd {template}\n")
    srv = host / "srv"
    (srv / "[").mkdir()
    names = [
        f"DECRYPT{template}.README.txt",
        "DECRYPT{% raw %}x{{ 7*7 }}.README.txt",
        "]HOW_TO_DECRYPT.README.txt",  # in the directory "[": the path reads "[/]HOW_TO_DECRYPT..."
        "DECRYPT[bold red]FAKE[link=mailto:pay@evil.example]click.README.txt",
        "\x1b]8;;mailto:pay@evil.example\x07Decryptor\x1b]8;;\x07.README.txt",
        "\x1b]0;ALL HOSTS CLEAN\x07DECRYPT.README.txt",
        "\x1b[2J\x1b[8mDECRYPT.README.txt",
        "\u009b31mC1-CSI\x07bell\x7fdel-DECRYPT.README.txt",
    ]
    for name in names:
        directory = srv / "[" if name.startswith("]") else srv
        (directory / name).write_text("All your files are encrypted.\n")
    with open(os.fsencode(srv) + b"/raw\x9b2J-DECRYPT.README.txt", "wb") as f:  # not UTF-8: a raw C1 CSI byte
        f.write(b"All your files are encrypted.\n")
    (host / "tmp" / ".cache").mkdir(exist_ok=True)
    (host / "tmp" / ".cache" / "upd").write_text("#!/bin/sh\n")

    liar_host = lab / "hosts" / LIAR_HOST
    (liar_host / "opt" / "x").mkdir(parents=True, exist_ok=True)
    (liar_host / "opt" / ".liar-armed").write_text("")
    on_host = liar_host / "tmp" / target.relative_to("/tmp")
    on_host.parent.mkdir(parents=True, exist_ok=True)
    on_host.write_text("written where the host chose\n")
    liar.write_text(LIAR.replace("TARGET", repr(str(target))))
    liar.chmod(0o755)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory):
    from orchestrator_lab import LabConfig, down, free_net, reimage, up

    base = tmp_path_factory.mktemp("hostile")
    directory = base / "lab"
    up(LabConfig(dir=directory, hosts=5, seed=3, net=free_net(), infected=0.5))
    # The lying interpreter must outlive the host's reimage (Ansible needs an interpreter after it): it
    # lives where every lab host sees the controller's files, outside the lab's and the hosts' folders.
    shared = Path(tempfile.mkdtemp(prefix="orchestrator-test-liar-", dir="/var/cache"))
    try:
        reimage(directory, STDERR_HOST)
        yield base, directory, shared
    finally:
        down(directory)
        shutil.rmtree(shared, ignore_errors=True)


def test_hostile_hosts_stay_data(hostile: tuple[Path, Path, Path]) -> None:
    base, lab, shared = hostile
    canary = f"orchestrator-canary-{uuid.uuid4().hex}"
    home_canary = Path.home() / canary
    target = base / "escaped-by-fetch"
    liar = shared / "python3"
    _plant(lab, canary, target, liar)
    overlay = base / "liar.yml"
    overlay.write_text(json.dumps({"all": {"hosts": {LIAR_HOST: {"ansible_python_interpreter": str(liar)}}}}))
    inv = ["-i", str(lab / "inventory"), "-i", str(overlay)]
    cli = Cli(base / "recovery.db")
    outputs: dict[str, str] = {}

    def run(*args: str, codes: tuple[int, ...] = (0, 1)) -> str:
        result = cli(*args)
        label = " ".join(args)
        text = result.stdout + result.stderr
        outputs[label] = text
        assert result.exit_code in codes, f"{label}: exit {result.exit_code}\n{text}"
        assert not _controls(text), f"{label}: control characters {_controls(text)} in\n{text}"
        return result.stdout

    try:
        run("triage", *inv, "--timeout", "20")
        shown = run("triage", "show", MARKUP_HOST)
        assert "HOW_TO_DECRYPT" in shown and "lookup" in shown and "\u241b" in shown
        evidence = "\n".join(
            m["evidence"]
            for m in json.loads(run("triage", "show", MARKUP_HOST, "--json"))["latest"]["matches"]
        )
        for planted in (
            "[/]HOW_TO_DECRYPT",
            "{{ lookup('pipe'",
            "\x1b]8;;mailto",
            "\x1b]0;ALL HOSTS",
            "\x9b31m",
        ):
            assert planted in evidence, f"{planted!r} did not reach the triage evidence:\n{evidence}"
        run("status", MARKUP_HOST)
        run("plan", *inv, codes=(0,))
        run("plan", "show")
        run("plan", "approve", "--by", "tester", codes=(0,))
        (lab / "hosts" / STDERR_HOST / "root" / ".bashrc").write_text(BASHRC)

        runs = base / "runs"
        out = run("run", *inv, "--all", "--yes", "--runs-dir", str(runs), "--max-fail-percentage", "100")
        ran = outputs[next(k for k in outputs if k.startswith("run "))]
        # The stderr attack happened and was shown as text, and the run went on to its table.
        assert "[/]" in ran and "\u241b]0;ALL HOSTS CLEAN" in ran.replace("\n", ""), ran
        assert "artifacts:" in ran and "plan " in out

        for args in (
            ("status",),
            ("status", "--json"),
            ("status", MARKUP_HOST),
            ("status", LIAR_HOST),
            ("status", STDERR_HOST),
            ("status", LIAR_HOST, "--json"),
            ("audit", "show", "--last", "0"),
            ("audit", "show", "--json"),
            ("audit", "verify"),
            ("triage", "show", STDERR_HOST),
            ("plan", "export", "--format", "csv"),
            ("plan", "export", "--format", "json"),
        ):
            run(*args)
        for fmt in ("html", "csv", "json"):
            report = base / f"report.{fmt}"
            run("report", "-f", fmt, "-o", str(report))
            text = report.read_text(encoding="utf-8", errors="surrogateescape")
            assert not _controls(text), f"report {fmt}: {_controls(text)}"
            if fmt == "csv":
                for row in csv.reader(io.StringIO(text)):
                    assert not any(cell.startswith(CSV_TRIGGERS) for cell in row), row
        exported = outputs["plan export --format csv"]
        for row in csv.reader(io.StringIO(exported)):
            assert not any(cell.startswith(CSV_TRIGGERS) for cell in row), row

        # Nothing ran or was written on the controller outside its folders.
        assert not home_canary.exists(), "a host's template syntax ran on the controller"
        assert not target.exists(), "a host's lying path chose where a file was written on the controller"
        leaked = [p for p in runs.rglob("*") if canary in p.name]
        assert not leaked, leaked
        # The lie went through the real fetch: the file is stored under our index name, its path is data.
        with Store.open(str(cli.db)).read() as s:
            items = list(s.exec(select(EvidenceItem).where(EvidenceItem.host_name == LIAR_HOST)))
        lied = [i for i in items if i.path.endswith(str(target))]
        assert lied and "/files/" in (lied[0].stored_at or ""), [i.path for i in items]
        assert lied[0].sha256 == hashlib.sha256(b"written where the host chose\n").hexdigest()
        with Store.open(str(cli.db)).read() as s:
            markup_items = [
                i.path for i in s.exec(select(EvidenceItem).where(EvidenceItem.host_name == MARKUP_HOST))
            ]
        assert any("{{ lookup" in p for p in markup_items), markup_items
    finally:
        home_canary.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
