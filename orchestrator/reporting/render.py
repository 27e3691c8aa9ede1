"""A report as a file: one self-contained HTML page (Jinja2 template, styles and chart inline, no
script, nothing fetched), or the per-host rows as CSV or JSON for spreadsheets and scripts.

Reports carry host strings (reasons, evidence paths): HTML is autoescaped and every value passes
`safe_text.plain` on its way out (no control character); CSV cells are neutralised (`csv_cell`);
JSON escapes every control character."""

from __future__ import annotations

import csv
import io
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from orchestrator import safe_text
from orchestrator.reporting import chart
from orchestrator.reporting.report import COLUMNS, Report
from orchestrator.reporting.timefmt import duration, short
from orchestrator.safe_text import csv_row, plain
from orchestrator.store import audit
from orchestrator.timefmt import iso

FORMATS = ("html", "csv", "json")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("orchestrator.reporting", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters["duration"] = duration
    env.filters["short"] = short
    return env


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` of the template: strings lose their control characters (then autoescape)."""
    return plain(value, multiline=True) if isinstance(value, str) else value


def html(report: Report, title: str) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(
        title=title,
        generated_at=short(iso(report.generated_at)),
        plan=report.plan,
        summary=report.summary,
        tiers=report.tiers,
        waves=report.waves,
        attention=report.attention,
        regulator=report.regulator,
        evidence=report.evidence,
        containment=report.containment,
        decisions=report.decisions,
        next_steps=report.next_steps,
        chart=chart.timeline(report.rows, report.waves),
        audit_head=audit.head_line(report.audit),
    )


def csv_text(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_row(r) for r in report.rows)
    return out.getvalue()


def json_text(report: Report) -> str:
    """The same per-host rows as the CSV, with the summaries around them."""
    data: dict[str, Any] = {
        "generated_at": iso(report.generated_at),
        "plan": report.plan,
        "summary": report.summary,
        "tiers": report.tiers,
        "waves": [{k: v for k, v in w.items() if k != "members"} for w in report.waves],
        "regulator": {k: v for k, v in report.regulator.items() if k != "systems"}
        | {"hosts": [r["host"] for r in report.regulator["systems"]]},
        "attention": [r["host"] for r in report.attention],
        "containment": report.containment,
        "decisions": report.decisions,
        "next_steps": report.next_steps,
        "evidence": report.evidence,
        "audit": report.audit,
        "columns": list(COLUMNS),
        "hosts": report.rows,
    }
    return safe_text.json_text(data, indent=2) + "\n"


def render(report: Report, fmt: str, title: str) -> str:
    if fmt == "html":
        return html(report, title)
    if fmt == "csv":
        return csv_text(report)
    return json_text(report)
