"""Containment that nobody could do over SSH: the list for the network team, and where each host
stands (contained, requested, not yet).

A host that cannot be reached to isolate it (unreachable or untriageable at triage, or its isolate
stage failed) is cut off by the network team at the switch port or a firewall. They get everything
known about it, as CSV (one row per host) and as an nftables snippet for a Linux firewall on the path.
The request is recorded ("containment requested") with its audit entry in one transaction.

Nothing a host returned reaches these files unchecked: the MAC address is kept only if it parses as
one, addresses only if they parse as IP addresses, and every other field comes from the inventory.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import select

from orchestrator import inventory as inventory_lib
from orchestrator import lifecycle
from orchestrator.lifecycle import CONTAINED, DECIDE_DONE, UNKNOWN
from orchestrator.safe_text import csv_cell
from orchestrator.store import Store, audit
from orchestrator.store.containment import MAC, HostContainment, macs_seen, summary  # noqa: F401 (read here)
from orchestrator.store.models import ContainmentRequest, HostDecision, PlanMember

MAC_VARS = ("recovery_mac_address", "mac_address", "mac")
# Inventory variables naming where the host plugs in: every `recovery_switch*` variable and these.
PORT_VARS = ("switch", "switch_port", "vlan")
CSV_COLUMNS = ("host", "address", "mac", "site", "switch", "reason", "requested_at")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Needed:
    """A host to isolate at the network, with why."""

    name: str
    reason: str
    known: dict[str, Any] = field(default_factory=dict)


def _mac(host: inventory_lib.Host, seen: str | None) -> str | None:
    for var in MAC_VARS:
        value = host.vars.get(var)
        if isinstance(value, str) and MAC.fullmatch(value.strip()):
            return value.strip().lower()
    return seen


def _switch(host: inventory_lib.Host) -> dict[str, str]:
    out = {}
    for key, value in sorted(host.vars.items()):
        if (key.startswith("recovery_switch") or key in PORT_VARS) and isinstance(value, str | int):
            out[key] = str(value)
    return out


def _address(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def describe(host: inventory_lib.Host, mac_seen: str | None) -> dict[str, Any]:
    """Everything known about where the host is on the network."""
    return {
        "address": host.address,
        "ip": _address(host.address),
        "mac": _mac(host, mac_seen),
        "site": host.site,
        "switch": _switch(host),
    }


def render_csv(needed: Sequence[Needed], at: datetime) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for n in needed:
        k = n.known
        switch = "; ".join(f"{key}={value}" for key, value in k.get("switch", {}).items())
        row = (n.name, k.get("address"), k.get("mac"), k.get("site"), switch, n.reason, at.isoformat())
        writer.writerow([csv_cell(v) for v in row])
    return buffer.getvalue()


def render_nft(needed: Sequence[Needed], management: Iterable[str] = ()) -> str:
    """A table that drops everything to and from each host, except from the management networks."""
    lines = [
        "# Containment requested by the recovery orchestrator: drop all traffic of these hosts.",
        "# Load on a firewall in their path with: nft -f <this file>",
        "table inet recovery_containment {",
    ]
    ips = [(n, n.known.get("ip")) for n in needed]
    v4 = sorted({ip for _, ip in ips if ip and ":" not in ip})
    v6 = sorted({ip for _, ip in ips if ip and ":" in ip})
    macs = sorted({n.known["mac"] for n in needed if n.known.get("mac")})
    if v4:
        lines += ["  set hosts4 {", "    type ipv4_addr", f"    elements = {{ {', '.join(v4)} }}", "  }"]
    if v6:
        lines += ["  set hosts6 {", "    type ipv6_addr", f"    elements = {{ {', '.join(v6)} }}", "  }"]
    if macs:
        lines += ["  set macs {", "    type ether_addr", f"    elements = {{ {', '.join(macs)} }}", "  }"]
    lines += ["  chain forward {", "    type filter hook forward priority -10; policy accept;"]
    for net in _networks(management):
        lines.append(f"    {'ip6' if net.version == 6 else 'ip'} saddr {net} accept")
    if v4:
        lines += ["    ip saddr @hosts4 drop", "    ip daddr @hosts4 drop"]
    if v6:
        lines += ["    ip6 saddr @hosts6 drop", "    ip6 daddr @hosts6 drop"]
    if macs:
        lines.append("    ether saddr @macs drop")
    lines += ["  }", "}"]
    for n, ip in ips:
        if not ip and not n.known.get("mac"):
            lines.append(
                f"# {_SAFE_NAME.sub('_', n.name)}: no IP or MAC address known: isolate it at its switch port"
            )
    return "\n".join(lines) + "\n"


def _networks(values: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The management networks that parse as such (from the inventory's recovery_management_cidrs)."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            continue
    return sorted(set(out), key=str)


def management_networks(hosts: Iterable[inventory_lib.Host]) -> list[str]:
    """Where the orchestrator reaches hosts from: kept open by the snippet, as isolation does."""
    found: set[str] = set()
    for host in hosts:
        cidrs = host.vars.get("recovery_management_cidrs") or []
        if isinstance(cidrs, list):
            found.update(str(c) for c in cidrs)
    return sorted(found)


def request(
    store: Store,
    operator: str,
    plan_id: int,
    needed: Sequence[Needed],
    out_dir: Path,
    at: datetime,
    management: Sequence[str] = (),
) -> list[Path]:
    """Write the CSV and the nftables snippet into `out_dir` and record each request (audited).
    Hosts already requested under this plan are listed again but not recorded twice."""
    if not needed:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "containment-request.csv", out_dir / "containment-request.nft"]
    files[0].write_text(render_csv(needed, at), encoding="utf-8")
    files[1].write_text(render_nft(needed, management), encoding="utf-8")
    with store.write() as session:
        done = set(
            session.exec(
                select(ContainmentRequest.host_name).where(ContainmentRequest.plan_id == plan_id)
            ).all()
        )
        new = [n for n in needed if n.name not in done]
        for n in new:
            session.add(
                ContainmentRequest(host_name=n.name, plan_id=plan_id, requested_by=operator, requested_at=at,
                                   reason=n.reason, known=n.known, files=[str(f) for f in files])
            )  # fmt: skip
        audit.record(
            session,
            operator,
            "containment request",
            details={"plan": plan_id, "hosts": {n.name: n.reason for n in needed},
                     "new": [n.name for n in new], "files": [str(f) for f in files]},
        )  # fmt: skip
    return files


def unisolated(
    members: Iterable[PlanMember],
    decisions: Mapping[str, HostDecision],
    inventory: inventory_lib.Inventory,
    failed: Mapping[str, str],
) -> dict[str, str]:
    """The hosts nobody could isolate over their own connection, with why: those whose isolate
    failed (`failed`), and every plan member unreachable or untriageable at triage (held, or rebuilt
    out of band) unless protected or decided done by hand."""
    needed = dict(failed)
    for m in members:
        decided = decisions.get(m.host_name)
        if (
            m.verdict in UNKNOWN
            and m.action != "protected"
            and not (decided and decided.decision == DECIDE_DONE)
        ):
            host = inventory.hosts.get(m.host_name)
            if host is not None and not host.protected:
                needed.setdefault(
                    m.host_name, f"{m.verdict} at triage: could not be isolated over its own connection"
                )
    return needed


def request_unisolated(
    store: Store,
    operator: str,
    plan_id: int,
    needed: Mapping[str, str],
    inventory: inventory_lib.Inventory,
    out_dir: Path,
    at: datetime,
) -> tuple[dict[str, str], list[Path]]:
    """Ask the network team for the `needed` hosts (host -> why) not contained meanwhile: everything
    known about where each is (the inventory, a MAC address triage saw), the management networks left
    open. Returns the hosts asked for (host -> why) and the files written (none if nobody was asked)."""
    if not needed:
        return {}, []
    with store.read() as session:
        state = summary(session, sorted(needed))
        macs = macs_seen(session, sorted(needed))
    asked = [
        Needed(name, why, describe(inventory.hosts[name], macs.get(name)))
        for name, why in sorted(needed.items())
        if state[name].status != CONTAINED
    ]
    management = management_networks(inventory.hosts[n.name] for n in asked)
    files = request(store, operator, plan_id, asked, out_dir, at, management)
    return {n.name: n.reason for n in asked}, files


CONTAINMENT_WAVE = 0  # the stage runs of containment, across every wave, are recorded as "wave 0"
STAGES = lifecycle.CONTAIN
