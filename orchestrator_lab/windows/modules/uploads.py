"""ansible.windows.win_copy and community.windows.win_unzip: files arriving from the controller.

win_copy is driven by its action plugin: a `query` run (which of the controller's files differ from the
host's, by SHA-1), the file put into a temporary directory (`scripts.py`), then a `single` run that
copies it into place. Copying a directory tree (`explode`) and `remote_src` are not emulated. win_unzip
expands a .zip from the state into the state, as System.IO.Compression does (entries escaping `dest`
refused); PSCX archives (other formats, `recurse`, `password`) are not emulated.
"""

from __future__ import annotations

import io
import ntpath
import re
import zipfile
from datetime import datetime

from orchestrator_lab.windows.hoststate import entry_bytes, entry_digest, normalize_path
from orchestrator_lab.windows.modules.base import Call, Emulator, Fail, not_emulated


def _query(call: Call, dest: str) -> None:
    state = call.session.state
    files, directories = [], []
    for item in call.args.get("files") or []:
        target = ntpath.join(dest, str(item["dest"]))
        if state.is_dir(target):
            target = ntpath.join(target, re.split(r"[\\/]", str(item["src"]))[-1])
        found = state.file(target)
        if found:
            if call.params["force"] and entry_digest(found[1], "sha1") != item.get("checksum"):
                files.append(item)
        elif state.is_dir(target):
            raise Fail(f"cannot copy file to dest '{target}': object at path is already a directory")
        else:
            files.append(item)
    for item in call.args.get("directories") or []:
        target = ntpath.join(dest, str(item["dest"]))
        if state.file(target):
            raise Fail(f"cannot copy folder to dest '{target}': object at path is already a file")
        if not state.is_dir(target):
            directories.append(item)
    call.result.update(files=files, directories=directories, symlinks=[])


def _single(call: Call, raw_dest: str, dest: str) -> None:
    state = call.session.state
    src = normalize_path(str(call.params["src"] or ""), call.session.cwd)
    found = state.file(src)
    if not found:
        raise Fail(f"Cannot copy src file: '{src}' as it does not exist")
    target = dest
    if raw_dest.endswith(("/", "\\")) or state.is_dir(dest):
        target = ntpath.join(dest, str(call.args.get("_original_basename") or ntpath.basename(src)))
    parent = ntpath.dirname(target)
    if state.file(parent):
        raise Fail(f"object at destination parent dir '{parent}' is currently a file")
    data = entry_bytes(found[1])
    if data is None:
        raise Fail(f"the lab's Windows stand-in keeps no bytes for '{src}'")
    with state.batch():
        if not state.is_dir(parent):
            if target == dest:
                raise Fail(f"Destination directory '{parent}' does not exist")
            state.make_dir(parent)
        state.write_bytes(target, data)
    call.result["changed"] = True


def win_copy(call: Call) -> None:
    mode = str(call.args.get("_copy_mode", "single"))
    raw_dest = str(call.params["dest"])
    dest = normalize_path(raw_dest, call.session.cwd)
    if mode == "query":
        _query(call, dest)
    elif mode == "single":
        _single(call, raw_dest, dest)
    else:
        raise Fail(
            not_emulated(f"copying a directory tree or remote_src (_copy_mode {mode}) of {call.module}")
        )


def win_unzip(call: Call) -> None:
    p, state = call.params, call.session.state
    src = normalize_path(p["src"], call.session.cwd)
    dest = normalize_path(p["dest"], call.session.cwd)
    call.result.update(src=src.replace("$", ""), dest=dest.replace("$", ""), removed=False)
    if p["creates"]:
        creates = normalize_path(p["creates"], call.session.cwd)
        if state.file(creates) or state.is_dir(creates):
            call.result.update(skipped=True, msg=f"The file or directory '{creates}' already exists.")
            return
    found = state.file(src)
    if not found:
        raise Fail(f"File '{src}' does not exist.")
    if not src.lower().endswith(".zip") or p["recurse"] or p["password"]:
        raise Fail(not_emulated(f"expanding with PSCX (not a .zip, recurse or password) in {call.module}"))
    data = entry_bytes(found[1])
    if data is None:
        raise Fail(f"the lab's Windows stand-in keeps no bytes for '{src}'")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise Fail(
            f"Error unzipping '{src}' to '{dest}'!. Method: System.IO.Compression.ZipFile, Exception: {exc}"
        ) from exc
    write = not call.check_mode
    with state.batch():
        if not state.is_dir(dest) and write:
            state.make_dir(dest)
        for info in archive.infolist():
            target = normalize_path(ntpath.join(dest, info.filename.replace("/", "\\")))
            if not target.casefold().startswith(dest.casefold().rstrip("\\") + "\\"):
                raise Fail(
                    f"Error unzipping '{src}' to '{dest}'! Filename contains relative paths which would extract "
                    f"outside the destination: {target}"
                )
            if write and not state.is_dir(ntpath.dirname(target)):
                state.make_dir(ntpath.dirname(target))
            if write and info.is_dir():
                state.make_dir(target)
            elif write:
                mtime = datetime(*info.date_time).strftime("%Y-%m-%dT%H:%M:%SZ")
                state.write_bytes(target, archive.read(info), mtime=mtime)
            call.result["changed"] = True
        if p["delete_archive"]:
            if write:
                state.remove(found[0], recurse=True)
            call.result["removed"] = True


MODULES = {
    # legacy (Parse-Args) modules: unknown options are ignored, the action plugin's `_copy_mode`... read raw
    "ansible.windows.win_copy": Emulator(win_copy, not_emulated=("backup", "remote_src"), strict=False),
    "community.windows.win_unzip": Emulator(win_unzip, strict=False),
}
