"""The stage playbooks as Ansible itself and ansible-lint (production profile) see them.

The pxe and vsphere task files cannot run here (no BMC, no vCenter): the lint, which checks every
module's arguments against the installed collections, is what keeps them correct.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.execution.states import STAGE_ORDER
from tests.conftest import ROOT

PLAYBOOKS = ROOT / "playbooks"
BIN = Path(sys.executable).parent


def test_one_playbook_per_stage_and_a_task_file_per_method() -> None:
    assert sorted(p.stem for p in PLAYBOOKS.glob("*.yml")) == sorted(STAGE_ORDER)
    assert {p.stem for p in (PLAYBOOKS / "tasks" / "reimage").glob("*.yml")} == {
        "lab",
        "vagrant",
        "pxe",
        "vsphere",
    }
    assert {"restic", "none"} <= {p.stem for p in (PLAYBOOKS / "tasks" / "restore").glob("*.yml")}
    for stage in ("isolate", "collect", "wipe", "validate", "harden", "reconnect"):
        assert {p.stem for p in (PLAYBOOKS / "tasks" / stage).glob("*.yml")} >= {"linux", "windows"}, stage


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_syntax_check(stage: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "--syntax-check",
            "-i",
            "localhost,",
            str(PLAYBOOKS / f"{stage}.yml"),
        ],
        capture_output=True,
        text=True,
        cwd=PLAYBOOKS,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile() -> None:
    lint = BIN / "ansible-lint"
    assert lint.exists() or shutil.which("ansible-lint"), (
        "ansible-lint is a dev dependency: pip install -e '.[dev]'"
    )
    result = subprocess.run(
        [
            str(lint if lint.exists() else "ansible-lint"),
            "--profile",
            "production",
            "--offline",
            "--nocolor",
            ".",
        ],
        capture_output=True,
        text=True,
        cwd=PLAYBOOKS,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr
