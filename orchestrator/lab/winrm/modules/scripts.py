"""The winrm connection's own file transfer scripts (ansible-core 2.19), answered from the host state.

fetch_file runs `winrm_fetch_file.ps1` once per chunk (Path, BufferSize, Offset) and reads the chunk as
base64 on stdout (nothing at the end of the file, `[DIR]` for a directory, an error line and exit 1 for
a missing path). put_file runs `winrm_put_file.ps1` (Path) with the file as base64 lines on the pipeline
and checks the `{"sha1": ...}` it prints against its own hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ntpath
from typing import TYPE_CHECKING, Any

from orchestrator.lab.winrm.hoststate import entry_bytes, normalize_path

if TYPE_CHECKING:
    from orchestrator.lab.winrm.commands import Session

Answer = tuple[str, str, int]  # stdout, stderr, exit code


def fetch(params: dict[str, Any], _input: bytes, session: Session) -> Answer:
    raw = str(params.get("Path", ""))
    path = normalize_path(raw, session.cwd)
    state = session.state
    found = state.file(path)
    if found is None:
        if state.is_dir(path):
            return "[DIR]\r\n", "", 0
        return "", f"{raw} does not exist\r\n", 1
    chunk = entry_bytes(found[1], int(params.get("Offset", 0)), int(params.get("BufferSize", 0)))
    if chunk is None:
        return "", f"The lab's Windows stand-in keeps no bytes for '{found[0]}'\r\n", 1
    return (base64.b64encode(chunk).decode() + "\r\n") if chunk else "", "", 0


def put(params: dict[str, Any], pipeline_input: bytes, session: Session) -> Answer:
    raw = str(params.get("Path", ""))
    path = normalize_path(raw, session.cwd)
    state = session.state
    if state.is_dir(path):
        return "", f"Access to the path '{path}' is denied.\r\n", 1
    if not state.is_dir(ntpath.dirname(path)):
        return "", f"Could not find a part of the path '{path}'.\r\n", 1
    data = b"".join(base64.b64decode(line) for line in pipeline_input.split(b"\n") if line.strip())
    state.write_bytes(path, data)
    return json.dumps({"sha1": hashlib.sha1(data).hexdigest()}) + "\r\n", "", 0


SCRIPTS = {"winrm_fetch_file.ps1": fetch, "winrm_put_file.ps1": put}
