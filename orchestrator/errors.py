"""Errors the CLI turns into one line on stderr and an exit code.

Library code raises these instead of printing, so the same functions can be used from tests,
scripts or another front end without Click.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Bad input or a refused operation: exit code 2, nothing written."""

    exit_code = 2


class InventoryError(OrchestratorError):
    """The inventory could not be loaded or does not pass validation."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class StoreError(OrchestratorError):
    """The state database cannot be used (wrong version, unreachable, corrupt)."""


class RefusedError(OrchestratorError):
    """A guarded operation was refused (no approved plan, protected host, ...)."""


class HostsFailed(Exception):
    """The operation ran, but some hosts failed: exit code 1."""

    exit_code = 1
