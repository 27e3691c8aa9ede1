"""ansible-runner's pseudo-terminal without pexpect's fixed sleeps.

ansible-runner reads ansible-playbook's output through pexpect, which sleeps 0.1 ms after every read
(about 1 ms with the kernel's timer slack: a stage of 60 events loses 0.1 s) and a flat 0.1 s when it
closes the terminal, "to give the kernel time" to reap the child. bench/run.py measured both as most
of the orchestrator's overhead over plain ansible-playbook. Here reads do not sleep, and closing
waits for the child's exit only as long as it takes, never longer than pexpect would have slept;
whatever pexpect then does (terminate a child still alive) is unchanged.

Only ansible-runner's own reference to pexpect is redirected (`install`), so nothing else in the
process is affected.
"""

from __future__ import annotations

import time
import types
from typing import Any

import pexpect
from ptyprocess import PtyProcess

_POLL = 0.001


class PromptPtyProcess(PtyProcess):
    def close(self, force: bool = True) -> None:
        if not self.closed:
            deadline = time.monotonic() + self.delayafterclose
            while self.isalive() and time.monotonic() < deadline:
                time.sleep(_POLL)
            saved, self.delayafterclose = self.delayafterclose, 0
            try:
                super().close(force)
            finally:
                self.delayafterclose = saved


class PromptSpawn(pexpect.spawn):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delayafterread = None

    def _spawnpty(self, args: list[str], **kwargs: Any) -> PtyProcess:
        return PromptPtyProcess.spawn(args, **kwargs)


def install() -> None:
    """Point ansible-runner's runner module at a copy of pexpect whose `spawn` is PromptSpawn."""
    import ansible_runner.runner as runner_module

    if getattr(runner_module.pexpect, "spawn", None) is PromptSpawn:
        return
    facade = types.ModuleType("pexpect")
    facade.__dict__.update(vars(pexpect))
    facade.spawn = PromptSpawn  # type: ignore[attr-defined]
    runner_module.pexpect = facade  # type: ignore[attr-defined]
