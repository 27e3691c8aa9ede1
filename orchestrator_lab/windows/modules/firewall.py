"""ansible.windows.win_firewall and community.windows.win_firewall_rule on the state's `firewall` section.

The section (created on first change) holds each profile's switch and default actions, and the rules by
name with the properties a task set, in the modules' vocabulary:

    {"profiles": {"Domain": {"enabled": true, "inbound": "Block", "outbound": "Allow"}, ...},
     "rules": {"Recovery management": {"direction": "in", "action": "allow", "localport": "5985,5986", ...}}}

A profile not recorded is enabled with NotConfigured actions, as on a fresh install; a new rule takes
the COM object's defaults (enabled, inbound, allow, any protocol, all profiles). Rules selected by
`group` alone are not emulated. The firewall is a record here: the stand-in filters no traffic.
"""

from __future__ import annotations

import copy
from typing import Any

from orchestrator_lab.windows.modules.base import Call, Emulator, Fail, not_emulated

PROFILES = ("Domain", "Private", "Public")
ACTIONS = {"allow": "Allow", "block": "Block", "not_configured": "NotConfigured"}
RULE_DEFAULTS = {
    "enabled": True,
    "direction": "in",
    "action": "allow",
    "protocol": "any",
    "profiles": ["domain", "private", "public"],
}
RULE_PROPERTIES = (
    "description",
    "direction",
    "action",
    "program",
    "group",
    "service",
    "enabled",
    "profiles",
    "localip",
    "remoteip",
    "localport",
    "remoteport",
    "protocol",
    "icmp_type_code",
)


def _section(call: Call) -> dict[str, Any]:
    """A copy of the state's firewall section: check mode must leave the state itself untouched."""
    return copy.deepcopy(call.session.state.data.get("firewall") or {"profiles": {}, "rules": {}})


def _save(call: Call, section: dict[str, Any]) -> None:
    if not call.check_mode:
        state = call.session.state
        state.data["firewall"] = section
        state.save()


def win_firewall(call: Call) -> None:
    p = call.params
    section = _section(call)
    call.result.update(restart_required=False, profiles=p["profiles"], state=p["state"])
    for name in PROFILES:
        current = {"enabled": True, "inbound": "NotConfigured", "outbound": "NotConfigured"}
        current.update(section["profiles"].get(name, {}))
        report = {
            "enabled": current["enabled"],
            "considered": name in p["profiles"],
            "currentstate": int(current["enabled"]),
        }
        call.result[name] = report
        if name not in p["profiles"]:
            continue
        wanted = dict(current)
        if p["state"] == "enabled":
            wanted["enabled"] = True
            for option, key in (("inbound_action", "inbound"), ("outbound_action", "outbound")):
                if p[option] is not None:
                    wanted[key] = ACTIONS[p[option]]
        else:
            wanted["enabled"] = False
        report["enabled"] = wanted["enabled"]
        if wanted != current:
            call.result["changed"] = True
            section["profiles"][name] = wanted
    if call.result["changed"]:
        _save(call, section)


def _normalized(option: str, value: Any) -> Any:
    if option == "profiles":
        return sorted({str(v).lower() for v in value})
    if option in ("localip", "remoteip"):
        return sorted(v.strip() for v in str(value).split(","))
    if option in ("direction", "action", "protocol"):
        return str(value).lower()
    if option == "icmp_type_code":
        return ",".join(value)
    return value


def win_firewall_rule(call: Call) -> None:
    p = call.params
    name = p["name"]
    if not name:
        if p["group"]:
            raise Fail(not_emulated(f"selecting rules by group in {call.module}"))
        raise Fail("Either name or group must be specified")
    section = _section(call)
    rules: dict[str, Any] = section["rules"]
    existing = next((n for n in rules if n.casefold() == name.casefold()), None)
    given = {o: _normalized(o, p[o]) for o in RULE_PROPERTIES if p[o] is not None and p[o] != "any"}
    if p["state"] == "absent":
        if existing is None:
            call.result["msg"] = f"Firewall rule '{name}' does not exist."
            return
        del rules[existing]
        call.result.update(changed=True, msg=f"Firewall rule(s) '{existing}' removed.")
    elif existing is None:
        rules[name] = {**RULE_DEFAULTS, **given}
        call.result.update(changed=True, msg=f"Firewall rule '{name}' created.")
    else:
        changes = {o: v for o, v in given.items() if rules[existing].get(o, RULE_DEFAULTS.get(o)) != v}
        rules[existing].update(changes)
        call.result["changed"] = bool(changes)
        changed, unchanged = (existing, "") if changes else ("", existing)
        call.result["msg"] = f"Firewall rule(s) changed '{changed}' - unchanged '{unchanged}'"
    if call.result["changed"]:
        _save(call, section)


MODULES = {
    "ansible.windows.win_firewall": Emulator(win_firewall),
    # a legacy (Parse-Args) module: unknown options are ignored, as on Windows
    "community.windows.win_firewall_rule": Emulator(
        win_firewall_rule, not_emulated=("interfacetypes", "edge", "security"), strict=False
    ),
}
