"""Shared fixtures: the real CLI against real database files, and the session's local lab.

The tests are in two folders: `tests/unit/` (pure code and the CLI on SQLite files: no root, no lab,
about a minute) and `tests/lab/` (real sshd hosts, the WinRM stand-in, ansible-playbook runs, restic,
PostgreSQL). Every test under `tests/lab/` carries the `lab` marker, as does any test elsewhere that
asks for the lab or a PostgreSQL server, so `pytest -m "not lab"` and `pytest tests/unit` both run the
unit part.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parent.parent
HOSPITAL = ROOT / "inventory" / "hospital"
# Commands cache the parsed inventory (orchestrator/inventory/cache.py): the test session keeps its
# cache to itself, not in the user's ~/.cache.
os.environ.setdefault(
    "ORCHESTRATOR_INVENTORY_CACHE", tempfile.mkdtemp(prefix="orchestrator-tests-inventory-")
)

# Tests on the local lab: real sshd hosts in namespaces (root), restic for the backups.
needs_lab = pytest.mark.skipif(
    os.geteuid() != 0
    or (not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists())
    or not shutil.which("restic"),
    reason="the lab needs root, OpenSSH's server and restic",
)

LAB_DIR = Path(__file__).resolve().parent / "lab"
LAB_FIXTURES = {"lab", "postgres_server", "postgres_url"}


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as at a terminal. A suite started in the background (`make test &`, nohup, some CI
    runners) inherits SIGINT ignored, and so would every command it starts: the tests that press
    Ctrl-C on a triage, a run or `status --watch` would then wait for commands that rightly ignore it."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `lab` marker, from where a test lives and what it asks for."""
    for item in items:
        if item.path.is_relative_to(LAB_DIR) or LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


# The Vagrant rehearsal needs the lab's machines up and this process inside the lab's network
# namespace: only `make test-vagrant` (scripts/vagrant-test.sh) runs it, and says so with this variable.
collect_ignore = (
    [] if os.environ.get("ORCHESTRATOR_VAGRANT_LAB") == "1" else ["lab/test_vagrant_rehearsal.py"]
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """With ORCHESTRATOR_NO_SKIP=1 (`make test`, hence CI, which installs every dependency), a skip is a
    failure: a test skipped for a missing package would otherwise pass unseen."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("ORCHESTRATOR_NO_SKIP") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where nothing may be: {reason}"


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


@pytest.fixture(autouse=True)
def _audit_key_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database URL's audit key goes under $XDG_CONFIG_HOME: the test's own, never the user's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    monkeypatch.delenv("ORCHESTRATOR_AUDIT_KEY", raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "recovery.db"


@pytest.fixture
def cli(db_path: Path) -> Cli:
    return Cli(db_path)


class LabHandle:
    """The session's local lab: its directory, manifest (the ground truth) and the ways in."""

    def __init__(self, directory: Path, manifest: dict) -> None:
        self.dir = directory
        self.manifest = manifest
        self.inventory = directory / "inventory"
        self.known_hosts = directory / "known_hosts"
        self.key = directory / "id_ed25519"

    @property
    def hosts(self) -> list[dict]:
        return self.manifest["hosts"]

    def host(self, name: str) -> dict:
        return next(h for h in self.hosts if h["name"] == name)

    def by_kind(self, kind: str, os: str | None = None) -> list[dict]:
        return [h for h in self.hosts if h["scenario"]["kind"] == kind and os in (None, h["os"])]

    def env(self) -> dict[str, str]:
        """The environment Ansible needs for the Windows hosts (their password, from winrm.env)."""
        env = dict(os.environ)
        winrm_env = self.dir / "winrm.env"
        if winrm_env.exists():
            key, _, value = winrm_env.read_text().strip().partition("=")
            env[key] = value
        return env

    def ssh_command(self, name: str, command: str, timeout: int = 10) -> list[str]:
        """An OpenSSH command line to run `command` on a Linux lab host, as Ansible would connect."""
        host = self.host(name)
        return [
            "ssh", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}",
            f"root@{host['address']}", command,
        ]  # fmt: skip


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """One local lab for the whole session (real sshd hosts; needs root, openssh-server and restic, as
    CI has): 12 Linux hosts with every scenario, the protected backup host and evidence store, and 2
    Windows stand-ins. On its own free 127.N.0.0/16; brought down (and checked gone) at the end.
    Tests that change hosts should reimage them, or use a lab of their own."""
    import orchestrator_lab as lab_lib

    directory = tmp_path_factory.mktemp("session-lab") / "lab"
    config = lab_lib.LabConfig(dir=directory, hosts=12, windows=2, seed=7, net=lab_lib.free_net())
    manifest = lab_lib.up(config)
    try:
        yield LabHandle(directory, manifest)
    finally:
        lab_lib.down(directory)
