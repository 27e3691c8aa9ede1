"""`orchestrator completion SHELL`: print the shell completion script (Click's own)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    Examples:
      eval "$(orchestrator completion bash)"          # this shell
      orchestrator completion bash > /etc/bash_completion.d/orchestrator
    """
    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None
    comp = cls(root.command, {}, "orchestrator", "_ORCHESTRATOR_COMPLETE")
    click.echo(comp.source())


commands = [completion]
