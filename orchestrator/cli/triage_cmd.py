"""`orchestrator triage`, `triage show HOST`, `triage packs`, `triage script`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from orchestrator.cli.context import AppContext
from orchestrator.cli.options import (
    command_args,
    console,
    emit_json,
    err_console,
    inventory_option,
    json_option,
    limit_option,
    pass_app,
)
from orchestrator.errors import HostsFailed
from orchestrator.inventory import cache as inventory_cache
from orchestrator.lifecycle import CLEAN, RANK
from orchestrator.safe_text import cells, plain, text
from orchestrator.timefmt import iso_exact
from orchestrator.triage import DEFAULT_FORKS, DEFAULT_TIMEOUT, VERDICTS

if TYPE_CHECKING:  # the SSH and database libraries load only when a triage command runs
    from collections.abc import Mapping

    from orchestrator.inventory import Host
    from orchestrator.node_access import Node
    from orchestrator.store import Store
    from orchestrator.triage.engine import Settings
    from orchestrator.triage.packs import Pack
    from orchestrator.triage.runner import Outcome

STYLES = {
    "clean": "green",
    "suspicious": "yellow",
    "infected": "bold red",
    "unreachable": "magenta",
    "error": "red",
}

pack_option = click.option(
    "--pack",
    "pack_paths",
    multiple=True,
    type=click.Path(),
    metavar="FILE|DIR",
    help="Add a check pack (YAML file, or a directory of them) to the shipped packs; repeatable.",
)


def _counts_text(counts: dict[str, int]) -> str:
    return "  ".join(f"[{STYLES[v]}]{v} {counts.get(v, 0)}[/]" for v in VERDICTS)


@click.group("triage", invoke_without_command=True)
@inventory_option
@limit_option
@click.option(
    "--forks",
    type=click.IntRange(1, 5000),
    default=DEFAULT_FORKS,
    show_default=True,
    help="Hosts checked at the same time.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 86400),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds per host for everything: connect, log in, run the checks.",
)
@pack_option
@click.option(
    "--trust-new-keys",
    is_flag=True,
    help="Accept host keys missing from known_hosts (labs only; recorded in the audit log). "
    "A changed key is never accepted.",
)
@click.option(
    "--local",
    is_flag=True,
    help="Check every host from here, ignoring recovery_execution_node (by default a host with an "
    "execution node is checked by that node).",
)
@json_option
@pass_app
@click.pass_context
def triage_group(
    ctx: click.Context,
    app: AppContext,
    inventory: tuple[str, ...],
    limit: str | None,
    forks: int,
    timeout: float,
    pack_paths: tuple[str, ...],
    trust_new_keys: bool,
    local: bool,
    as_json: bool,
) -> None:
    """Check every selected host for indicators of compromise, in parallel, and store the verdicts.

    Linux hosts over SSH, Windows hosts over WinRM, with the connection settings of the Ansible
    inventory; host keys are checked against the known_hosts file the inventory names. Each host
    gets one verdict: clean, suspicious, infected, unreachable or error, with the evidence and the
    earliest indicator's time. A host with a recovery_execution_node is checked by that node
    (`orchestrator triage agent` over SSH), its result streamed back here as it finishes; a node
    lost mid-run leaves its unfinished hosts as `error: node lost`, checked again by the next
    triage. Exit 0 when every host was checked (infected hosts are findings,
    not failures), 1 when some host was unreachable or in error, 2 on bad input (a pack with an
    error is refused before any host is contacted).

    \b
    Examples:
      orchestrator triage -i inventory/hospital -l 'tier0:tier1'
      orchestrator triage -i lab-data/inventory --pack incident.yml --forks 100 --json
      orchestrator triage show ehrdb-n01
    """
    if ctx.invoked_subcommand is not None:
        return
    from orchestrator.triage import dispatch, runner
    from orchestrator.triage import packs as packs_lib
    from orchestrator.triage.engine import Settings

    packs = packs_lib.load(pack_paths)
    inv = inventory_cache.load(inventory)
    inv.require_valid()
    hosts = inv.select(limit)
    from orchestrator import winrm_auth

    for warning in winrm_auth.plaintext_warnings(hosts):
        click.echo(f"warning: {warning}", err=True)
    settings = Settings(forks=forks, timeout=timeout, trust_new_keys=trust_new_keys)
    args = command_args(ctx)
    store = app.store()
    nodes = {} if local else dispatch.placement(inv.hosts, hosts)
    if as_json:
        outcome = runner.run(store, app.operator, hosts, packs, settings, limit=limit, args=args, nodes=nodes)
    else:
        outcome = _run_with_progress(store, app, hosts, packs, settings, limit, args, nodes)
    if as_json:
        emit_json(
            {
                "run_id": outcome.run_id,
                "started_at": iso_exact(outcome.started_at),
                "finished_at": iso_exact(outcome.finished_at),
                "hosts": len(outcome.results),
                "counts": outcome.counts,
                "results": [r.to_dict() for r in outcome.results],
            }
        )
    else:
        _summary(outcome)
    if outcome.failed:
        raise HostsFailed(
            f"{len(outcome.failed)} host(s) could not be checked (unreachable or error): "
            + ", ".join(r.host for r in outcome.failed[:10])
            + (", ..." if len(outcome.failed) > 10 else "")
        )


def _run_with_progress(
    store: Store,
    app: AppContext,
    hosts: list[Host],
    packs: list[Pack],
    settings: Settings,
    limit: str | None,
    args: dict[str, Any],
    nodes: Mapping[str, Node],
) -> Outcome:
    """The run with a live bar on stderr: hosts done, and counts by verdict as they come in."""
    from orchestrator.triage import runner

    counts = dict.fromkeys(VERDICTS, 0)
    progress = Progress(
        TextColumn("[bold]triage[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=err_console(),
    )

    with progress:
        task = progress.add_task("triage", total=len(hosts), counts=_counts_text(counts))

        def on_result(result: Any) -> None:
            counts[result.verdict] += 1
            progress.update(task, advance=1, counts=_counts_text(counts))

        return runner.run(
            store,
            app.operator,
            hosts,
            packs,
            settings,
            limit=limit,
            args=args,
            on_result=on_result,
            nodes=nodes,
        )


def _summary(outcome: Outcome) -> None:

    out = console()
    findings = sorted(
        (r for r in outcome.results if r.verdict != CLEAN), key=lambda r: (RANK[r.verdict], r.host)
    )
    if findings:
        table = Table(title=f"triage run {outcome.run_id}: hosts that are not clean")
        for column in ("host", "verdict", "compromise time", "why", "seconds"):
            table.add_column(column, overflow="fold")
        for r in findings:
            why = r.reason or ", ".join(h.check_id for h in r.hits if h.severity != "info")
            table.add_row(
                *cells(
                    r.host,
                    text(r.verdict, style=STYLES[r.verdict]),
                    iso_exact(r.compromise_time),
                    why,
                    f"{r.duration_s:.1f}",
                )
            )
        out.print(table)
    totals = Table(title=f"triage run {outcome.run_id}: {len(outcome.results)} host(s)")
    for verdict in VERDICTS:
        totals.add_column(verdict, justify="right", style=STYLES[verdict])
    totals.add_row(*(str(outcome.counts[v]) for v in VERDICTS))
    out.print(totals)
    out.print("Details and evidence: orchestrator triage show HOST")


@triage_group.command("show")
@click.argument("host")
@click.option(
    "--history",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Also list this many older runs.",
)
@json_option
@pass_app
def show(app: AppContext, host: str, history: int, as_json: bool) -> None:
    """A host's latest triage verdict with the evidence of every check that matched.

    \b
    Examples:
      orchestrator triage show ehrdb-n01
      orchestrator triage show ehrdb-n01 --history 5 --json
    """
    from orchestrator.triage import results as results_lib

    data = results_lib.host_results(app.store(), host, history)
    if as_json:
        emit_json(data)
        return
    out = console()
    latest = data["latest"]
    out.print(
        Text.assemble(
            text(host, style="bold"),
            ": ",
            text(latest["verdict"], style=STYLES.get(latest["verdict"], "")),
            plain(f" ({latest['reason']})" if latest["reason"] else ""),
            plain(f"  run {latest['run_id']} at {latest['run_started_at']}, {latest['duration_s']:.1f}s"),
        )
    )
    if latest["compromise_time"]:
        out.print(text(f"estimated compromise time: {latest['compromise_time']}"))
    if latest["matches"]:
        table = Table(title="checks that matched", show_lines=True)
        for column in ("severity", "check", "first seen", "evidence"):
            table.add_column(column, overflow="fold")
        for m in latest["matches"]:
            table.add_row(
                text(m["severity"], style=STYLES.get(m["severity"], "")),
                Text.assemble(text(m["check_id"]), "\n", text(m["title"])),
                *cells(m["first_seen"]),
                *cells(m["evidence"], multiline=True),
            )
        out.print(table)
    if data["history"]:
        table = Table(title="earlier runs")
        for column in ("run", "started", "verdict", "reason", "compromise time"):
            table.add_column(column, overflow="fold")
        for r in data["history"]:
            table.add_row(
                *cells(
                    r["run_id"],
                    r["run_started_at"],
                    text(r["verdict"], style=STYLES.get(r["verdict"], "")),
                    r["reason"],
                    r["compromise_time"],
                )
            )
        out.print(table)


@triage_group.command("packs")
@pack_option
@json_option
def list_packs(pack_paths: tuple[str, ...], as_json: bool) -> None:
    """Validate the check packs (shipped plus --pack) and list their checks.

    \b
    Examples:
      orchestrator triage packs
      orchestrator triage packs --pack incident.yml --json
    """
    from orchestrator.triage import packs as packs_lib

    packs = packs_lib.load(pack_paths)
    if as_json:
        emit_json(
            {
                "packs": [
                    {
                        "id": p.id,
                        "title": p.title,
                        "path": p.path,
                        "trusted_keys": p.trusted_keys,
                        "checks": [
                            {
                                "id": c.id,
                                "title": c.title,
                                "os": c.os,
                                "severity": c.severity,
                                "probe": c.kind,
                            }
                            for c in p.checks
                        ],
                    }
                    for p in packs
                ]
            }
        )
        return
    table = Table(title=f"{sum(len(p.checks) for p in packs)} check(s) in {len(packs)} pack(s)")
    for column in ("pack", "check", "os", "severity", "probe", "title"):
        table.add_column(column, overflow="fold")
    for p in packs:
        for c in p.checks:
            table.add_row(*cells(p.id, c.id, c.os, c.severity, c.kind, c.title))
    console().print(table)


@triage_group.command("script")
@click.option("--os", "os_name", type=click.Choice(["linux", "windows"]), default="linux", show_default=True)
@pack_option
def script(os_name: str, pack_paths: tuple[str, ...]) -> None:
    """Print the one script triage runs on each host of an OS, for review before a run.

    \b
    Examples:
      orchestrator triage script --os linux > triage.sh
      orchestrator triage script --os windows --pack incident.yml
    """
    from orchestrator.triage import packs as packs_lib
    from orchestrator.triage import scripts as scripts_lib

    packs = packs_lib.load(pack_paths)
    click.echo(scripts_lib.render(os_name, packs_lib.checks_for(packs, os_name)).text, nl=False)


@triage_group.command("agent")
def agent() -> None:
    """Run on an execution node by the controller's triage: not for people.

    Reads the controller's request (the site's hosts, the packs, the settings) on stdin, checks
    the hosts with this node's own SSH and WinRM access, and writes one JSON line per host on
    stdout as each finishes, then an end marker. Exit 2 on a request it cannot read.

    \b
    Examples:
      ssh exec-north-01 orchestrator triage agent < request.json
    """
    import sys

    from orchestrator.triage import agent as agent_lib
    from orchestrator.triage.node_request import RequestError

    try:
        agent_lib.serve(sys.stdin.buffer, sys.stdout.buffer)
    except RequestError as exc:
        click.echo(f"error: triage agent: {exc}", err=True)
        sys.exit(2)


commands = [triage_group]
