"""Ctrl-C during a triage, taken at points where stopping is safe.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT arrives. In a
triage that is often inside the recorder's database write (unreachable hosts answer by the thousand
and every 200 results are written in one go): interrupted there, the SQLite connection kept the
write lock, so storing what was done waited 30 s for that lock and failed, the finished hosts lost
and the exit code 2 instead of 130. Elsewhere it can land inside the thread pool's or a queue's own
locking. So while a triage runs, SIGINT only sets a flag: the dispatch loop looks at it between
results (at least once a second), drops the hosts not yet started, closes the node links and raises
KeyboardInterrupt from there, and the run's results are then stored in one transaction.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType


class Interrupt:
    """A context in which SIGINT is noted in `requested` instead of raised; leaving it raises
    KeyboardInterrupt if one was noted and nothing else is being raised.

    Only Python's own Ctrl-C handler in the main thread is replaced: a caller with its own handler
    (or one that ignores SIGINT), or a triage run from another thread, keeps what it had."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._installed = False

    def __enter__(self) -> Interrupt:
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._note)
            self._installed = True
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.requested.set()

    def check(self) -> None:
        """Raise KeyboardInterrupt here if Ctrl-C was pressed since the context was entered."""
        if self.requested.is_set():
            raise KeyboardInterrupt

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._installed = False
        if exc_type is None:
            self.check()
