"""`orchestrator host`: a person's decisions about one host (reset, decide), each audited."""

from __future__ import annotations

from datetime import datetime

import click

from orchestrator import lifecycle
from orchestrator.cli.context import AppContext
from orchestrator.cli.options import IsoTime, command_args, emit_json, json_option, pass_app
from orchestrator.errors import OrchestratorError
from orchestrator.lifecycle import DECISIONS
from orchestrator.safe_text import plain


@click.group("host")
def host_group() -> None:
    """Operator decisions about one host."""


@host_group.command("reset")
@click.argument("host")
@click.option(
    "--to", "to_stage", required=True, type=click.Choice(lifecycle.STAGE_ORDER), help="The stage to run next."
)
@pass_app
@click.pass_context
def reset(ctx: click.Context, app: AppContext, host: str, to_stage: str) -> None:
    """Send a host back (or forward) to a stage: the only way back to wipe once restore began. Audited.

    \b
    Example:
      orchestrator host reset ehr-db-01 --to wipe
    """
    from orchestrator.execution import host_reset

    before, after = host_reset.reset_host(app.store(), app.operator, host, to_stage, command_args(ctx))
    click.echo(plain(f"{host}: {before} -> {after}; the next run starts it at {to_stage}"))


_FLAGS = {
    "rebuild": "Rebuild it; an unreachable host through its out-of-band reimage method (SSH stages skipped).",
    "verify": "Verify only: a protected host's finding accepted, or a clean host nobody could triage.",
    "hold": "Keep it out of the plan: a protected host's finding rejected, or a host to look at first.",
    "release": "Let it reconnect without waiting for its held dependencies.",
    "done": "It was rebuilt by hand, outside the orchestrator: count it as recovered.",
    "withdraw": "Withdraw the standing decision: the plan's rules apply again.",
}


@host_group.command("decide")
@click.argument("host")
@click.option("--rebuild", "decision", flag_value="rebuild", help=_FLAGS["rebuild"])
@click.option("--verify", "decision", flag_value="verify", help=_FLAGS["verify"])
@click.option("--hold", "decision", flag_value="hold", help=_FLAGS["hold"])
@click.option("--release", "decision", flag_value="release", help=_FLAGS["release"])
@click.option("--done", "decision", flag_value="done", help=_FLAGS["done"])
@click.option("--withdraw", "decision", flag_value="withdraw", help=_FLAGS["withdraw"])
@click.option("--why", required=True, metavar="TEXT", help="Why: kept in the audit log, shown with the host.")
@click.option(
    "--compromised-since",
    type=IsoTime(),
    metavar="TIME",
    help="With --rebuild: since when it is compromised (UTC unless given). Sets its restore point "
    "(newest clean snapshot before TIME minus one hour) exactly as 'host restore-point' does: the "
    "newer of the two is the one in force.",
)
@json_option
@pass_app
@click.pass_context
def decide(
    ctx: click.Context,
    app: AppContext,
    host: str,
    decision: str | None,
    why: str,
    compromised_since: datetime | None,
    as_json: bool,
) -> None:
    """Decide about one host, audited with who and why; the next plan and the next run honour it.

    \b
    Examples:
      orchestrator host decide dns-01 --rebuild --why "console: disk encrypted, reimage via BMC" \\
        --compromised-since 2026-12-02T14:00:00+0000
      orchestrator host decide ehr-app-02 --release --why "runs read-only without the DNS server"
      orchestrator host decide bkp-01 --verify --why "match is our own restic test note"
      orchestrator host decide dns-01 --withdraw --why "decided too early"
    """
    if decision is None:
        raise OrchestratorError(f"give one of {', '.join('--' + d for d in (*DECISIONS, 'withdraw'))}")
    from orchestrator.planning import decisions

    said = decisions.record(
        app.store(), app.operator, host, decision, why, command_args(ctx), compromised_since
    )
    if as_json:
        emit_json(said)
    elif said["withdrawn"]:
        click.echo(f"{host}: decision {said['decision']!r} withdrawn; the plan's rules apply again")
    else:
        cutoff = f"; restore point before {said['restore_before']}" if said.get("restore_before") else ""
        click.echo(
            f"{host}: {said['decision']} ({decisions.MEANING[said['decision']]}), by {said['by']}{cutoff}; "
            "the next 'orchestrator run' honours it ('orchestrator plan' shows it too)"
        )


@host_group.command("restore-point")
@click.argument("host")
@click.option(
    "--before", type=IsoTime(), help="Restore from the newest clean snapshot before TIME (UTC if no zone)."
)
@click.option("--accept", is_flag=True, help="Accept the host's triage estimate as it is (minus one hour).")
@click.option(
    "--withdraw",
    is_flag=True,
    help="Withdraw the standing restore-point decision (whichever command made it).",
)
@click.option("--why", required=True, help="Why this restore point is right (recorded in the audit log).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stable keys, see README).")
@pass_app
@click.pass_context
def restore_point(
    ctx: click.Context,
    app: AppContext,
    host: str,
    before: datetime | None,
    accept: bool,
    withdraw: bool,
    why: str,
    as_json: bool,
) -> None:
    """Decide where HOST's restore point lies, instead of its own (untrusted) compromise time. Audited.

    A host restored from backups waits for this decision when its compromise time is missing, in the
    future, older than its oldest backup or far outside the fleet's. The next 'orchestrator plan'
    schedules it with the decision in its reason (approve that plan); a host held at its restore
    stage uses the decision on the next 'orchestrator run'. 'host decide HOST --rebuild
    --compromised-since TIME' sets the same restore point: the newer decision is the one in force,
    and 'plan show', 'status' and the report list it the same way.

    \b
    Examples:
      orchestrator host restore-point ehr-db-01 --before 2026-11-27T00:00:00Z --why "foothold 28 Nov per EDR"
      orchestrator host restore-point ehr-db-01 --accept --why "mtime matches the VPN log"
      orchestrator host restore-point ehr-db-01 --withdraw --why "EDR timeline was wrong"
    """
    if sum((before is not None, accept, withdraw)) != 1:
        raise click.UsageError("give exactly one of --before TIME, --accept or --withdraw")
    from orchestrator.planning import decisions

    said = decisions.record_restore_point(
        app.store(), app.operator, host, before, withdraw, why, command_args(ctx)
    )
    if as_json:
        emit_json(said)
    elif said["withdrawn"]:
        click.echo(f"{host}: restore-point decision withdrawn; its own checked compromise time applies again")
    else:
        click.echo(
            f"{host}: restore from the newest clean snapshot before {said['restore_before']}; "
            "plan again to schedule it"
        )


commands = [host_group]
