"""`orchestrator report`: the recovery report for management and the regulator, or its rows as data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from orchestrator.cli.context import AppContext
from orchestrator.cli.options import pass_app
from orchestrator.reporting import render, report


@click.command("report")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(render.FORMATS),
    help="Output format [default: from the file's extension, else html].",
)
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="FILE",
    help="File to write ('-' for standard output).",
)
@click.option(
    "--title",
    default="Recovery report",
    show_default=True,
    help="Title of the HTML report (e.g. the organisation and incident).",
)
@pass_app
def report_command(app: AppContext, fmt: str | None, output: str, title: str) -> None:
    """Write the recovery report.

    HTML: one self-contained file (no external assets, opens offline, prints): executive summary
    (hosts by outcome, time to recover per tier), timeline chart, per-wave tables, failures and
    holds, evidence manifests with hashes, and the affected systems holding personal or health data
    with when they were compromised, isolated and restored (for the breach notification).
    CSV and JSON: the same one row per host (JSON adds the summaries).

    \b
    Examples:
      orchestrator report -o recovery-report.html --title "Hospital X - LockBit, March 2025"
      orchestrator report --format csv -o hosts.csv
      orchestrator report -f json -o - | jq '.hosts[] | select(.outcome == "failed")'
    """
    fmt = fmt or _format_from(output)
    text = render.render(report.build(app.store()), fmt, title)
    if output == "-":
        click.echo(text, nl=False)
        return
    _write_atomically(Path(output), text)
    click.echo(f"wrote {fmt} report to {output}", err=True)


def _format_from(output: str) -> str:
    suffix = Path(output).suffix.lower().lstrip(".")
    return {"htm": "html"}.get(suffix, suffix) if suffix in (*render.FORMATS, "htm") else "html"


def _write_atomically(path: Path, text: str) -> None:
    """Readers (a browser, a mail client) never see half a report."""
    if not path.parent.is_dir():
        raise click.BadParameter(f"directory {path.parent} does not exist", param_hint="-o/--output")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o600)  # host names, evidence, restore points: for whom the operator sends it to
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


commands = [report_command]
