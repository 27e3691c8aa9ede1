"""Answers the triage probe protocol (lab contract, "Windows triage script protocol") from host state.

Real Windows runs the triage script's PowerShell body; the stand-in cannot, so it reads the probe list
the script carries in its `# orchestrator-probes: <base64 JSON>` header and answers each probe as that
body would on a host in this state: one JSON object per line, in probe order.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from orchestrator_lab.windows.hoststate import (
    HostState,
    entry_digest,
    matches,
    normalize_key,
    normalize_path,
)

HEADER = "# orchestrator-probes:"
DEFAULT_MAX_RESULTS = 1000


class ProbeHeaderError(ValueError):
    """The header is there but does not decode to a JSON list of probes."""


def find_probes(script: str) -> list[dict[str, Any]] | None:
    """The probes a triage script carries, or None when the script has no probe header."""
    for line in script.splitlines()[:5]:
        line = line.strip()
        if line.startswith(HEADER):
            payload = line[len(HEADER) :].strip()
            try:
                probes = json.loads(base64.b64decode(payload, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise ProbeHeaderError(f"orchestrator-probes header does not decode: {exc}") from exc
            if not isinstance(probes, list) or not all(isinstance(p, dict) for p in probes):
                raise ProbeHeaderError("orchestrator-probes header is not a JSON list of objects")
            return probes
    return None


def answer(state: HostState, probes: list[dict[str, Any]]) -> str:
    """The script's stdout: one JSON line per probe."""
    lines = []
    with state.lock:
        for probe in probes:
            kind = str(probe.get("kind", ""))
            handler = HANDLERS.get(kind)
            record: dict[str, Any] = {"id": probe.get("id"), "kind": kind}
            if handler is None:
                record.update(results=[], truncated=False, error=f"unknown probe kind: {kind!r}")
            else:
                limit = int(probe.get("max_results") or DEFAULT_MAX_RESULTS)
                results = handler(state, probe)
                record.update(results=results[:limit], truncated=len(results) > limit)
            lines.append(json.dumps(record, separators=(",", ":")))
    return "".join(line + "\r\n" for line in lines)


def _files(state: HostState, probe: dict[str, Any]) -> list[dict[str, Any]]:
    patterns = probe.get("patterns") or ["*"]
    max_depth = probe.get("max_depth")
    want_hash = bool(probe.get("hash"))
    seen: set[str] = set()
    results = []
    for root in probe.get("roots") or []:
        for path, entry in state.files_under(normalize_path(str(root)), max_depth):
            name = path.rsplit("\\", 1)[-1]
            if path.casefold() in seen or not any(matches(name, p) for p in patterns):
                continue
            seen.add(path.casefold())
            item = {"path": path, "size": entry.get("size", 0), "mtime": entry.get("mtime")}
            if want_hash:
                item["sha256"] = entry_digest(entry, "sha256")
            results.append(item)
    return results


def _registry(state: HostState, probe: dict[str, Any]) -> list[dict[str, Any]]:
    """Values of matching keys; a key that exists with no (matching) value answers with name/value null,
    so a probe can test for a key's presence (`HKCU\\SOFTWARE\\LockBit`)."""
    name = probe.get("name")
    results = []
    for key in state.keys(normalize_key(str(probe.get("path", "")))):
        values = state.values(key)
        if name is None:
            if not values:
                results.append({"path": key, "name": None, "value": None})
            results.extend({"path": key, "name": n, "value": v} for n, v in values.items())
        else:
            results.extend(
                {"path": key, "name": n, "value": v} for n, v in values.items() if matches(n, name)
            )
    return results


def _services(state: HostState, probe: dict[str, Any]) -> list[dict[str, Any]]:
    names = probe.get("names") or ["*"]
    return [
        {"name": name, "status": svc.get("status"), "start_type": svc.get("start_type")}
        for name, svc in sorted(state.data["services"].items(), key=lambda kv: kv[0].casefold())
        if any(matches(name, n) or matches(str(svc.get("display_name", "")), n) for n in names)
    ]


def _eventlog(state: HostState, probe: dict[str, Any]) -> list[dict[str, Any]]:
    log = probe.get("log")
    ids = set(probe.get("event_ids") or [])
    events = [
        {"log": ev["log"], "id": ev["id"], "time": ev["time"]}
        for ev in state.data["eventlog"]
        if (log is None or str(ev["log"]).casefold() == str(log).casefold()) and (not ids or ev["id"] in ids)
    ]
    return sorted(events, key=lambda ev: ev["time"], reverse=True)


def _shadow_copies(state: HostState, probe: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": sc["id"], "created": sc["created"]} for sc in state.data["shadow_copies"]]


def _scheduled_tasks(state: HostState, probe: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": t["name"], "path": t["path"], "action": t["action"], "created": t.get("created")}
        for t in state.data["scheduled_tasks"]
    ]


HANDLERS: dict[str, Callable[[HostState, dict[str, Any]], list[dict[str, Any]]]] = {
    "files": _files,
    "registry": _registry,
    "services": _services,
    "eventlog": _eventlog,
    "shadow_copies": _shadow_copies,
    "scheduled_tasks": _scheduled_tasks,
}
