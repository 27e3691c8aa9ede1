"""CLI conventions that hold for every command, checked on the real CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from orchestrator.cli import main
from scripts import cli_reference
from tests.conftest import HOSPITAL, ROOT, Cli


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for path, command in _commands(main):
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, path
        if not isinstance(command, click.Group) or not path:
            assert "Example" in result.output, f"orchestrator {' '.join(path)} --help has no example"


def test_readme_command_reference_matches_help() -> None:
    assert cli_reference.current_section() == cli_reference.render().strip("\n"), (
        "docs/commands.md is out of date: run `make docs`"
    )


def test_every_read_command_offers_json() -> None:
    for path, command in _commands(main):
        if (
            path
            and path[-1] in ("show", "check", "status", "diff", "verify")
            and not isinstance(command, click.Group)
        ):
            assert any(p.name == "as_json" for p in command.params), f"{' '.join(path)} lacks --json"


def test_errors_are_one_line_and_debug_shows_the_traceback(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("all:\n  hosts:\n    a: {ansible_host: 127.9.9.1, recovery_tier: nine}\n")
    result = cli("inventory", "sync", "-i", str(bad))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    debug = cli("--debug", "inventory", "sync", "-i", str(bad))
    assert debug.exit_code == 2
    assert "Traceback" in debug.stderr and "InventoryError" in debug.stderr


def test_state_changing_command_writes_one_audit_row(cli: Cli) -> None:
    assert cli("--operator", "alice", "inventory", "sync", "-i", str(HOSPITAL), "-l", "tier0").exit_code == 0
    con = sqlite3.connect(cli.db)
    rows = con.execute("SELECT operator, command, args, details FROM audit_log").fetchall()
    assert len(rows) == 1
    operator, command, args, details = rows[0]
    assert (operator, command) == ("alice", "inventory sync")
    assert json.loads(args)["limit"] == "tier0"
    assert json.loads(details) == {"added": 19, "updated": 0}
    assert con.execute("SELECT COUNT(*) FROM host").fetchone()[0] == 19


def test_read_commands_do_not_create_the_database(cli: Cli) -> None:
    assert cli("inventory", "show", "-i", str(HOSPITAL), "-l", "dc-n01").exit_code == 0
    assert cli("inventory", "check", "-i", str(HOSPITAL)).exit_code == 0
    assert not cli.db.exists()


def test_completion_script() -> None:
    result = CliRunner().invoke(main, ["completion", "bash"])
    assert result.exit_code == 0
    assert "_ORCHESTRATOR_COMPLETE" in result.output


def test_real_subprocess_console_script(tmp_path: Path) -> None:
    """The installed console script, as an operator runs it: env vars for db, operator and inventory."""
    exe = Path(sys.executable).with_name("orchestrator")
    db = tmp_path / "state.db"
    env = {
        **os.environ,
        "ORCHESTRATOR_DB": str(db),
        "ORCHESTRATOR_OPERATOR": "bob",
        "ORCHESTRATOR_INVENTORY": str(HOSPITAL),
    }
    proc = subprocess.run(
        [str(exe), "inventory", "sync", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"hosts": 1850, "added": 1850, "updated": 0}
    con = sqlite3.connect(db)
    assert con.execute("SELECT operator FROM audit_log").fetchall() == [("bob",)]
    bad = subprocess.run(
        [str(exe), "inventory", "check", "-i", str(tmp_path / "missing.ini")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr == f"error: {tmp_path / 'missing.ini'}: no such inventory file or directory\n"


def test_the_lab_command_needs_the_lab_only_when_used(tmp_path: Path) -> None:
    """`orchestrator_lab` is the rehearsal kit beside the product: in a process where it cannot be
    imported, `--help` still works and a lab command fails in one line, exit 2, writing nothing; the
    CLI's lab defaults are the lab's own."""
    import orchestrator_lab.settings
    from orchestrator.cli import lab_cmd

    assert (lab_cmd.DEFAULT_DIR, lab_cmd.DEFAULT_NET) == (
        orchestrator_lab.settings.DEFAULT_DIR,
        orchestrator_lab.settings.DEFAULT_NET,
    )
    without_lab = (
        "import sys; sys.modules['orchestrator_lab'] = None; from orchestrator.cli import entry; entry()"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-c", without_lab, "--db", str(tmp_path / "state.db"), *args]
        return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=60)

    helped = run("lab", "up", "--help")
    assert helped.returncode == 0 and "lab-data" in helped.stdout and "127.42.0.0/16" in helped.stdout
    status = run("lab", "status", "--dir", str(tmp_path / "lab"))
    assert status.returncode == 2 and status.stdout == ""
    assert status.stderr.startswith("error: the lab is not installed") and status.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []
