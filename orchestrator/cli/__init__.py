"""The `orchestrator` command line: parse, call one library function, render.

No recovery logic lives here: every command calls a function in a module that can be used without
Click, and turns its result into a table or JSON.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import getpass
import importlib
import os
import sys
import traceback

import click

from orchestrator import __version__, private
from orchestrator.cli.context import AppContext
from orchestrator.errors import HostsFailed, OrchestratorError

EPILOG = """\b
Examples:
  orchestrator inventory check -i inventory/hospital
  orchestrator --db /srv/recovery/recovery.db inventory show -i inventory/hospital -l tier0 --json

Exit codes: 0 success, 1 ran but some hosts failed, 2 bad input or refused.
"""


# Command name -> the module of orchestrator.cli that defines it (its `commands` list). Imported when
# the command is used: `orchestrator status` does not pay for the report renderer's imports.
COMMANDS = {
    "audit": "audit_cmd",
    "completion": "completion_cmd",
    "contain": "run_cmd",
    "doctor": "doctor_cmd",
    "host": "host_cmd",
    "inventory": "inventory_cmd",
    "lab": "lab_cmd",
    "plan": "plan_cmd",
    "report": "report_cmd",
    "run": "run_cmd",
    "status": "status_cmd",
    "triage": "triage_cmd",
}


class OrchestratorGroup(click.Group):
    """Turns library errors into one stderr line and the documented exit code; loads each command
    family's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS.keys() | self.commands.keys())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(f"orchestrator.cli.{COMMANDS[cmd_name]}")
            for command in module.commands:
                self.add_command(command)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return self._invoke(ctx)
        finally:
            self._audit_head(ctx)

    @staticmethod
    def _audit_head(ctx: click.Context) -> None:
        """After a command that changed the state: the audit head on stderr, to be noted elsewhere
        (stdout stays the command's own, `--json` included)."""
        app = ctx.find_object(AppContext)
        if app is None:
            return
        try:
            line = app.audit_head_line()
        except Exception as exc:  # never hide the command's own outcome behind this line
            line = f"audit head: could not be read ({type(exc).__name__})"
        if line:
            click.echo(line, err=True)

    def _invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except OrchestratorError as exc:
            self._fail(ctx, exc, exc.exit_code)
        except HostsFailed as exc:
            self._fail(ctx, exc, exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # `orchestrator plan | head`: the reader left, as for any Unix tool
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # the last line of defence: never a bare traceback for an operator
            self._fail(ctx, exc, 2, prefix=f"internal error ({type(exc).__name__}): ")

    @staticmethod
    def _fail(ctx: click.Context, exc: BaseException, code: int, prefix: str = "") -> None:
        app = ctx.find_object(AppContext)
        if app is not None and app.debug:
            traceback.print_exception(exc, file=sys.stderr)
        from orchestrator.safe_text import plain

        text = str(exc).strip()
        message = plain(text.splitlines()[0]) if text else type(exc).__name__
        hint = " (rerun with --debug for the traceback)" if prefix and not (app and app.debug) else ""
        click.echo(f"error: {prefix}{message}{hint}", err=True)
        ctx.exit(code)


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the uid
        return f"uid{os.getuid()}"


@click.group(cls=OrchestratorGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar="ORCHESTRATOR_DB",
    default="recovery.db",
    show_default=True,
    metavar="PATH|URL",
    help="State database: a SQLite file path or any SQLAlchemy URL (env ORCHESTRATOR_DB).",
)
@click.option(
    "--operator",
    envvar="ORCHESTRATOR_OPERATOR",
    default=_default_operator,
    show_default="login name",
    help="Who is acting, recorded in the audit log (env ORCHESTRATOR_OPERATOR).",
)
@click.option(
    "--debug/--no-debug",
    envvar="ORCHESTRATOR_DEBUG",
    default=False,
    help="Show tracebacks on errors (env ORCHESTRATOR_DEBUG).",
)
@click.option(
    "--audit-key",
    envvar="ORCHESTRATOR_AUDIT_KEY",
    metavar="PATH",
    help="The key file of the audit chain and plan approvals, created 0600 on first use (env "
    "ORCHESTRATOR_AUDIT_KEY; default: beside a SQLite database as DB.audit-key, for a database URL "
    "~/.config/orchestrator/audit-key).",
)
@click.version_option(__version__, prog_name="orchestrator")
@click.pass_context
def main(ctx: click.Context, db: str, operator: str, debug: bool, audit_key: str | None) -> None:
    """Recover a fleet after ransomware: inventory, triage, plan, run, track.

    Every command reads the standard Ansible inventory (-i, repeatable) and keeps its
    state in one database, created on first use.
    """
    if ctx.invoked_subcommand != "lab":  # the lab sets its hosts' modes itself; its root is 0700
        # Everything the command and its children (SQLite, ansible-runner) create is private; the
        # previous umask comes back when it ends (tests run many commands in one process).
        ctx.with_resource(private.umask())
    ctx.obj = AppContext(db=db, operator=operator, debug=debug, argv=list(sys.argv[1:]), audit_key=audit_key)
    ctx.call_on_close(ctx.obj.close)


# CPython's default is (700, 10, 10); see `entry`.
GC_THRESHOLDS = (200_000, 50, 1000)


def entry() -> None:
    """The console script: the command, its exit handlers, then the process ends at once.

    Tearing the interpreter down (every module of Ansible and SQLAlchemy) takes about 0.2 s after the
    work is done and committed; an operator waits for it on every command, and `orchestrator run` pays
    it on top of its playbooks. Exit handlers still run and output is flushed before the exit.

    The cyclic garbage collector runs a hundred times less often than CPython's default: with
    50,000 hosts' inventory in memory (millions of objects), each collection walked all of them, and
    `plan` spent 12.2 s of CPU instead of 7.1 s (bench/scale.py's fleet). A command is one short
    process; the little cyclic garbage it makes waits for a later collection or for its exit.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)
