"""`orchestrator report`: the HTML report rendered by a real browser (Debian's headless Chromium,
offline) with its key figures checked on the page and a screenshot kept in test-artifacts/; CSV and
JSON carrying the same per-host rows; and no secret in any output."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from orchestrator.reporting import report as report_lib
from tests.conftest import ROOT, Cli
from tests.unit import reporting_support as scenario

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def report_cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    workdir = tmp_path_factory.mktemp("report")
    scenario.build(str(workdir / "recovery.db"), workdir).close()
    return Cli(workdir / "recovery.db")


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with a fresh profile, no background traffic, and every host name resolving
    to nothing: a page that needed the network would come out incomplete."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: run scripts/install-system-deps.sh (Debian package chromium)")
    with tempfile.TemporaryDirectory(prefix="orch-chromium-") as profile:
        return subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-default-apps",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )


def by_id(dom: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert found, f"#{element_id} not on the page"
    return found.group(1).strip()


def row_cells(dom: str, table_id: str, key: str) -> list[str]:
    """The cells' text of the row marked data-host/data-tier=`key` in table `table_id`."""
    table = dom[dom.index(f'id="{table_id}"') :]
    table = table[: table.index("</table>")]
    row = re.search(rf'<tr data-[a-z]+="{re.escape(key)}">(.*?)</tr>', table, re.S)
    assert row, f"no row {key} in #{table_id}"
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    ]


def test_html_report_renders_in_chromium_with_the_key_figures(report_cli: Cli, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = report_cli("report", "-o", str(page), "--title", "Hospital test - LockBit")
    assert result.exit_code == 0, result.stderr
    html = page.read_text()
    # One self-contained file: nothing to fetch (the SVG namespace is a name, not a request).
    assert not re.search(r"""(src|href)\s*=|@import|url\(|<script|<link""", html, re.I)
    assert set(re.findall(r"https?://[^\s\"']+", html)) <= {"http://www.w3.org/2000/svg"}

    dom = chromium("--dump-dom", page.as_uri()).stdout
    assert "<title>Hospital test - LockBit</title>" in dom
    figures = {
        k: by_id(dom, f"kpi-{k}") for k in ("hosts", "recovered", "in-progress", "pending", "failed", "hold")
    }
    assert figures == {
        "hosts": "10",
        "recovered": "3",
        "in-progress": "1",
        "pending": "3",
        "failed": "1",
        "hold": "1",
    }
    assert by_id(dom, "kpi-protected") == "1" and by_id(dom, "kpi-affected") == "6"

    tier0 = row_cells(dom, "tiers", "0")
    assert tier0[1:4] == ["3", "1", "1"] and tier0[6] == "1h 10m"  # dc01: seven 10-minute stages
    tier1 = row_cells(dom, "tiers", "1")
    assert tier1[1:3] == ["4", "2"] and "2 of 4 so far" in tier1[8]

    assert dom.count('class="tier-line"') == 4 and dom.count('class="wave-bar"') == 2
    assert "wave 2 (running)" in dom

    assert by_id(dom, "reg-count") == "2"  # ehr-db01 (infected), ehr-app01 (suspicious)
    assert row_cells(dom, "regulator-systems", "ehr-db01") == [
        "ehr-db01",
        "health, personal",
        "infected",
        "2025-02-27 06:00",  # compromised (from triage, kept after the clean re-triage)
        "2025-03-01 07:30",  # isolated
        "2025-03-01 07:40",  # evidence kept
        "2025-03-01 08:10",  # restored
        "2025-03-01 08:30",  # back in service
    ]
    assert row_cells(dom, "regulator-systems", "ehr-app01")[4:] == [
        "2025-03-01 07:30",
        "2025-03-01 07:40",
        "-",
        "-",
    ]
    assert 'data-host="pacs01"' not in dom[dom.index('id="regulator"') :]  # unreachable is not "affected"

    attention = dom[dom.index('id="attention"') : dom.index('id="regulator"')]
    assert "Failures and holds (3)" in attention and "PXE boot timed out after 600 s" in attention
    assert "PROTECTED HOST FOUND INFECTED" in attention and "unreachable: a person must check it" in attention
    for host, item in (("dc01", "memory.lime"), ("ehr-db01", "var-log.tar.gz"), ("dc02", "memory.lime")):
        assert scenario.evidence_hash(host, item) in dom
    assert scenario.snapshot_id("dc01") in dom

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    chromium("--window-size=1280,2400", "--hide-scrollbars", f"--screenshot={shot}", page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    shutil.copy(page, ARTIFACTS / "report.html")


def _normalised(rows: list[dict]) -> list[dict[str, str]]:
    """JSON values as the CSV writes them."""
    return [{k: "" if v is None else str(v) for k, v in row.items()} for row in rows]


def test_csv_and_json_carry_the_same_per_host_rows(report_cli: Cli, tmp_path: Path) -> None:
    assert report_cli("report", "-o", str(tmp_path / "hosts.csv")).exit_code == 0  # format from the name
    assert report_cli("report", "--format", "json", "-o", str(tmp_path / "hosts.out")).exit_code == 0
    with open(tmp_path / "hosts.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    data = json.loads((tmp_path / "hosts.out").read_text())
    assert data["columns"] == list(report_lib.COLUMNS) == list(csv_rows[0])
    assert _normalised(data["hosts"]) == csv_rows
    assert len(csv_rows) == 10
    rows = {r["host"]: r for r in data["hosts"]}
    assert (
        rows["dc01"] | {"time_to_recover_s": 4200.0, "outcome": "recovered", "evidence_items": 2}
        == rows["dc01"]
    )
    assert rows["ehr-db01"]["verdict"] == "clean" and rows["ehr-db01"]["worst_verdict"] == "infected"
    assert rows["dc02"]["outcome"] == "failed" and "PXE" in rows["dc02"]["reason"]
    assert rows["pacs01"]["outcome"] == "hold" and rows["backup01"]["outcome"] == "protected"
    assert rows["ehr-app01"]["restored_at"] is None and rows["ehr-app01"]["state"] == "restoring"
    assert data["summary"]["outcomes"] == scenario.EXPECTED_BUCKETS
    assert data["regulator"]["hosts"] == ["ehr-app01", "ehr-db01"]
    assert data["attention"] == ["dc02", "backup01", "pacs01"]
    tiers = {t["tier"]: t for t in data["tiers"]}
    assert tiers[0]["median_time_to_recover_s"] == 4200.0 and tiers[0]["all_recovered"] is False
    assert list(data) == [
        "generated_at",
        "plan",
        "summary",
        "tiers",
        "waves",
        "regulator",
        "attention",
        "containment",
        "decisions",
        "next_steps",
        "evidence",
        "audit",
        "columns",
        "hosts",
    ]


def test_report_to_stdout_and_refusals(report_cli: Cli, tmp_path: Path) -> None:
    out = report_cli("report", "-f", "csv", "-o", "-")
    assert out.exit_code == 0 and out.stdout.startswith("host,address,os,tier")
    assert next(iter(csv.DictReader(io.StringIO(out.stdout))))["host"] == "backup01"  # tier 0 first
    missing = report_cli("report", "-o", str(tmp_path / "nowhere" / "r.html"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    assert report_cli("report", "-f", "pdf", "-o", "r.pdf").exit_code == 2


def test_empty_database_gives_a_report_that_says_so(cli: Cli, tmp_path: Path) -> None:
    page = tmp_path / "empty.html"
    assert cli("report", "-o", str(page)).exit_code == 0
    html = page.read_text()
    assert (
        "No recovery plan yet." in html
        and "Nothing has run yet." in html
        and "No evidence collected yet." in html
    )
    assert oct(page.stat().st_mode & 0o777) == oct(0o600)  # host names and evidence: private
    assert "audit head: " in html


def test_no_secret_reaches_status_reports_audit_or_the_database(tmp_path: Path) -> None:
    """Passwords and keys live in inventory vars and the environment; none may come out."""
    db = tmp_path / "secret.db"
    scenario.build(str(db), tmp_path, secrets=True).close()
    cli = Cli(db)
    env = {"ORCHESTRATOR_TEST_PASSWORD": scenario.SECRET_PASSWORD}
    outputs = [
        cli("status", env=env).stdout,
        cli("status", "--json", env=env).stdout,
        cli("status", "dc01", env=env).stdout,
        cli("status", "dc01", "--json", env=env).stdout,
        cli("audit", "show", "--last", "0", "--json", env=env).stdout,
        cli("audit", "show", "--last", "0", env=env).stdout,
    ]
    for fmt in ("html", "csv", "json"):
        path = tmp_path / f"report.{fmt}"
        assert cli("report", "-o", str(path), env=env).exit_code == 0
        outputs.append(path.read_text())
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("secret.db*"))
    key_body = scenario.SECRET_KEY.splitlines()[1]
    assert all(out for out in outputs)
    for secret in (scenario.SECRET_PASSWORD, key_body):
        assert not any(secret in out for out in outputs)
        assert secret.encode() not in stored
