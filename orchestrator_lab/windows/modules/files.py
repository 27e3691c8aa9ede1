"""ansible.windows.win_find and win_stat, answered from the host state's files and directories.

Result keys follow the modules (ansible.windows 3.x): win_find's `files[]` and win_stat's `stat` carry
path, filename, extension, size, checksum, attributes and times. What the state does not record is
reported as a freshly installed NTFS volume would: every file `Archive` only (none hidden, read-only,
linked or shared), owned by BUILTIN\\Administrators, created, written and accessed at its mtime.
"""

from __future__ import annotations

import ntpath
import re
from datetime import datetime
from typing import Any

from orchestrator_lab.windows.hoststate import HostState, entry_digest, matches, normalize_path
from orchestrator_lab.windows.modules.base import Call, Emulator, Fail

OWNER = "BUILTIN\\Administrators"


def _epoch(mtime: Any) -> float:
    if not mtime:
        return 0.0
    return datetime.fromisoformat(str(mtime).replace("Z", "+00:00")).timestamp()


def _dir_mtime(state: HostState, path: str) -> Any:
    return max((e.get("mtime") or "" for _p, e in state.files_under(path)), default="")


def _info(state: HostState, path: str, is_dir: bool, algorithm: str | None) -> dict[str, Any]:
    """The properties win_find and win_stat both report for a file or directory."""
    entry = {} if is_dir else state.data["files"][path]
    moment = _epoch(_dir_mtime(state, path) if is_dir else entry.get("mtime"))
    name = ntpath.basename(path) or path
    info: dict[str, Any] = {
        "exists": True,
        "attributes": "Directory" if is_dir else "Archive",
        "isarchive": not is_dir,
        "isdir": is_dir,
        "ishidden": False,
        "isjunction": False,
        "islnk": False,
        "isreadonly": False,
        "isreg": not is_dir,
        "isshared": False,
        "nlink": 1,
        "hlnk_targets": [],
        "creationtime": moment,
        "lastaccesstime": moment,
        "lastwritetime": moment,
        "owner": OWNER,
        "path": path,
        "filename": name,
    }
    if not is_dir:
        info["extension"] = ntpath.splitext(name)[1]
        info["size"] = int(entry.get("size", 0))
        if algorithm:
            checksum = entry_digest(entry, algorithm)
            if checksum is None:
                raise Fail(
                    "Failed to get hash of file, set get_checksum to False to ignore this error: the lab's "
                    f"Windows stand-in keeps no bytes for '{path}'"
                )
            info["checksum"] = checksum
    return info


def win_stat(call: Call) -> None:
    state, params = call.session.state, call.params
    path = normalize_path(params["path"], call.session.cwd)
    found = state.file(path)
    algorithm = params["checksum_algorithm"] if params["get_checksum"] else None
    if found:
        stat = _info(state, found[0], False, algorithm)
    elif state.is_dir(path):
        real = state.dir_name(path)
        stat = _info(state, real, True, None)
        if params["get_size"]:
            stat["size"] = sum(int(e.get("size", 0)) for _p, e in state.files_under(real))
    else:
        stat = {"exists": False}
    if not params["get_size"]:
        stat.pop("size", None)
    call.result["stat"] = stat


def win_find(call: Call) -> None:
    state, params = call.session.state, call.params
    patterns = params["patterns"]
    if params["use_regex"] and patterns:
        flags = 0 if params["case_sensitive"] else re.IGNORECASE
        regexes = [re.compile(p, flags) for p in patterns]

        def wanted(name: str) -> bool:
            return any(r.search(name) for r in regexes)

    else:

        def wanted(name: str) -> bool:
            return patterns is None or any(matches(name, p) for p in patterns)

    algorithm = params["checksum_algorithm"] if params["get_checksum"] else None
    found: list[dict[str, Any]] = []
    checked: set[str] = set()  # overlapping paths report a file once, as the module does

    def search(directory: str, depth: int) -> None:
        for child, is_dir in state.children(directory):
            if is_dir and params["recurse"] and depth != 1:
                search(child, depth - 1)
            if child.casefold() in checked:
                continue
            checked.add(child.casefold())
            kind = params["file_type"]
            if kind != "any" and (kind == "directory") != is_dir:
                continue
            if not wanted(ntpath.basename(child)):
                continue
            info = _info(state, child, is_dir, None if is_dir else algorithm)
            info.setdefault("checksum", None)
            info.setdefault("extension", None)
            info.setdefault("size", None)
            info.update(sharename=None, lnk_source=None, lnk_target=None)
            found.append(info)

    for raw in params["paths"]:
        path = normalize_path(call.expand(str(raw)), call.session.cwd)
        if state.file(path):
            call.warn(f"Argument path '{path}' is a file not a directory, skipping")
        elif not state.is_dir(path):
            call.warn(f"Argument path '{path}' does not exist or is not accessible, skipping")
        else:
            search(state.dir_name(path), params["depth"] or 0)
    files = sorted(found, key=lambda f: str(f["path"]).casefold())
    call.result.update(examined=len(checked), matched=len(files), files=files)


MODULES = {
    "ansible.windows.win_stat": Emulator(win_stat),
    "ansible.windows.win_find": Emulator(win_find, not_emulated=("age", "size")),
}
