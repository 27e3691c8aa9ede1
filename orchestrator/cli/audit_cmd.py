"""`orchestrator audit show | verify`: who did what, when, and proof that nobody edited it since."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from orchestrator.cli.context import AppContext
from orchestrator.cli.options import console, emit_json, json_option, limit_option, pass_app
from orchestrator.reporting.selection import match_pattern
from orchestrator.reporting.timefmt import short
from orchestrator.safe_text import cells, plain
from orchestrator.store import audit
from orchestrator.store.models import AuditEntry
from orchestrator.timefmt import iso


@click.group("audit")
def audit_group() -> None:
    """The hash-chained log of every state-changing command, approval, transition and reset."""


@audit_group.command("show")
@limit_option
@click.option(
    "-n",
    "--last",
    "count",
    type=click.IntRange(0),
    default=50,
    show_default=True,
    metavar="N",
    help="The newest N entries (0: all). (-l/--limit is the host pattern, as everywhere.)",
)
@json_option
@pass_app
def show(app: AppContext, limit: str | None, count: int, as_json: bool) -> None:
    """Audit entries, oldest first: time, operator, command, arguments and details (secrets redacted).

    With -l, only the entries about the hosts the pattern selects.

    \b
    Examples:
      orchestrator audit show --last 20
      orchestrator audit show -l 'ehr*' --last 0 --json
    """
    with app.store().read() as session:
        hosts = match_pattern(session, limit) if limit else None
        rows = [_entry(e) for e in audit.entries(session, hosts, count or None)]
    if as_json:
        emit_json({"count": len(rows), "entries": rows})
        return
    table = Table(title=f"{len(rows)} audit entr{'y' if len(rows) == 1 else 'ies'}", title_justify="left")
    for column in ("#", "at (UTC)", "operator", "command", "host", "details", "arguments"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *cells(
                row["id"],
                short(row["ts"]),
                row["operator"],
                row["command"],
                row["host"],
                _compact(row["details"]),
                _compact(row["args"]),
            )
        )
    console().print(table)


@audit_group.command("verify")
@click.option(
    "--expect",
    metavar="HASH",
    callback=lambda _ctx, _param, value: _head_hash(value),
    help="A head hash written down earlier (at least 16 hex digits): the log must still hold that entry.",
)
@json_option
@pass_app
@click.pass_context
def verify(ctx: click.Context, app: AppContext, expect: str | None, as_json: bool) -> None:
    """Recompute the keyed chain; name the first altered, inserted or deleted entry. Exit 1 if broken.

    Every entry's hash is an HMAC with the audit key (--audit-key), so a log rewritten by someone who
    can write the database but lacks the key fails here. Someone who holds the key too can rewrite it
    consistently: --expect with a head noted elsewhere (every state-changing command prints it on
    stderr) proves the log still holds everything up to that point.

    \b
    Examples:
      orchestrator audit verify
      orchestrator audit verify --expect 3f2a9c0d11e4b5a6
      orchestrator audit verify --json | jq -r .head.last_hash
    """
    with app.store().read() as session:
        problem = audit.verify(session, expect)
        head = audit.head(session)
    if as_json:
        emit_json(
            {
                "ok": problem is None,
                "head": head,
                "expected": expect,
                "problem": None
                if problem is None
                else {"entry_id": problem.entry_id, "kind": problem.kind, "message": problem.problem},
            }
        )
    if problem is None:
        if not as_json:
            found = f"; holds the expected head {expect}" if expect else ""
            click.echo(f"ok: {head['entries']} entries, chain intact{found}")
            click.echo(audit.head_line(head))
        return
    click.echo(plain(f"error: audit chain broken at entry {problem.entry_id}: {problem.problem}"), err=True)
    ctx.exit(1)


def _head_hash(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    if not 16 <= len(text) <= 64 or any(c not in "0123456789abcdef" for c in text):
        raise click.BadParameter("a head hash is 16 to 64 hex digits", param_hint="--expect")
    return text


def _entry(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "ts": iso(entry.ts),
        "operator": entry.operator,
        "command": entry.command,
        "host": entry.host_name,
        "args": entry.args,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _compact(value: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(value.items()))


commands = [audit_group]
