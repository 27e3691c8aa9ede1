"""What Ansible's PowerShell exec wrapper receives on stdin, decoded.

Ansible (ansible-core 2.19, `ansible/executor/powershell/module_manifest.py`) runs every Windows module and
its winrm connection's fetch/put as `powershell -EncodedCommand <bootstrap_wrapper.ps1>` and writes to
stdin: the bootstrap JSON (`{"name": "exec_wrapper", "script", "params"}`), a line of four NULs, the exec
manifest JSON (`{"scripts": {name: {"path", "script": base64}}, "actions": [{"name", "params",
"secure_params"}], "signed_hashlist"}`), and for a script that reads the pipeline (put_file) another NUL
line followed by that input. The last action is what runs (`module_wrapper.ps1` for a module, whose
`Script` names the module and whose `complex_args` variable holds its arguments); earlier actions wrap
it (become, async, coverage).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SEPARATOR = b"\n\0\0\0\0\n"
MODULE_WRAPPER = "module_wrapper.ps1"


class ManifestError(ValueError):
    """The stdin is not an exec wrapper manifest."""


@dataclass(frozen=True)
class Invocation:
    action: str  # the script that runs: module_wrapper.ps1, winrm_fetch_file.ps1, ...
    params: dict[str, Any]
    wrappers: tuple[str, ...] = ()  # actions around it: become_wrapper.ps1, async_wrapper.ps1, ...
    pipeline_input: bytes = b""
    module: str = ""  # for module_wrapper.ps1: the module's FQCN
    module_args: dict[str, Any] = field(default_factory=dict)


def parse(stdin: bytes) -> Invocation:
    parts = stdin.split(SEPARATOR, 2)
    if len(parts) < 2:
        raise ManifestError("no exec wrapper manifest on stdin")
    try:
        bootstrap = json.loads(parts[0])
        manifest = json.loads(parts[1])
    except ValueError as exc:
        raise ManifestError(f"exec wrapper manifest is not JSON: {exc}") from exc
    if not isinstance(bootstrap, dict) or bootstrap.get("name") != "exec_wrapper":
        raise ManifestError("stdin does not start with the exec_wrapper bootstrap")
    actions = manifest.get("actions") if isinstance(manifest, dict) else None
    if not actions or not all(isinstance(a, dict) and a.get("name") for a in actions):
        raise ManifestError("exec wrapper manifest has no actions")
    last = actions[-1]
    params = dict(last.get("params") or {})
    invocation = Invocation(
        action=str(last["name"]),
        params=params,
        wrappers=tuple(str(a["name"]) for a in actions[:-1]),
        pipeline_input=parts[2] if len(parts) > 2 else b"",
    )
    if invocation.action != MODULE_WRAPPER:
        return invocation
    args = next(
        (v.get("Value") for v in params.get("Variables") or [] if v.get("Name") == "complex_args"), None
    )
    return Invocation(
        action=invocation.action,
        params=params,
        wrappers=invocation.wrappers,
        pipeline_input=invocation.pipeline_input,
        module=module_name(str(params.get("Script", ""))),
        module_args=dict(args or {}),
    )


def module_name(script: str) -> str:
    """`ansible_collections.ansible.windows.plugins.modules.win_stat.ps1` -> `ansible.windows.win_stat`."""
    name = script.removesuffix(".ps1")
    parts = name.split(".")
    if parts[0] == "ansible_collections" and len(parts) >= 6 and parts[3:5] == ["plugins", "modules"]:
        return ".".join([parts[1], parts[2], *parts[5:]])
    return name
