"""Progress observers that cannot stop a run.

An observer only draws (progress bars, lines on the operator's terminal). If drawing fails (a host
string rich refused, a closed terminal, a bug in a renderer), the recovery must go on: the hosts are
halfway through destructive stages and the database, not the screen, is the record. The first
failure is logged, once, on stderr through `logging`; later calls still reach the observer (one bad
host string must not blank the display for the others) and their failures are only counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from orchestrator.safe_text import plain

log = logging.getLogger("orchestrator.observer")
T = TypeVar("T")


class Guarded:
    """Forwards every method call to `inner`; what one raises is logged (the first) or counted."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.error: BaseException | None = None
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return target(*args, **kwargs)
            except Exception as exc:
                self.failures += 1
                if self.error is None:
                    self.error = exc
                    log.warning(
                        "the progress display failed (%s: %s); the run goes on",
                        type(exc).__name__,
                        plain(exc),
                    )
                return None

        return call


def guarded(observer: T | None) -> T | None:
    """`observer` wrapped in `Guarded` (typed as itself), or None."""
    return None if observer is None else cast(T, Guarded(observer))


def guarded_callback(callback: Callable[..., None] | None) -> Callable[..., None] | None:
    """A single callback (triage's `on_result`) guarded the same way."""
    return None if callback is None else Guarded(SimpleNamespace(call=callback)).call
