"""`Prefetch`: the inventory loaded by a forked helper while the caller goes on with its start-up, and
how its variables cross the pipe (Ansible's trusted templates stay trusted)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from orchestrator.errors import InventoryError
from orchestrator.inventory.loading import quiet_unparsed_warning
from orchestrator.inventory.model import Host, Inventory, Problem


class Prefetch:
    """An inventory loaded by a forked helper process while the caller goes on with its own start-up.

    Ansible's imports and parsing take about 0.3 s, and `orchestrator run` spends as long importing the
    database layer and reading the plan before it needs the hosts: with two cores, the inventory is
    ready when the engine asks. Hosts cross the pipe as JSON, and their variables with them, in memory
    only (a pipe between this process and its own fork): vault-encrypted values arrive decrypted, as
    Ansible would decrypt them on use; dates arrive as text; text Ansible trusted as a template arrives
    as `TrustedTemplate`, which `ansible_value` trusts again, so a `{{ lookup('env', ...) }}` password
    renders exactly as it would have. The result has no host patterns (`select`): callers that need
    them use `load`. Where the helper cannot help (no fork, other threads running that a fork could
    catch holding a lock, the helper crashed, a value it could not decrypt), the inventory is loaded
    here instead, so an error reads exactly as it would without the helper.
    """

    def __init__(self, sources: Sequence[str]) -> None:
        self.sources = list(sources)
        self._pid: int | None = None
        self._fd: int | None = None
        quiet_unparsed_warning()  # as load() does
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return
        read, write = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # no process to spare: load in this one when asked
            os.close(read)
            os.close(write)
            return
        if pid == 0:  # the helper: never returns, never runs the parent's exit handlers
            code = 1
            try:
                os.close(read)
                _send_inventory(write, self.sources)
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self._pid, self._fd = pid, read

    def result(self) -> Inventory:
        from orchestrator.inventory.cache import load

        if self._fd is None:
            return load(self.sources)
        with os.fdopen(self._fd, "rb") as pipe:
            self._fd = None
            data = pipe.read()
        self._reap()
        try:
            payload = json.loads(data, object_hook=_trusted_template)
        except ValueError:  # the helper died before answering: load here, with the real error
            return load(self.sources)
        if "error" in payload:
            raise InventoryError(payload["error"], payload["problems"])
        return Inventory(
            sources=self.sources,
            hosts={h["name"]: Host(**h) for h in payload["hosts"]},
            groups=payload["groups"],
            problems=[Problem(**p) for p in payload["problems"]],
        )

    def close(self) -> None:
        """Stop a helper whose answer is no longer wanted (the caller failed before asking)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = None

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _send_inventory(fd: int, sources: list[str]) -> None:
    from orchestrator.inventory.cache import load

    try:
        inventory = load(sources)
        from ansible.template import is_trusted_as_template

        hosts = inventory.hosts.values()
        payload: dict[str, Any] = {
            "hosts": [{**h.to_dict(), "vars": _portable(h.vars, is_trusted_as_template)} for h in hosts],
            "groups": inventory.groups,
            "problems": [asdict(p) for p in inventory.problems],
        }
    except InventoryError as exc:
        payload = {"error": str(exc), "problems": exc.problems}
    # default=str: vault-encrypted values decrypt (or the helper fails, and the caller loads itself).
    data = json.dumps(payload, default=str).encode()
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(data)


# How a trusted template crosses the pipe: a JSON object with this one key.
_TEMPLATE_KEY = "__orchestrator_trusted_template__"


class TrustedTemplate(str):
    """Text Ansible trusted as a template where it read it (an inventory file, not a remote answer),
    after it crossed from `Prefetch`'s helper as plain JSON (see `ansible_value`)."""


def _portable(value: Any, trusted: Callable[[object], bool]) -> Any:
    """Variables as JSON data, each trusted template marked (ansible-core renders only those)."""
    if isinstance(value, str):
        # TrustedTemplate: already marked (an inventory read from the cache), trusted as it was.
        if ("{{" in value or "{%" in value) and (isinstance(value, TrustedTemplate) or trusted(value)):
            return {_TEMPLATE_KEY: str(value)}
        return value
    if isinstance(value, dict):
        return {str(k): _portable(v, trusted) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_portable(v, trusted) for v in value]
    return value


def _trusted_template(obj: dict[str, Any]) -> Any:
    return TrustedTemplate(obj[_TEMPLATE_KEY]) if len(obj) == 1 and _TEMPLATE_KEY in obj else obj


def ansible_value(value: Any) -> Any:
    """A variable as Ansible's templar must see it: TrustedTemplate text trusted again (values from
    `load` are Ansible's own and come back unchanged)."""
    if isinstance(value, TrustedTemplate):
        from ansible.template import trust_as_template

        return trust_as_template(str(value))
    if isinstance(value, dict):
        items = {k: ansible_value(v) for k, v in value.items()}
        return items if any(items[k] is not v for k, v in value.items()) else value
    if isinstance(value, list):
        elements = [ansible_value(v) for v in value]
        return elements if any(a is not b for a, b in zip(elements, value, strict=True)) else value
    return value
