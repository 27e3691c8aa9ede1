"""`orchestrator doctor`: is this controller ready to run a recovery?"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from orchestrator.cli.context import AppContext
from orchestrator.cli.options import console, emit_json, inventory_option, json_option, pass_app
from orchestrator.safe_text import cells, plain


@click.command("doctor")
@inventory_option
@click.option(
    "--runs-dir",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Where `run` keeps its artifacts (checked for writing).",
)
@json_option
@pass_app
def doctor(app: AppContext, inventory: tuple[str, ...], runs_dir: Path, as_json: bool) -> None:
    """Check what a run needs on this controller: ansible-playbook, the playbooks and every collection
    they use, ssh, restic, a writable database and runs folder and, with -i, credentials for the
    inventory's WinRM hosts. `run` does the same before it starts. Exit 2, one line per missing thing,
    if anything is missing.

    \b
    Examples:
      orchestrator doctor
      orchestrator doctor -i inventory/hospital --json
    """
    from orchestrator.execution import preflight

    findings = preflight.doctor(list(inventory), app.db, runs_dir)
    if as_json:
        emit_json(preflight.to_dict(findings))
    else:
        table = Table(title="controller readiness")
        for column in ("", "needed", "where / what to do"):
            table.add_column(column, overflow="fold")
        for f in findings:
            table.add_row(*cells("ok" if f.ok else "MISSING", f.item, f.detail))
        console().print(table)
    missing = [f for f in findings if not f.ok]
    for finding in missing:
        click.echo(plain(f"error: {finding}"), err=True)
    if missing:
        raise click.exceptions.Exit(2)


commands = [doctor]
