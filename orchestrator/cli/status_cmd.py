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

TABLE_ROWS = 20  # hosts needing a person shown in the table; --json lists them all


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
    as_json: bool,
    watch: bool,
    interval: float,
) -> None:
    """The fleet at a glance, or one host's whole story.

    Without HOST: hosts by state (pending, in progress by stage, recovered, failed, on hold,
    protected), progress per wave and per tier, the hosts that need a person and why, time elapsed
    and an estimate of the time to completion from measured stage durations.

    With HOST: its inventory facts, triage verdicts with evidence, plan action and wave, every stage
    run (start, end, result, message), evidence manifest, restore snapshot and audit entries.

    \b
    Examples:
      orchestrator status
      orchestrator status --watch --wave 3
      orchestrator status --state failed -l 'tier1:&site_north' --json
      orchestrator status ehr-db01
    """
    if host and (wave is not None or tier is not None or state or limit):
        raise click.UsageError("--wave, --tier, --state and -l select hosts for the fleet view, not for HOST")
    if watch and as_json:
        raise click.UsageError("--watch redraws tables; for JSON, poll 'orchestrator status --json'")
    flt = HostFilter(wave=wave, tier=tier, state=state, pattern=limit)
    if as_json:
        emit_json(
            status_read.host(app.db, app.store, host) if host else status_read.fleet(app.db, app.store, flt)
        )
        return
    from rich.console import RenderableType

    from orchestrator.cli import status_render

    def build() -> RenderableType:
        if host:
            return status_render.render_host(status_read.host(app.db, app.store, host))
        return status_render.render_fleet(
            status_read.fleet(app.db, app.store, flt, attention_limit=TABLE_ROWS)
        )

    if watch:
        status_render.watch(build, interval)
    else:
        status_render.console().print(build())


commands = [status_command]
