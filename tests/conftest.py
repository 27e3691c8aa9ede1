"""Shared fixtures: the real CLI against real database files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parent.parent
HOSPITAL = ROOT / "inventory" / "hospital"


class Cli:
    """Runs `orchestrator` in-process with CliRunner, always against this test's database file."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        full_env = {"ORCHESTRATOR_OPERATOR": "tester", **(env or {})}
        return self.runner.invoke(
            main, ["--db", str(self.db), *args], input=input, env=full_env, catch_exceptions=False
        )

    def json(self, *args: str) -> dict:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output + result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "recovery.db"


@pytest.fixture
def cli(db_path: Path) -> Cli:
    return Cli(db_path)
