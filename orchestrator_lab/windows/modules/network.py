"""ansible.windows.win_ping (what wait_for_connection runs) and win_wait_for on the stand-in.

win_wait_for's port checks are real TCP connects, made by the stand-in on the host's behalf: the host's
own names (127.0.0.1, localhost, its computer name) mean the address the stand-in serves it on, so a
port answers when something on the lab really listens there (the stand-in's WinRM port does). Other
loopback addresses are tried as given; any other host is refused (the lab never leaves 127.0.0.0/8).
Path waits read the state, re-read each attempt so a change made from outside (the lab) is seen.
`state: drained` (active connections) is not emulated.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time

from orchestrator_lab.windows.hoststate import normalize_path
from orchestrator_lab.windows.modules.base import Call, Emulator, Fail, not_emulated


def win_ping(call: Call) -> None:
    if call.params["data"] == "crash":
        raise Fail("Unhandled exception while executing module: boom")
    call.result["ping"] = call.params["data"]


def _target(call: Call, host: str) -> str:
    own = {"127.0.0.1", "localhost", "::1", "0.0.0.0", call.session.state.hostname.casefold()}
    if host.casefold() in own:
        return call.session.address
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise Fail(not_emulated(f"waiting on host {host} (outside the lab's loopback network) in {call.module}"))


def _port_open(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _file_matches(call: Call, path: str, regex: str | None) -> bool:
    state = call.session.state
    state.refresh()
    found = state.file(path)
    if regex is None:
        return bool(found) or state.is_dir(path)
    return bool(found) and re.search(regex, str(found[1].get("content", ""))) is not None


def win_wait_for(call: Call) -> None:
    p = call.params
    port, path, state, regex = p["port"], p["path"], p["state"], p["regex"]
    if port is not None and path is not None:
        raise Fail("port and path parameter can not both be passed to win_wait_for")
    if state == "drained" or p["exclude_hosts"] is not None:
        raise Fail(not_emulated(f"state=drained of module {call.module}"))
    if path is not None and state == "stopped":
        raise Fail(f"state={state} should only be used for checking a port in the win_wait_for module")
    if port is not None and regex is not None:
        raise Fail("regex should by used when checking a string in a file in the win_wait_for module")
    started = time.monotonic()
    if p["delay"]:
        time.sleep(p["delay"])
    if path is None and port is None:
        time.sleep(p["timeout"])
        call.result["elapsed"] = time.monotonic() - started
        return
    wanted = state in ("present", "started")
    if port is not None:
        address = _target(call, p["host"])

        def reached() -> bool:
            return _port_open(address, port, p["connect_timeout"]) == wanted

        what = f"{p['host']}:{port} to {'start' if wanted else 'stop'} listening"
    else:
        path = normalize_path(call.expand(path), call.session.cwd)

        def reached() -> bool:
            return _file_matches(call, path, regex) == wanted

        if regex is None:
            what = f"file {path} to be {'present' if wanted else 'absent'}"
        else:
            what = f"string regex {regex} in file {path} to {'match' if wanted else 'not match'}"
    attempts = 0
    while True:
        attempts += 1
        if reached():
            break
        if time.monotonic() - started >= p["timeout"]:
            raise Fail(
                f"timeout while waiting for {what}",
                elapsed=time.monotonic() - started,
                wait_attempts=attempts,
            )
        time.sleep(p["sleep"])
    call.result["elapsed"] = time.monotonic() - started
    call.result["wait_attempts"] = attempts


MODULES = {
    "ansible.windows.win_ping": Emulator(win_ping),
    # a legacy (Parse-Args) module: unknown options are ignored, as on Windows
    "ansible.windows.win_wait_for": Emulator(win_wait_for, strict=False),
}
