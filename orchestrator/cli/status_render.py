"""The tables of `orchestrator status` (rich): imported only when a table is drawn, so that
`status --json` does not pay for rich."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.cli.options import console
from orchestrator.host_facts import IDENTITY
from orchestrator.inventory.model import TIERS
from orchestrator.reporting.timefmt import duration, short
from orchestrator.safe_text import cells, plain

BUCKET_LABELS = {
    "pending": "pending",
    "in_progress": "in progress",
    "awaiting": "awaiting dependencies",
    "recovered": "recovered",
    "failed": "failed",
    "hold": "on hold",
    "protected": "protected",
    "other": "other",
}
BUCKET_STYLES = {"recovered": "green", "failed": "bold red", "hold": "yellow", "in_progress": "cyan"}
WHY_LABELS = {
    "failed": "failed",
    "hold": "on hold",
    "protected_infected": "protected, infected",
    "protected_suspicious": "protected, suspicious",
}


def watch(build: Callable[[], RenderableType], interval: float) -> None:
    """Redraw until Ctrl-C; each pass is a fresh read transaction, so it sees every commit."""
    with Live(build(), console=console(), auto_refresh=False, screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(build(), refresh=True)
        except KeyboardInterrupt:
            return


def render_fleet(data: dict[str, Any]) -> RenderableType:
    timing = data["timing"]
    plan = data["plan"]
    head = Text()
    head.append(f"{data['total']} host(s)", style="bold")
    if plan:
        head.append(f" · plan {plan['id']} ({plan['status']}, {plan['waves']} waves)")
    else:
        head.append(" · no plan yet")
    if timing["started_at"]:
        head.append(f" · started {short(timing['started_at'])} UTC, {duration(timing['elapsed_s'])} ago")
    if plan:
        head.append(f" · {_eta_text(timing)}")
    active = [f for f, v in data["filters"].items() if v is not None]
    if active:
        head.append(plain("  [" + ", ".join(f"{f}={data['filters'][f]}" for f in active) + "]"), style="dim")

    buckets = Table(title="Hosts by state", title_justify="left")
    buckets.add_column("state")
    buckets.add_column("hosts", justify="right")
    buckets.add_column("%", justify="right")
    buckets.add_column("detail")
    for bucket, count in data["by_category"].items():
        detail = ""
        if bucket == "in_progress":
            detail = ", ".join(f"{stage} {n}" for stage, n in data["in_progress_by_stage"].items())
        elif bucket == "failed":
            detail = ", ".join(f"in {stage} {n}" for stage, n in data["failed_by_stage"].items())
        pct = f"{100 * count / data['total']:.1f}" if data["total"] else "-"
        buckets.add_row(
            Text(BUCKET_LABELS[bucket], style=BUCKET_STYLES.get(bucket, "")), str(count), pct, detail
        )

    # Who needs a person comes before the long tables: --watch crops what does not fit the screen.
    parts: list[RenderableType] = [head, _containment_line(data["containment"]), buckets]
    if "hosts" in data["containment"]:
        parts.insert(2, _containment_table(data["containment"]["hosts"]))
    if data["next_steps"]:
        steps = Text("What a person must do next:\n", style="bold")
        for i, step in enumerate(data["next_steps"], 1):
            steps.append(f"  {i}. {step}\n", style="")
        parts.append(steps)
    if data["decisions"]:
        decided = Table(title="Decisions by people", title_justify="left")
        for column in ("host", "decision", "by", "at", "why"):
            decided.add_column(column, overflow="fold")
        for d in data["decisions"]:
            decided.add_row(*cells(d["host"], d["summary"], d["by"], short(d["at"]), d["why"]))
        parts.append(decided)
    attention = data["attention"]
    if attention["count"]:
        table = Table(title=f"Needs a person: {attention['count']} host(s)", title_justify="left")
        for column in ("host", "why", "tier", "wave", "stage", "since", "reason"):
            table.add_column(column, overflow="fold")
        for row in attention["hosts"]:
            table.add_row(
                *cells(
                    row["host"],
                    Text(
                        WHY_LABELS.get(row["why"], row["why"]),
                        style="red" if row["why"] != "hold" else "yellow",
                    ),
                    str(row["tier"]),
                    "-" if row["wave"] is None else str(row["wave"]),
                    row["stage"] or "-",
                    short(row["since"]),
                    row["reason"] or "",
                )
            )
        parts.append(table)
        if attention["count"] > len(attention["hosts"]):
            more = attention["count"] - len(attention["hosts"])
            parts.append(Text(f"... and {more} more: orchestrator status --all lists them", style="dim"))
    if data["waves"]:
        parts.append(_progress_table("Waves", "wave", data["waves"], with_eta=True))
    if data["tiers"]:
        parts.append(_progress_table("Tiers", "tier", data["tiers"], with_eta=False))
    if not data["total"] and not any(data["filters"].values()):
        parts.append(
            Text("No host recorded yet: run 'orchestrator inventory sync -i INVENTORY' or a triage.")
        )
    return Group(*parts)


def _containment_line(c: dict[str, Any]) -> Text:
    """Contained / requested / not yet, over the hosts that need containment."""
    line = Text("containment: ")
    if not c["needed"]:
        return line.append("no host needs it", style="dim")
    line.append(f"{c['contained']} contained", style="green")
    line.append(
        f", {c['requested']} requested from the network team", style="yellow" if c["requested"] else ""
    )
    line.append(f", {c['not_yet']} not yet", style="bold red" if c["not_yet"] else "")
    return line.append(f" (of {c['needed']})")


def _containment_table(hosts: dict[str, dict[str, Any]]) -> Table:
    """`status --containment`: each host that needs containment, where it stands and since when."""
    table = Table(title="Containment", title_justify="left")
    for column in ("host", "containment", "at", "after triage"):
        table.add_column(column, overflow="fold")
    for name, c in hosts.items():
        style = {"contained": "green", "requested": "yellow"}.get(c["status"], "bold red")
        table.add_row(
            *cells(name, Text(c["status"], style=style), short(c["at"]), duration(c["time_to_containment_s"]))
        )
    return table


def _eta_text(timing: dict[str, Any]) -> str:
    basis = timing["basis"]
    if basis == "done":
        return "nothing left to run"
    text = f"ETA {duration(timing['eta_s'])}"
    if timing["finish_at"]:
        text += f" (about {short(timing['finish_at'])} UTC)"
    if basis == "partial":
        text += f", at least: no measured duration yet for {', '.join(timing['unmeasured_stages'])}"
    elif basis == "plan":
        text += ", partly from the plan's estimates"
    return text


def _progress_table(title: str, key: str, rows: list[dict[str, Any]], with_eta: bool) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    for column in ("hosts", "recovered", "in progress", "pending", "failed", "on hold", "protected", "%"):
        table.add_column(column, justify="right")
    if with_eta:
        table.add_column("started")
        table.add_column("stages left")
        table.add_column("ETA", justify="right")
    for row in rows:
        label = row[key]
        name = (
            "no wave"
            if label is None
            else (f"{label} {TIERS.get(label, '')}" if key == "tier" else str(label))
        )
        row_cells = [
            name,
            str(row["total"]),
            Text(str(row["recovered"]), style="green" if row["recovered"] else ""),
            str(row["in_progress"]),
            str(row["pending"]),
            Text(str(row["failed"]), style="bold red" if row["failed"] else ""),
            str(row["hold"]),
            str(row["protected"]),
            f"{row['percent_recovered']:.0f}",
        ]
        if with_eta:
            row_cells += [short(row["started_at"]), " ".join(row["remaining_stages"]), duration(row["eta_s"])]
        table.add_row(*row_cells)
    return table


def render_host(data: dict[str, Any]) -> RenderableType:
    facts = data["host"]
    head = Text()
    head.append(plain(facts["name"]), style="bold")
    head.append(f"  {plain(data['state'])}", style=BUCKET_STYLES.get(data["bucket"], ""))
    if data["state_reason"]:
        head.append(f" ({plain(data['state_reason'])})")
    if data["remaining_stages"]:
        head.append(f" · next: {', '.join(data['remaining_stages'])} · ETA {duration(data['eta_s'])}")

    inv = Table(title="Inventory", title_justify="left", show_header=False)
    inv.add_column("fact")
    inv.add_column("value", overflow="fold")
    for key in (
        *IDENTITY,
        "groups",
        "depends_on",
        "data_categories",
        "reimage_method",
        "restore_method",
    ):
        value = facts[key]
        inv.add_row(
            *cells(key, ", ".join(value) if isinstance(value, list) else ("-" if value is None else value))
        )

    parts: list[RenderableType] = [head, inv]
    triage = Table(title="Triage", title_justify="left")
    for column in ("run", "at", "verdict", "compromised", "check", "severity", "evidence"):
        triage.add_column(column, overflow="fold")
    for t in data["triage"]:
        first = [t["run_id"], short(t["created_at"]), t["verdict"], short(t["compromise_time"])]
        if not t["matches"]:
            triage.add_row(*cells(*first, "", "", t["reason"]))
        for i, m in enumerate(t["matches"]):
            triage.add_row(
                *cells(*(first if i == 0 else [""] * 4), m["check_id"], m["severity"]),
                *cells(m["evidence"][:200], multiline=True),
            )
    parts.append(triage)

    plan = data["plan"]
    if plan:
        wave = "no wave" if plan["wave"] is None else f"wave {plan['wave']}"
        parts.append(
            Text(
                plain(
                    f"Plan {plan['plan_id']} ({plan['plan_status']}): {plan['action']}, {wave} · {plan['reason']}"
                )
            )
        )

    stages = Table(title="Stages", title_justify="left")
    for column in ("stage", "try", "result", "started", "finished", "took", "message"):
        stages.add_column(column, overflow="fold")
    for s in data["stages"]:
        result = s["status"] + (" (check)" if s["check_mode"] else "")
        style = "green" if s["status"] == "ok" else ("red" if s["status"] == "failed" else "")
        stages.add_row(
            *cells(
                s["stage"],
                s["attempt"],
                Text(plain(result), style=style),
                short(s["started_at"]),
                short(s["finished_at"]),
                duration(s["duration_s"]),
                s["message"] or s["task"] or "",
            )
        )
    parts.append(stages)

    if data["evidence"]:
        evidence = Table(title="Evidence", title_justify="left")
        for column in ("path", "sha256", "bytes", "collected by", "at"):
            evidence.add_column(column, overflow="fold")
        for e in data["evidence"]:
            evidence.add_row(
                *cells(e["path"], e["sha256"], e["size"], e["collected_by"], short(e["collected_at"]))
            )
        parts.append(evidence)
    restore = data["restore_point"]
    if restore:
        skipped = (
            f", {len(restore['skipped'])} newer snapshot(s) skipped as dirty" if restore["skipped"] else ""
        )
        parts.append(
            Text(
                plain(
                    f"Restore snapshot {restore['snapshot_id']} taken {short(restore['snapshot_time'])} "
                    f"(cutoff {short(restore['cutoff'])}){skipped}"
                )
            )
        )
    if data["audit"]:
        audit = Table(title="Audit", title_justify="left")
        for column in ("#", "at", "operator", "command", "details"):
            audit.add_column(column, overflow="fold")
        for a in data["audit"]:
            audit.add_row(
                *cells(
                    a["id"],
                    short(a["ts"]),
                    a["operator"],
                    a["command"],
                    _details_for(data["host"]["name"], a["details"]),
                )
            )
        parts.append(audit)
    return Group(*parts)


DETAILS_WIDTH = 240


def _details_for(host: str, details: Any) -> str:
    """An audit entry as this host's page needs it: a wave-wide stage entry names every host of the
    wave, so only this host's part is shown (`--json` keeps the whole entry)."""
    if not isinstance(details, dict):
        return json.dumps(details)[:DETAILS_WIDTH]
    if "stage" in details and any(k in details for k in ("ok", "failed", "interrupted")):
        mine = {k: details[k] for k in ("plan", "wave", "stage", "attempt", "check") if k in details}
        if host in (details.get("ok") or []):
            mine["result"] = "ok"
        for key in ("failed", "interrupted"):
            if host in (details.get(key) or {}):
                mine["result"] = f"{key}: {details[key][host]}"
        node = (details.get("nodes") or {}).get(host)
        if node:
            mine["node"] = node
        details = mine
    text = json.dumps(details, sort_keys=True, default=str)
    return text if len(text) <= DETAILS_WIDTH else text[: DETAILS_WIDTH - 1] + "…"
