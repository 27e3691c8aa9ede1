"""`orchestrator inventory show | check | sync`."""

from __future__ import annotations

import click
from rich.table import Table

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
from orchestrator.errors import InventoryError
from orchestrator.inventory import TIERS
from orchestrator.inventory import cache as inventory_cache
from orchestrator.safe_text import cells, plain
from orchestrator.store import hosts as host_store


@click.group("inventory")
def inventory_group() -> None:
    """Read and check the Ansible inventory that describes the fleet."""


@inventory_group.command("show")
@inventory_option
@limit_option
@json_option
def show(inventory: tuple[str, ...], limit: str | None, as_json: bool) -> None:
    """Hosts with their recovery attributes, resolved dependencies and groups.

    \b
    Examples:
      orchestrator inventory show -i inventory/hospital -l tier0
      orchestrator inventory show -i inventory/hospital --json | jq '.hosts[0]'
    """
    inv = inventory_cache.load(inventory)
    hosts = inv.select(limit)
    if as_json:
        emit_json({"count": len(hosts), "hosts": [h.to_dict() for h in hosts]})
        return
    table = Table(title=f"{len(hosts)} host(s)", show_lines=False)
    for col in ("host", "address", "os", "tier", "role", "site", "prot.", "prio", "depends on", "groups"):
        table.add_column(col, overflow="fold")
    for h in hosts:
        deps = ", ".join(h.depends_on) + (f" ({len(h.depends_on_hosts)} hosts)" if h.depends_on else "")
        table.add_row(
            *cells(
                h.name,
                h.address + (f":{h.port}" if h.port else ""),
                h.os,
                h.tier,
                h.role,
                h.site,
                "yes" if h.protected else "",
                h.priority,
                deps,
                ", ".join(h.groups),
            )
        )
    console().print(table)
    if inv.problems:
        click.echo(f"warning: {len(inv.problems)} problem(s): run 'orchestrator inventory check'", err=True)


@inventory_group.command("check")
@inventory_option
@json_option
def check(inventory: tuple[str, ...], as_json: bool) -> None:
    """Report every problem at once: unknown dependencies, cycles, bad tiers or roles, missing or
    duplicate addresses, Windows hosts without WinRM settings. Exit 2 if there is any.

    \b
    Example:
      orchestrator inventory check -i inventory/hospital -i inventory/extra.ini
    """
    from orchestrator import winrm_auth

    inv = inventory_cache.load(inventory)
    by_tier = {t: sum(1 for h in inv.hosts.values() if h.tier == t) for t in TIERS}
    hosts = list(inv.hosts.values())
    warnings = winrm_auth.plaintext_warnings(hosts) + winrm_auth.shared_account_warnings(hosts)
    if as_json:
        emit_json(
            {
                "ok": not inv.problems,
                "hosts": len(inv.hosts),
                "by_tier": {str(k): v for k, v in by_tier.items()},
                "problems": [{"host": p.host, "where": p.where, "message": p.message} for p in inv.problems],
                "warnings": warnings,
            }
        )
    else:
        for p in inv.problems:
            click.echo(plain(str(p)), err=True)
        for warning in warnings:
            click.echo(plain(f"warning: {warning}"), err=True)
    if inv.problems:
        raise InventoryError(f"{len(inv.problems)} problem(s) in {', '.join(inv.sources)}")
    if not as_json:
        tiers = ", ".join(f"tier {t}: {n}" for t, n in by_tier.items())
        click.echo(f"ok: {len(inv.hosts)} hosts ({tiers}), no problems")


@inventory_group.command("sync")
@inventory_option
@limit_option
@json_option
@pass_app
@click.pass_context
def sync(
    ctx: click.Context, app: AppContext, inventory: tuple[str, ...], limit: str | None, as_json: bool
) -> None:
    """Record the inventory's hosts in the state database (triage and plan also do this).

    Nothing is written when the inventory has any problem.

    \b
    Example:
      orchestrator --db recovery.db inventory sync -i inventory/hospital
    """
    count, added, updated = host_store.sync_inventory(
        app.store(), app.operator, inventory, limit, command_args(ctx)
    )
    if as_json:
        emit_json({"hosts": count, "added": added, "updated": updated})
    else:
        click.echo(f"synced {count} hosts: {added} added, {updated} updated")


commands = [inventory_group]
