"""The Vagrant lab: its Vagrantfile passes `vagrant validate`, and its inventory matches its machines.

Debian's vagrant lacks the winrm gems its WinRM communicator loads; tests/lab/vagrant_stubs holds
validation-only stand-ins for them, put on RUBYLIB for `vagrant validate` and nothing else. Nothing
here boots a machine or opens a connection.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator import inventory
from tests.conftest import ROOT

VAGRANTFILE = ROOT / "Vagrantfile"
STUBS = ROOT / "tests" / "lab" / "vagrant_stubs"
VAGRANT_INVENTORY = ROOT / "inventory" / "vagrant"

pytestmark = pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed")


def validate(directory: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
        "RUBYLIB": str(STUBS),
        "VAGRANT_HOME": str(tmp_path / "vagrant.d"),  # nothing written to the real ~/.vagrant.d
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dotfile"),  # nor a .vagrant/ in the repository
        "VAGRANT_CHECKPOINT_DISABLE": "1",  # no version check over the network
        "VAGRANT_NO_COLOR": "1",
    }
    return subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_vagrantfile_validates(tmp_path: Path) -> None:
    result = validate(ROOT, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


def test_a_broken_vagrantfile_is_refused(tmp_path: Path) -> None:
    """The check above can fail: an unknown setting is reported."""
    broken = tmp_path / "broken"
    broken.mkdir()
    text = VAGRANTFILE.read_text().replace(
        "node.vm.boot_timeout = 600", "node.vm.boot_timeout = 600\n        node.vm.no_such_setting = true"
    )
    (broken / "Vagrantfile").write_text(text)
    result = validate(broken, tmp_path)
    assert result.returncode != 0
    assert "no_such_setting" in result.stdout + result.stderr


def machines() -> dict[str, dict]:
    """The Vagrantfile's MACHINES table, read by Ruby itself (Vagrant.configure is stubbed out)."""
    script = (
        "require 'json'; module Vagrant; def self.configure(*); end; end; "
        f"load {json.dumps(str(VAGRANTFILE))}; puts JSON.generate(MACHINES)"
    )
    out = subprocess.run(["ruby", "-e", script], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_inventory_matches_the_machines_and_is_valid() -> None:
    table = machines()
    inv = inventory.load([str(VAGRANT_INVENTORY)])
    assert not inv.problems, inv.problems
    assert set(inv.hosts) == set(table)
    kinds = {"dc": "domain_controllers", "backup": "backup", "ehr_db": "ehr_db", "ehr_app": "ehr_app"}
    for name, spec in table.items():
        host = inv.hosts[name]
        assert host.address == spec["ip"] and host.address.startswith("192.168.56.")
        assert host.os == ("windows" if spec["windows"] else "linux")
        assert kinds.get(spec["role"], "ws_wards") in host.groups
        assert host.reimage_method == "vagrant"
        if spec["windows"]:
            assert host.vars["ansible_winrm_transport"] == "ntlm" and host.connection == "winrm"
            assert "lookup('env'" in str(host.vars["ansible_password"])
    assert inv.hosts["bkp01"].protected and inv.hosts["dc01"].tier == 0
    assert len([m for m in table.values() if m["windows"] and m["role"] == "workstation"]) == 2


def test_windows_machines_use_winrm_with_a_raised_boot_timeout() -> None:
    text = VAGRANTFILE.read_text()
    windows_block = text[text.index("if spec[:windows]") : text.index("else\n        node.vm.boot_timeout")]
    assert 'node.vm.communicator = "winrm"' in windows_block
    timeout = int(windows_block.split("node.vm.boot_timeout = ")[1].split()[0])
    assert timeout >= 1200
    assert '"private_network"' in text and "bridged" not in text.replace("never bridged", "")
