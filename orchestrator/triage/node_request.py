"""What the controller sends an execution node's triage agent, on the agent's stdin: the site's hosts
with the variables their connections need, the packs as validated here, the settings, the run's
start (so `age_days` is measured from the same moment as on the controller) and the fingerprints of the
keys the whole run logs in with (an `authorized_keys` entry of the controller's own login key is ours on
every host, wherever it is checked from; the node adds its own).

What a node gets of a host: its `ansible_*` variables, `recovery_triage_exclude`, and every variable
their templates name (followed transitively), never the rest (a host's variables can be many, and
the fleet-wide magic ones as large as the fleet). No password crosses: a literal or vault-encrypted
value of a secret variable stays on the controller, and a template (`{{ lookup('env', ...) }}`) crosses
as a template, which the node renders from its own environment, as it does for playbooks. Key files
are paths on the node, read by the node.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.inventory import SECRET_VARS, Host
from orchestrator.inventory.prefetch import TrustedTemplate
from orchestrator.triage.engine import Settings
from orchestrator.triage.packs import Pack
from orchestrator.triage.transports.base import MAGIC_VARS

VERSION = 1
MAX_REQUEST = 256 * 1024 * 1024  # what an agent reads of its stdin at most
_TEMPLATE_KEY = "__orchestrator_trusted_template__"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_FIELDS = ("name", "address", "port", "user", "connection", "os", "execution_node")


class RequestError(ValueError):
    """The request an agent read is not one the controller writes."""


@dataclass
class Request:
    hosts: list[Host]
    packs: list[Pack]
    settings: Settings
    started: datetime
    trusted_keys: set[str]


def encode(
    hosts: Sequence[Host],
    packs: Sequence[Pack],
    settings: Settings,
    started: datetime,
    trusted_keys: Iterable[str],
) -> bytes:
    from ansible.template import is_trusted_as_template

    payload = {
        "version": VERSION,
        "started": started.isoformat(),
        "trusted_keys": sorted(trusted_keys),
        "settings": {
            "forks": settings.forks,
            "timeout": settings.timeout,
            "trust_new_keys": settings.trust_new_keys,
        },
        "packs": [p.model_dump(mode="json") for p in packs],
        "hosts": [
            {**{f: getattr(h, f) for f in _HOST_FIELDS}, "vars": node_vars(h, is_trusted_as_template)}
            for h in hosts
        ],
    }
    return json.dumps(payload).encode()


def node_vars(host: Host, trusted: Any) -> dict[str, Any]:
    """The variables of `host` a node's triage needs, secrets withheld (see the module's docstring)."""
    wanted = [n for n in host.vars if n.startswith("ansible_") or n == "recovery_triage_exclude"]
    out: dict[str, Any] = {}
    while wanted:
        name = wanted.pop()
        if name in out or name in MAGIC_VARS or name not in host.vars:
            continue
        value = _portable(host.vars[name], trusted)
        if value is _WITHHELD or (_is_secret(name) and not _is_template(value)):
            continue
        out[name] = value
        wanted.extend(w for w in _IDENTIFIER.findall(_templates_text(value)) if w in host.vars)
    return out


def _is_secret(name: str) -> bool:
    """A password's name (a key *file* is a path the node reads itself, not a secret to withhold)."""
    from orchestrator.store.audit import SECRET_NAME

    return name in SECRET_VARS or (SECRET_NAME.search(name) is not None and not name.endswith("_file"))


_WITHHELD = object()


def _portable(value: Any, trusted: Any) -> Any:
    """JSON data with each trusted template marked; a vault value (or anything not plain data) withheld."""
    if isinstance(value, str):
        if ("{{" in value or "{%" in value) and (isinstance(value, TrustedTemplate) or trusted(value)):
            return {_TEMPLATE_KEY: str(value)}
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        items = {str(k): _portable(v, trusted) for k, v in value.items()}
        return _WITHHELD if any(v is _WITHHELD for v in items.values()) else items
    if isinstance(value, list | tuple):
        elements = [_portable(v, trusted) for v in value]
        return _WITHHELD if any(v is _WITHHELD for v in elements) else elements
    return _WITHHELD  # EncryptedString (vault) and any other object: not sent


def _is_template(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {_TEMPLATE_KEY}


def _templates_text(value: Any) -> str:
    if _is_template(value):
        return str(value[_TEMPLATE_KEY])
    if isinstance(value, dict):
        return " ".join(_templates_text(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_templates_text(v) for v in value)
    return ""


# --- The agent's side ----------------------------------------------------------------------------


def decode(data: bytes) -> Request:
    """The request as the agent uses it; RequestError naming what is wrong."""
    from pydantic import ValidationError

    try:
        payload = json.loads(data, object_hook=_trusted_template)
    except ValueError as exc:
        raise RequestError(f"the request is not JSON: {exc}") from None
    if not isinstance(payload, dict) or payload.get("version") != VERSION:
        raise RequestError(f"the request is not a version {VERSION} triage request")
    try:
        settings = Settings(
            forks=int(payload["settings"]["forks"]),
            timeout=float(payload["settings"]["timeout"]),
            trust_new_keys=bool(payload["settings"]["trust_new_keys"]),
        )
        started = datetime.fromisoformat(payload["started"])
        packs = [Pack.model_validate(p) for p in payload["packs"]]
        hosts = [_host(h) for h in payload["hosts"]]
        trusted = {str(k) for k in payload["trusted_keys"]}
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise RequestError(f"invalid triage request: {type(exc).__name__}: {str(exc)[:300]}") from None
    if started.tzinfo is None or not packs:
        raise RequestError("invalid triage request: a start time with its zone and packs are required")
    return Request(hosts, packs, settings, started, trusted)


def _host(data: dict[str, Any]) -> Host:
    if not isinstance(data.get("vars"), dict) or not isinstance(data.get("name"), str):
        raise ValueError("a host needs a name and its vars")
    return Host(
        **{f: data[f] for f in _HOST_FIELDS},
        tier=0,
        role="server",
        depends_on=[],
        depends_on_hosts=[],
        protected=False,
        site=None,
        reimage_method=None,
        restore_method=None,
        priority=0,
        groups=[],
        data_categories=[],
        vars=data["vars"],
    )


def _trusted_template(obj: dict[str, Any]) -> Any:
    return TrustedTemplate(obj[_TEMPLATE_KEY]) if set(obj) == {_TEMPLATE_KEY} else obj
