"""The winrm connection's and PowerShell shell plugin's own scripts (ansible-core 2.19), on the state.

They reach the host through the same bootstrap as modules. fetch_file runs `winrm_fetch_file.ps1` once per chunk (Path, BufferSize, Offset) and reads the chunk as
base64 on stdout (nothing at the end of the file, `[DIR]` for a directory, an error line and exit 1 for
a missing path). put_file runs `winrm_put_file.ps1` (Path) with the file as base64 lines on the pipeline
and checks the `{"sha1": ...}` it prints against its own hash. An action plugin that needs a remote
temporary directory (win_copy) runs `powershell_mkdtemp.ps1` (Directory, Name: the new directory's full
path on stdout) and `powershell_expand_user.ps1` (Path: `~` is the user's profile).
"""

from __future__ import annotations

import base64
import hashlib
import json
import ntpath
from typing import TYPE_CHECKING, Any

from orchestrator_lab.windows.hoststate import entry_bytes, expand_env, normalize_path

if TYPE_CHECKING:
    from orchestrator_lab.windows.commands import Session

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


def mkdtemp(params: dict[str, Any], _input: bytes, session: Session) -> Answer:
    directory = expand_env(str(params["Directory"]), session.env)
    path = normalize_path(ntpath.join(directory, str(params["Name"])), session.cwd)
    state = session.state
    if state.file(path) or state.is_dir(path):
        return "", f"An item with the specified name {path} already exists.\r\n", 1
    state.make_dir(path)
    return path + "\r\n", "", 0


def expand_user(params: dict[str, Any], _input: bytes, session: Session) -> Answer:
    path, profile = str(params["Path"]), session.env["USERPROFILE"]
    if path == "~":
        return profile + "\r\n", "", 0
    if path.startswith("~\\"):
        return ntpath.join(profile, path[2:]) + "\r\n", "", 0
    return path + "\r\n", "", 0


SCRIPTS = {
    "winrm_fetch_file.ps1": fetch,
    "winrm_put_file.ps1": put,
    "powershell_mkdtemp.ps1": mkdtemp,
    "powershell_expand_user.ps1": expand_user,
}
