"""`run`'s progress bars: a wave whose hosts wait for their dependencies reads as done for this run,
and says how many wait, rather than standing still at "0/6"."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from orchestrator.cli.run_cmd import ProgressObserver
from orchestrator.execution.runner import HostResult


def _bars(progress: Progress) -> dict[str, tuple[float, float | None]]:
    return {str(t.description): (t.completed, t.total) for t in progress.tasks}


def test_parked_hosts_count_as_done_and_the_wave_says_how_many_wait() -> None:
    progress = Progress(console=Console(file=io.StringIO()))
    observer = ProgressObserver(progress)
    observer.wave(2, ["a", "b", "c"])
    observer.stage(2, "validate", 1, ["a", "b", "c"])
    observer.stage_end(2, "validate", {h: HostResult(True, "", "") for h in "abc"})
    observer.awaiting(["b", "c"])  # as they reach reconnect, before a's reconnect run
    assert _bars(progress) == {"wave 2 (2 awaiting dependencies)": (2, 3)}
    observer.stage(2, "reconnect", 1, ["a"])
    observer.stage_end(2, "reconnect", {"a": HostResult(True, "", "")})
    assert _bars(progress) == {"wave 2 (2 awaiting dependencies)": (3, 3)}
    # b's dependency came back: b reconnects; it is not counted twice, c still waits.
    observer.stage(2, "reconnect", 1, ["b"])
    observer.stage_end(2, "reconnect", {"b": HostResult(True, "", "")})
    assert _bars(progress) == {"wave 2 (1 awaiting dependencies)": (3, 3)}
    observer.stage(2, "reconnect", 1, ["c"])
    observer.stage_end(2, "reconnect", {"c": HostResult(False, "t", "unreachable")})
    assert _bars(progress) == {"wave 2": (3, 3)}


def test_hosts_parked_before_their_wave_bar_appears_are_counted_on_it() -> None:
    progress = Progress(console=Console(file=io.StringIO()))
    observer = ProgressObserver(progress)
    observer.awaiting(["x"])  # a rerun: x was validated before, parked at once
    observer.wave(3, ["x", "y"])
    assert _bars(progress) == {"wave 3 (1 awaiting dependencies)": (1, 2)}
