"""Triage: which hosts are infected? Every selected host checked over SSH or WinRM against the check
packs, concurrently, with a verdict, bounded evidence and an estimated compromise time stored per host.

`run()` (in `runner`) is the one entry point the CLI or a script calls; the parts are `packs`
(indicators as data), `scripts` (each OS's single check script and its output), `transports` (SSH and
WinRM), `engine` (hosts x checks -> verdicts) and `results` (the database side). Importing the package
stays cheap (no SSH or database library) because every command of the CLI imports it at start-up.
"""

from __future__ import annotations

from typing import Any

from orchestrator.lifecycle import VERDICTS  # noqa: F401 (triage.VERDICTS, as before)

DEFAULT_FORKS = 50
DEFAULT_TIMEOUT = 60.0


def __getattr__(name: str) -> Any:
    """`triage.run`, `triage.Outcome`, `triage.Settings`, imported on first use."""
    if name in ("run", "Outcome"):
        from orchestrator.triage import runner

        return getattr(runner, name)
    if name == "Settings":
        from orchestrator.triage.engine import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
