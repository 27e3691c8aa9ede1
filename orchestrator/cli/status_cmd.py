"""`orchestrator status [HOST]`: where the recovery stands, for the crisis cell.

Reads only (one read transaction), so it runs in another terminal while a wave is writing. On a SQLite
file it reads through the standard library (`reporting.sqlite_read`): a person waits for it.
"""

from __future__ import annotations

import click

from orchestrator.cli.context import AppContext
from orchestrator.cli.options import emit_json, json_option, limit_option, pass_app
from orchestrator.reporting import status_read
from orchestrator.reporting.selection import HostFilter

SHOWN_ROWS = 20  # hosts needing a person shown without --all, in the table and in --json


@click.command("status")
@click.argument("host", required=False)
@click.option("--wave", type=int, metavar="N", help="Only hosts in wave N of the current plan.")
@click.option("--tier", type=click.IntRange(0, 3), metavar="T", help="Only hosts of tier T (0-3).")
@click.option(
    "--state",
    metavar="S",
    help="Only hosts in state S (e.g. failed, wiping) or bucket (pending, in_progress, recovered, hold).",
)
@limit_option
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help=f"List every host that needs a person, not only the first {SHOWN_ROWS}.",
)
@click.option(
    "--containment",
    is_flag=True,
    help="List every host that needs containment: contained, requested or not yet, when, and how long "
    "after the triage found it. Without it, only the counts.",
)
@json_option
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(0.2),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Refresh period for --watch.",
)
@pass_app
def status_command(
    app: AppContext,
    host: str | None,
    wave: int | None,
    tier: int | None,
    state: str | None,
    limit: str | None,
    show_all: bool,
    containment: bool,
    as_json: bool,
    watch: bool,
    interval: float,
) -> None:
    """The fleet at a glance, or one host's whole story.

    Without HOST: hosts by state (pending, in progress by stage, recovered, failed, on hold,
    protected), containment (contained, requested, not yet), what a person must do next, progress
    per wave and per tier, the first hosts that need a person and why, time elapsed and an estimate
    of the time to completion from measured stage durations. Its cost does not grow with the
    fleet: lists of hosts as long as the fleet come with --all and --containment.

    With HOST: its inventory facts, triage verdicts with evidence, plan action and wave, every stage
    run (start, end, result, message), evidence manifest, restore snapshot and audit entries.

    \b
    Examples:
      orchestrator status
      orchestrator status --watch --wave 3
      orchestrator status --state failed -l 'tier1:&site_north' --json --all
      orchestrator status --containment --json
      orchestrator status ehr-db01
    """
    if host and (wave is not None or tier is not None or state or limit or show_all or containment):
        raise click.UsageError(
            "--wave, --tier, --state, -l, --all and --containment are for the fleet view, not for HOST"
        )
    if watch and as_json:
        raise click.UsageError("--watch redraws tables; for JSON, poll 'orchestrator status --json'")
    flt = HostFilter(wave=wave, tier=tier, state=state, pattern=limit)
    rows = None if show_all else SHOWN_ROWS

    def fleet() -> dict:
        return status_read.fleet(app.db, app.store, flt, attention_limit=rows, containment=containment)

    if as_json:
        emit_json(status_read.host(app.db, app.store, host) if host else fleet())
        return
    from rich.console import RenderableType

    from orchestrator.cli import status_render

    def build() -> RenderableType:
        if host:
            return status_render.render_host(status_read.host(app.db, app.store, host))
        return status_render.render_fleet(fleet())

    if watch:
        status_render.watch(build, interval)
    else:
        status_render.console().print(build())


commands = [status_command]
