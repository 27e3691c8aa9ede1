"""Options and output helpers shared by every command, so all commands look and behave alike."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.context import AppContext
from orchestrator.safe_text import json_text

if TYPE_CHECKING:  # rich is imported when a table is drawn: `--json` does without it
    from rich.console import Console

pass_app = click.make_pass_decorator(AppContext)


class _InventoryList(click.ParamType):
    """`-i` is repeatable like Ansible's; the env var takes comma-separated sources like ANSIBLE_INVENTORY."""

    name = "PATH"

    def split_envvar_value(self, rv: str) -> list[str]:
        return [part for part in rv.split(",") if part.strip()]

    def shell_complete(self, ctx, param, incomplete):  # type: ignore[no-untyped-def]
        return [click.shell_completion.CompletionItem(incomplete, type="file")]


def inventory_option(f: Callable) -> Callable:
    return click.option(
        "-i",
        "--inventory",
        "inventory",
        multiple=True,
        type=_InventoryList(),
        envvar="ORCHESTRATOR_INVENTORY",
        help="Ansible inventory: file, directory or script; repeatable (env ORCHESTRATOR_INVENTORY, comma-separated).",
    )(f)


def limit_option(f: Callable) -> Callable:
    return click.option(
        "-l",
        "--limit",
        metavar="PATTERN",
        help="Ansible host pattern, e.g. 'tier0', 'ehr*:&site_north', '!ws_*'.",
    )(f)


def json_option(f: Callable) -> Callable:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (stable keys, see docs/commands.md)."
    )(f)


def emit_json(data: Any) -> None:
    """JSON on stdout; host strings in it are escaped, never raw terminal control (`safe_text`)."""
    click.echo(json_text(data, indent=2, sort_keys=False, default=str))


def console() -> Console:
    """Tables go to stdout; rich decides colour from the terminal, and plain text when piped."""
    from rich.console import Console

    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def command_args(ctx: click.Context) -> dict[str, Any]:
    """A command's parameters as recorded in the audit log (the audit module redacts secrets)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in ctx.params.items()}


class IsoTime(click.ParamType):
    """ISO 8601 (2026-11-30T08:00:00Z, 2026-11-30 08:00); without a zone, UTC."""

    name = "TIME"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-30T08:00:00Z)", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
