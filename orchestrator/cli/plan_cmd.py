"""`orchestrator plan` (make the draft), `plan show | diff | approve | export`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import click
from rich.table import Table

from orchestrator import private
from orchestrator.cli.context import AppContext
from orchestrator.cli.options import (
    command_args,
    console,
    emit_json,
    inventory_option,
    json_option,
    limit_option,
    pass_app,
)
from orchestrator.errors import OrchestratorError
from orchestrator.lifecycle import HOLD, PROTECTED
from orchestrator.lifecycle.concurrency import DEFAULT_FORKS
from orchestrator.planning import document, service
from orchestrator.planning import store as plan_store
from orchestrator.safe_text import cells, csv_row, json_text, plain, text


def _hm(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _estimate_line(view: plan_store.PlanView) -> str:
    est = document.estimate(view)
    ratio = f" (x{est['ratio']:.2f})" if est["ratio"] else ""
    binding = f" ({est['unordered_binding']})" if est["unordered_binding"] else ""
    forks = f" on {est['forks']} forks" if est["forks"] else ""
    return (
        f"estimated {_hm(est['total_s'])}{forks} (containment first: {_hm(est['containment_s'])}); "
        f"lower bound {_hm(est['lower_bound_s'])}{ratio}; "
        f"with capacity alone at least {_hm(est['unordered_bound_s'])}{binding}"
    )


def _warn_people(view: plan_store.PlanView) -> None:
    """Loudly, on stderr: protected hosts found dirty or untriaged, and the count on hold."""
    for m in view.members:
        if m.action == PROTECTED and m.verdict != "clean":
            click.secho(plain(f"WARNING: {m.host_name}: {m.reason}"), fg="red", bold=True, err=True)
    held = sum(1 for m in view.members if m.action == HOLD)
    if held:
        click.echo(f"{held} host(s) on hold, waiting for a person: see 'orchestrator plan show'", err=True)


@click.group("plan", invoke_without_command=True)
@inventory_option
@limit_option
@click.option(
    "--max-wave-size", type=int, metavar="N", help="At most N hosts worked on at once (people at hand)."
)
@click.option(
    "--capacity",
    "capacities",
    multiple=True,
    metavar="KEY=N",
    help="Concurrency limit, repeatable: image-server, restores, reimage:<method>, site:<name>, tier:<n>.",
)
@click.option(
    "--forks",
    type=click.IntRange(1, 500),
    default=DEFAULT_FORKS,
    show_default=True,
    help="Hosts the engine works on at once (what 'run' will use unless told otherwise): the waves are "
    "packed and estimated for it.",
)
@click.option(
    "--durations",
    "durations_file",
    type=click.Path(dir_okay=False),
    help="Stage durations file, minutes (default: each stage's own figure, orchestrator/lifecycle/stages).",
)
@click.option(
    "--time-window",
    type=click.FloatRange(min=0, min_open=True),
    default=7.0,
    show_default=True,
    metavar="DAYS",
    help="A restored host whose compromise time lies further than this (or 5 MADs, if wider) from the "
    "fleet's median waits for a person.",
)
@json_option
@pass_app
@click.pass_context
def plan_group(
    ctx: click.Context,
    app: AppContext,
    inventory: tuple[str, ...],
    limit: str | None,
    max_wave_size: int | None,
    capacities: tuple[str, ...],
    forks: int,
    durations_file: str | None,
    time_window: float,
    as_json: bool,
) -> None:
    """Make the draft recovery plan from the latest triage: actions, waves, estimates.

    Infected or suspicious hosts are rebuilt, clean ones verified, untriaged ones held for a person
    (the hosts depending on them are still rebuilt or verified, then wait to reconnect); protected
    hosts are never wiped. A host restored from backups waits for a person when its compromise time
    (set by the host, so by the attacker) is missing, in the future or far from the fleet's: see
    'orchestrator host restore-point'. Waves order the work but are not barriers: after containment,
    hosts start in plan order (tier, then a host after those it depends on, longest first,
    recovery_priority) while --max-wave-size and every --capacity have room, each holding its place
    until it reaches reconnect, on --forks workers; a host whose dependencies are not recovered waits
    there, isolated. Waves are that order cut every --max-wave-size hosts (one wave without it). The
    plan keeps --forks: 'run' uses it unless given its own. A new plan replaces the earlier draft;
    nothing runs until it is approved.

    \b
    Capacity keys (hosts at once, each from its first stage after containment to reconnect):
      image-server       rebuilds (each reimages from the golden-image server)
      reimage:<method>   rebuilds using that reimage method (pxe, vsphere, ...)
      restores           rebuilds that restore data (restore method not 'none')
      site:<name>        rebuilds at that site
      tier:<n>           hosts of that tier, rebuilt or verified

    \b
    Examples:
      orchestrator plan -i inventory/hospital --max-wave-size 100 --capacity image-server=40
      orchestrator plan -i inventory/hospital --capacity site:north=20 --capacity site:south=15 --json
      orchestrator plan show
    """
    if ctx.invoked_subcommand is not None:
        given = [
            p
            for p in (
                "inventory",
                "limit",
                "max_wave_size",
                "capacities",
                "forks",
                "durations_file",
                "time_window",
                "as_json",
            )
            if ctx.params[p] not in (None, (), False)
            # ORCHESTRATOR_INVENTORY fills -i for every command: only what was typed counts here
            and ctx.get_parameter_source(p) is click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"options of 'plan' go without a subcommand (got them with '{ctx.invoked_subcommand}')"
            )
        return
    request = service.DraftRequest(
        inventory, limit, max_wave_size, capacities, durations_file, time_window_days=time_window, forks=forks
    )
    made = service.draft(app.store(), app.operator, request, command_args(ctx))
    view, counts = made.view, made.draft.counts()
    if as_json:
        emit_json(document.plan_document(view))
    else:
        plan = view.plan
        click.echo(
            f"draft plan {plan.id} from triage run {plan.triage_run_id} ({len(view.members)} hosts): "
            + ", ".join(f"{n} {a}" for a, n in counts.items())
        )
        click.echo(f"{len(view.waves)} wave(s); {_estimate_line(view)}")
        click.echo(f"content hash {plan.content_hash}")
        if made.draft.external_dependencies:
            click.echo(
                f"note: {made.draft.external_dependencies} host(s) depended on are outside --limit: "
                "taken as already recovered"
            )
        click.echo("review: orchestrator plan show; approve: orchestrator plan approve --by NAME")
    _warn_people(view)


@plan_group.command("show")
@click.option("--approved", is_flag=True, help="Show the approved plan rather than the draft.")
@click.option("--wave", "wave", type=int, metavar="N", help="List only the hosts of wave N.")
@click.option("--summary", is_flag=True, help="Waves and hosts needing a person only, no host list.")
@json_option
@pass_app
def show(app: AppContext, approved: bool, wave: int | None, summary: bool, as_json: bool) -> None:
    """The plan: status, waves with estimates, hosts with actions and reasons.

    Shows the draft if there is one, else the approved plan.

    \b
    Examples:
      orchestrator plan show --summary
      orchestrator plan show --wave 3
      orchestrator plan show --approved --json | jq '.waves[] | {number, tier, estimated_s}'
    """
    with app.store().read() as session:
        view = plan_store.current(session, approved=approved)
    if wave is not None and wave not in {w.number for w in view.waves}:
        raise OrchestratorError(f"plan {view.plan.id} has no wave {wave} (waves 1-{len(view.waves)})")
    if as_json:
        emit_json(document.plan_document(view))
        return
    _render_plan(view, wave, summary)


def _render_plan(view: plan_store.PlanView, only_wave: int | None, summary: bool) -> None:
    plan = view.plan
    out = console()
    status = plan.status
    if plan.approved_by:
        status += f" by {plan.approved_by} at {plan.approved_at:%Y-%m-%d %H:%M} UTC"
    out.print(
        text(
            f"plan {plan.id} ({status}), from triage run {plan.triage_run_id}, made by {plan.created_by} "
            f"at {plan.created_at:%Y-%m-%d %H:%M} UTC; hash {plan.content_hash[:16]}"
        ),
        highlight=False,
    )
    if view.changed_since_approval:
        out.print("[bold red]CHANGED SINCE APPROVAL: execution will refuse it[/]")
    out.print(_estimate_line(view), highlight=False)
    doc = document.plan_document(view)
    waves = Table(title=f"{len(view.waves)} wave(s)")
    for column in ("wave", "tier", "rebuild", "verify", "protected", "estimated", "starts", "ends"):
        waves.add_column(column, justify="right" if column != "wave" else "left")
    for w in doc["waves"]:
        waves.add_row(
            str(w["number"]),
            str(w["tier"]),
            str(w["rebuild"]),
            str(w["verify"]),
            str(w["protected"]),
            _hm(w["estimated_s"]),
            _hm(w["start_s"]),
            _hm(w["end_s"]),
        )
    out.print(waves)
    people = [m for m in view.members if m.action == HOLD or (m.action == PROTECTED and m.verdict != "clean")]
    if people:
        table = Table(title=f"{len(people)} host(s) need a person")
        for column in ("host", "action", "wave", "tier", "verdict", "reason"):
            table.add_column(column, overflow="fold")
        for m in people:
            style = "bold red" if m.action == PROTECTED and m.verdict != "clean" else None
            wave = str(m.wave) if m.wave is not None else ""
            table.add_row(*cells(m.host_name, m.action, wave, m.tier, m.verdict, m.reason), style=style)
        out.print(table)
    if view.decisions:
        decided = Table(title=f"{len(view.decisions)} decision(s) by people (the next run honours them)")
        for column in ("host", "decision", "by", "at", "why"):
            decided.add_column(column, overflow="fold")
        for d in view.decisions:
            decided.add_row(
                *cells(d["host"], d["summary"], d["by"], (d["at"] or "")[:16].replace("T", " "), d["why"])
            )
        out.print(decided)
    if summary:
        return
    listed = [m for m in view.members if m.wave is not None and (only_wave is None or m.wave == only_wave)]
    hosts = Table(title=f"{len(listed)} host(s) in waves" if only_wave is None else f"wave {only_wave}")
    for column in ("wave", "host", "action", "tier", "prio", "estimated", "reason"):
        hosts.add_column(column, overflow="fold")
    for m in listed:
        hosts.add_row(*cells(m.wave, m.host_name, m.action, m.tier, m.priority, _hm(m.estimated_s), m.reason))
    out.print(hosts)


@plan_group.command("diff")
@json_option
@pass_app
def diff(app: AppContext, as_json: bool) -> None:
    """What the draft changes compared with the approved plan (after a new triage): hosts added or
    removed, actions and waves changed.

    \b
    Examples:
      orchestrator plan diff
      orchestrator plan diff --json | jq '.action_changed[].host'
    """
    with app.store().read() as session:
        d = plan_store.diff(session)
    if as_json:
        emit_json(document.diff_document(d))
        return
    out = console()
    out.print(
        f"approved plan {d.base.id} (triage run {d.base.triage_run_id}) -> draft plan {d.target.id} "
        f"(triage run {d.target.triage_run_id})",
        highlight=False,
    )
    if not d.changed:
        out.print(f"no change: {d.unchanged} host(s) with the same action and wave")
        return
    table = Table()
    for column in ("change", "host", "before", "after", "reason now"):
        table.add_column(column, overflow="fold")

    def side(m) -> str:  # type: ignore[no-untyped-def]
        return "" if m is None else f"{m.action}" + (f" (wave {m.wave})" if m.wave is not None else "")

    for label, changes in (
        ("added", d.added),
        ("removed", d.removed),
        ("action", d.action_changed),
        ("wave", d.wave_changed),
    ):
        for c in changes:
            table.add_row(
                *cells(label, c.host, side(c.before), side(c.after), c.after.reason if c.after else "")
            )
    out.print(table)
    out.print(
        f"{len(d.added)} added, {len(d.removed)} removed, {len(d.action_changed)} action changed, "
        f"{len(d.wave_changed)} wave changed, {d.unchanged} unchanged",
        highlight=False,
    )


@plan_group.command("approve")
@click.option("--by", "by", metavar="NAME", help="Who approves (default: --operator).")
@click.option(
    "--hash",
    "expect_hash",
    metavar="PREFIX",
    help="Approve only if the draft's content hash starts with PREFIX (the plan you reviewed).",
)
@json_option
@pass_app
@click.pass_context
def approve(
    ctx: click.Context, app: AppContext, by: str | None, expect_hash: str | None, as_json: bool
) -> None:
    """Approve the draft: records who, when, and the hash of its content. Execution runs only the
    approved plan, and refuses it if its content changed since.

    Refused when the draft is older than the latest triage run.

    \b
    Examples:
      orchestrator plan approve --by "Dr. Martin, crisis cell"
      orchestrator plan approve --by alice --hash 3f2a9c
    """
    view, superseded = service.approve(app.store(), app.operator, by, expect_hash, command_args(ctx))
    plan, approver = view.plan, view.plan.approved_by
    if as_json:
        emit_json(document.plan_document(view)["plan"])
    else:
        click.echo(
            plain(
                f"approved plan {plan.id} by {approver} at {plan.approved_at:%Y-%m-%d %H:%M:%S} UTC; "
                f"hash {plan.approved_hash}" + (f"; supersedes plan {superseded}" if superseded else "")
            )
        )
    _warn_people(view)


@plan_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), required=True, help="Output format.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE (default: stdout)."
)
@click.option("--approved", is_flag=True, help="Export the approved plan rather than the draft.")
@pass_app
def export(app: AppContext, fmt: str, output: str | None, approved: bool) -> None:
    """The plan for the crisis cell's spreadsheet: one row per host, in running order.

    CSV columns: wave, wave_tier, wave_start_min, wave_end_min, host, action, verdict, reason, tier,
    priority, site, os, reimage_method, estimated_min. JSON: the same document as 'plan show --json'.

    \b
    Examples:
      orchestrator plan export --format csv -o plan.csv
      orchestrator plan export --format json --approved > approved-plan.json
    """
    with app.store().read() as session:
        view = plan_store.current(session, approved=approved)
        hosts = plan_store.host_snapshot(session, view)
    if fmt == "json":
        content = json_text(document.plan_document(view), indent=2, default=str) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=document.CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_row(r) for r in document.csv_rows(view, hosts))
        content = buffer.getvalue()
    if output:
        try:
            private.write_text(Path(output), content)
        except OSError as exc:
            raise OrchestratorError(f"{output}: cannot write: {exc.strerror}") from exc
        click.echo(f"wrote plan {view.plan.id} ({len(view.members)} hosts) to {output}", err=True)
    else:
        click.echo(content, nl=False)


commands = [plan_group]
