"""Ansible's Windows modules on the stand-in: emulated from the host state, never executed.

What Ansible really sends is answered: the winrm connection runs `powershell -EncodedCommand
<bootstrap_wrapper.ps1>` and writes the exec wrapper manifest on stdin (`manifest.py`). The stand-in
cannot run the module's PowerShell (nor its C# utils), so it reads which module it is and its arguments,
checks them as Ansible.Basic would, against the module's own documented specification (`base.py`), and
answers with the JSON result the module would print for a host in this state: the same keys
(`files[].path`, `stat.checksum`, `services[].state`, `changed`...), `_ansible_check_mode` honoured (a
module reports the change and writes nothing), the state file updated otherwise. The winrm connection's
fetch_file/put_file scripts (and the shell's temporary directory) are answered the same way (`scripts.py`).

Emulated (what the stage playbooks use): ansible.windows win_find, win_stat, win_regedit,
win_service_info, win_wait_for, win_ping (wait_for_connection), win_copy, win_firewall;
community.windows win_unzip, win_firewall_rule; the connection's fetch/put and the shell's temporary
directory. Any other module, or become/async around one, gets a failed result that names the stand-in;
options the emulation does not cover are refused by name, not ignored.

Only real Windows (the Vagrant lab) confirms: the modules' own code and module_utils (C# compilation,
Ansible.Basic's exact messages), NTFS attributes, ACLs, owners, links and shares, the registry's value
types beyond REG_SZ/REG_DWORD, the Service Control Manager's details, what is really listening on a
port, what the firewall really filters, become (runas), async, and PowerShell's CLM/AMSI/execution
policy.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from orchestrator_lab.windows.modules import files, firewall, network, registry, scripts, services, uploads
from orchestrator_lab.windows.modules.base import (
    Call,
    Emulator,
    Fail,
    argument_spec,
    check_arguments,
    not_emulated,
)
from orchestrator_lab.windows.modules.manifest import MODULE_WRAPPER, ManifestError, parse

if TYPE_CHECKING:
    from orchestrator_lab.windows.commands import Session

log = logging.getLogger("orchestrator_lab.windows")
EMULATED: dict[str, Emulator] = {
    **files.MODULES,
    **registry.MODULES,
    **services.MODULES,
    **network.MODULES,
    **uploads.MODULES,
    **firewall.MODULES,
}


def is_exec_bootstrap(script: str) -> bool:
    """Ansible's bootstrap_wrapper.ps1: reads a JSON manifest from stdin, up to a line of NULs."""
    return "$input" in script and "`0`0`0`0" in script and "ConvertFrom-Json" in script


def run(stdin: bytes, session: Session) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of the exec wrapper for this stdin."""
    try:
        invocation = parse(stdin)
    except ManifestError as exc:
        return "", f"The lab's Windows stand-in cannot read Ansible's exec wrapper input: {exc}\r\n", 1
    if invocation.wrappers:
        what = ", ".join(w.removesuffix(".ps1") for w in invocation.wrappers)
        subject = f"module {invocation.module}" if invocation.module else invocation.action
        return _failed({"msg": not_emulated(f"{subject} running under {what}")})
    if invocation.action != MODULE_WRAPPER:
        script = scripts.SCRIPTS.get(invocation.action)
        if script is None:
            return _failed({"msg": not_emulated(f"exec wrapper script {invocation.action}")})
        return script(invocation.params, invocation.pipeline_input, session)
    return _module(invocation.module, invocation.module_args, session)


def _module(module: str, args: dict[str, Any], session: Session) -> tuple[str, str, int]:
    emulator = EMULATED.get(module)
    if emulator is None:
        return _failed({"msg": not_emulated(f"module {module}")})
    call = Call(module, {}, bool(args.get("_ansible_check_mode")), session, args=args)
    try:
        call.params = check_arguments(module, args, emulator)
        for option in argument_spec(module)[1]:
            if isinstance(call.params[option], str):
                call.params[option] = call.expand(call.params[option])
        emulator.run(call)
    except Fail as failure:
        return _failed({**call.result, **failure.result, "msg": failure.msg})
    except Exception as exc:  # an emulation bug: fail the task as the exec wrapper does, keep serving
        log.exception("%s: emulating %s failed", session.state.hostname, module)
        return _failed(
            {"msg": f"Unhandled exception while executing module (lab's Windows stand-in): {exc!r}"}
        )
    call.result["invocation"] = {"module_args": call.params}
    return json.dumps(call.result) + "\r\n", "", 0


def _failed(result: dict[str, Any]) -> tuple[str, str, int]:
    return json.dumps({"changed": False, **result, "failed": True}) + "\r\n", "", 1
