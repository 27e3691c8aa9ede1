"""ansible.windows.win_regedit on the host state's registry (keys and values, written back to the state).

The state holds a value's data only: JSON strings are REG_SZ and integers REG_DWORD (the scenario data's
convention), a key's default value is the name `(default)`. So `type` may be `string` or `dword`; the
other registry types, and loading a `hive` file, are refused by name rather than approximated. Check
mode reports the change and writes nothing; `diff` output is not produced.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrator_lab.windows.hoststate import normalize_key
from orchestrator_lab.windows.modules.base import Call, Emulator, Fail, not_emulated

DEFAULT_VALUE = "(default)"
KINDS = {"string": str, "dword": int}


def _data(kind: str, data: Any) -> Any:
    """The data as the module would store it for `kind` (SetValue's conversion)."""
    if kind == "string":
        if isinstance(data, bool):
            return "True" if data else "False"
        return "" if data is None else str(data)
    if data is None:
        return 0
    if isinstance(data, str):
        text = data.strip().lower()
        number = int(text, 16) if text.startswith("0x") else int(text) if text.isdigit() else None
        if number is None:
            raise Fail(f'Cannot convert value "{data}" to type "System.UInt64"')
    elif isinstance(data, float) and not data.is_integer():
        raise Fail(
            f"data '{data}' cannot be a decimal or float value with a remainder when type is dword or qword"
        )
    else:
        number = int(data)
    if number > 0xFFFFFFFF or number < 0:
        raise Fail("data cannot be larger than 0xffffffff when type is dword")
    return number - (1 << 32) if number > 0x7FFFFFFF else number  # stored as [Int32], as the module does


def _value_name(state_values: dict[str, Any], name: str) -> str | None:
    return next((n for n in state_values if n.casefold() == name.casefold()), None)


def win_regedit(call: Call) -> None:
    params, state = call.params, call.session.state
    path, name, kind = params["path"], params["name"] or None, params["type"]
    call.result.update(data_changed=False, data_type_changed=False)
    if name is None and kind != "string":
        call.warn(
            "the data type when name is not specified can only be 'string', the type has automatically been converted"
        )
        kind = "string"
    if not re.match(r"^HK(CC|CR|CU|LM|U):\\", path):
        raise Fail(f"path: {path} is not a valid powershell path, see module documentation for examples.")
    if kind not in KINDS:
        raise Fail(
            not_emulated(f"type {kind} of module {call.module}")
            + " (the stand-in's registry holds REG_SZ strings and REG_DWORD integers only)"
        )
    data = None if params["data"] is None else _data(kind, params["data"])  # converted before any change
    key = normalize_key(path)
    existing = state.keys(key)
    real_key = existing[0] if existing else None
    value_name = name or DEFAULT_VALUE
    if params["state"] == "absent":
        if real_key is None:
            return
        if params["delete_key"] and name is None:
            call.result["changed"] = True
            if not call.check_mode:
                state.remove_key(real_key)
            return
        current = _value_name(state.values(real_key), value_name)
        if current is not None:
            call.result["changed"] = True
            if not call.check_mode:
                state.remove_value(real_key, current)
        return
    if real_key is None:
        call.result["changed"] = True
        if not call.check_mode:
            real_key = state.create_key(key)
    if data is None:
        return
    values = state.values(real_key) if real_key is not None else {}
    current = _value_name(values, value_name)
    if current is not None:
        old = values[current]
        type_changed = not isinstance(old, KINDS[kind])
        data_changed = str(old) != str(data)  # PowerShell's -cne converts to the existing value's type
        if not (type_changed or data_changed):
            return
        call.result.update(changed=True, data_changed=data_changed, data_type_changed=type_changed)
    else:
        call.result["changed"] = True
    if not call.check_mode:
        state.set_value(real_key or key, current or value_name, data)


MODULES = {"ansible.windows.win_regedit": Emulator(win_regedit, not_emulated=("hive",))}
