"""The same store, planning and CLI behaviour on a real PostgreSQL server (tests/postgres.py).

Every unit test that takes a `url` (a SQLite file there) runs here again with `url` a PostgreSQL
database, so a new such test is covered on both without being written twice.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.reporting import fleet as fleet_status
from orchestrator.reporting import host_view
from orchestrator.reporting.selection import HostFilter
from orchestrator.store import Store
from tests.conftest import HOSPITAL
from tests.unit import test_planning_cli, test_store
from tests.unit.reporting_support import build
from tests.unit.test_planning_cli import fleet  # noqa: F401 (a fixture, by name)
from tests.unit.test_status import _status, recovery_db  # noqa: F401 (a fixture, by name)


@pytest.fixture
def url(postgres_url: str) -> str:
    return postgres_url


def _taking_url(module: ModuleType) -> dict[str, Any]:
    return {
        name: test
        for name, test in vars(module).items()
        if name.startswith("test_") and "url" in inspect.signature(test).parameters
    }


globals().update(_taking_url(test_store) | _taking_url(test_planning_cli))


def test_the_same_commands_on_postgresql(postgres_url: str) -> None:
    """`--db` takes any SQLAlchemy URL: the CLI behaves the same on a real PostgreSQL server."""
    runner = CliRunner()
    base = ["--db", postgres_url, "--operator", "carol"]
    first = runner.invoke(main, [*base, "inventory", "sync", "-i", str(HOSPITAL), "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {"hosts": 1850, "added": 1850, "updated": 0}
    again = runner.invoke(main, [*base, "inventory", "sync", "-i", str(HOSPITAL), "-l", "tier0", "--json"])
    assert json.loads(again.stdout) == {"hosts": 19, "added": 0, "updated": 0}


def test_same_status_answers_on_postgresql(postgres_url: str, tmp_path: Path, recovery_db: Path) -> None:  # noqa: F811
    build(postgres_url, tmp_path).close()
    on_pg = _status(postgres_url)
    on_sqlite = _status(recovery_db)
    for data in (on_pg, on_sqlite):  # when the builder ran, not part of the scenario
        for row in data["attention"]["hosts"]:
            del row["since"]
    assert {k: v for k, v in on_pg.items() if k != "plan"} == {
        k: v for k, v in on_sqlite.items() if k != "plan"
    }
    store = Store.open(postgres_url)
    # The per-host containment (`status --containment`) agrees too, and with the default view's
    # aggregate counts and next steps on PostgreSQL.
    listed = fleet_status.status(store, containment=True)
    local = Store.open(str(recovery_db))
    try:
        assert listed["containment"] == fleet_status.status(local, containment=True)["containment"]
    finally:
        local.close()
    per_host = listed["containment"].pop("hosts")
    assert per_host and listed["containment"] == on_pg["containment"]
    assert listed["next_steps"] == on_pg["next_steps"]
    assert host_view.timeline(store, "dc01")["stages"][-1]["stage"] == "reconnect"
    assert fleet_status.status(store, HostFilter(pattern="ehr*", state="in_progress"))["total"] == 1
    store.close()
