"""The inventory as an operator without root sees it: the test drops root (setpriv), so it runs as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.unit.test_inventory import GOOD, write


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed to drop root")
def test_unreadable_file_as_an_unprivileged_user() -> None:
    """Root reads everything, so the operator's case (a file they may not read) runs as `nobody`."""
    work = Path(tempfile.mkdtemp(prefix="orch-unreadable-"))
    try:
        work.chmod(0o755)
        inv = write(work, "secret.yml", GOOD)
        inv.chmod(0o000)
        db = work / "state.db"
        env = {
            **os.environ,
            "HOME": str(work),
            "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
            "ANSIBLE_HOME": str(work),
        }
        proc = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sys.executable,
                "-m",
                "orchestrator",
                "--db",
                str(db),
                "inventory",
                "check",
                "-i",
                str(inv),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == f"error: {inv}: not readable (permission denied)"
        assert not db.exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)
