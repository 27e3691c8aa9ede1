"""The Vagrant lab's description, checked without booting anything: the Vagrantfile passes `vagrant
validate`, its machines are the inventory's, it picks KVM only where the processor offers it, nothing in
it opens a network outside the lab's namespace, the box's recipe hash follows its recipe, and the box's
golden images are the local lab's. The machines themselves are booted by tests/lab/test_vagrant_rehearsal.py
(`make test-vagrant`).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator import inventory
from orchestrator_lab import catalog, vagrant_images, vagrant_seed
from tests.conftest import ROOT

VAGRANTFILE = ROOT / "Vagrantfile"
VAGRANT_INVENTORY = ROOT / "inventory" / "vagrant"
LOAD = "module Vagrant; def self.configure(*); end; end; load ARGV[0]; "

needs_vagrant = pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed")


def ruby(script: str, *args: str) -> str:
    """Ruby on the Vagrantfile's top level (Vagrant.configure stubbed out)."""
    out = subprocess.run(
        ["ruby", "-e", "require 'json'; " + LOAD + script, str(VAGRANTFILE), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "VAGRANT_LAB_QUIET": "1"},
    )
    return out.stdout


def validate(directory: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
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


@needs_vagrant
def test_vagrantfile_validates(tmp_path: Path) -> None:
    result = validate(ROOT, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


@needs_vagrant
def test_a_broken_vagrantfile_is_refused(tmp_path: Path) -> None:
    """The check above can fail: an unknown setting is reported."""
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copytree(ROOT / "orchestrator_lab" / "data", broken / "orchestrator_lab" / "data")
    text = VAGRANTFILE.read_text().replace(
        "config.vm.boot_timeout = 600", "config.vm.boot_timeout = 600\n  config.vm.no_such_setting = true"
    )
    assert "no_such_setting" in text
    (broken / "Vagrantfile").write_text(text)
    result = validate(broken, tmp_path)
    assert result.returncode != 0
    assert "no_such_setting" in result.stdout + result.stderr


def test_inventory_matches_the_machines_and_is_valid() -> None:
    table = json.loads(ruby("puts JSON.generate(MACHINES)"))
    inv = inventory.load([str(VAGRANT_INVENTORY)])
    assert not inv.problems, inv.problems
    assert set(inv.hosts) == set(table) == {m.name for m in vagrant_seed.machines()}
    assert len(table) == 4  # what a 2-core CI machine boots under TCG
    for name, spec in table.items():
        host = inv.hosts[name]
        assert host.address == spec["ip"] and host.address.startswith("192.168.56.")
        assert host.os == "linux" and host.reimage_method == "vagrant" and host.restore_method == "restic"
        assert spec["image"] in catalog.catalog()["groups"]
    assert inv.hosts["bkp01"].protected and {"backup", "evidence_store"} <= set(inv.hosts["bkp01"].groups)
    assert inv.hosts["dc01"].tier == 0 and "domain_controllers" in inv.hosts["dc01"].groups
    assert inv.hosts["ws01"].vars["recovery_depends_on"] == ["ehr_db"]
    assert "ehr_db" in inv.hosts["ehrdb01"].groups


@pytest.mark.parametrize(
    ("flags", "kvm_writable", "driver"),
    [
        ("fpu vme de pse tsc msr pae hypervisor", True, "qemu"),  # /dev/kvm alone (PVM) is not enough
        ("fpu vme vmx pse", True, "kvm"),
        ("fpu svm pse", True, "kvm"),
        ("fpu vmx pse", False, "qemu"),  # the processor offers it, the device is not there
    ],
)
def test_kvm_only_where_the_processor_offers_it(
    tmp_path: Path, flags: str, kvm_writable: bool, driver: str
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    kvm = tmp_path / "kvm"
    if kvm_writable:
        kvm.write_text("")
    chosen, note = json.loads(
        ruby("puts JSON.generate(accelerator(ARGV[1], ARGV[2]))", str(cpuinfo), str(kvm))
    )
    assert chosen == driver
    assert ("TCG" in note) == (driver == "qemu")


def test_the_vagrantfile_opens_no_network_outside_the_lab() -> None:
    """No private/public network or forwarded port (each would be a bridge, a NAT rule or an `ssh -L`
    helper in the machine's own namespace); the management network is the lab script's isolated one."""
    text = VAGRANTFILE.read_text()
    code = "\n".join(line.split("#")[0] for line in text.splitlines())
    for forbidden in ("private_network", "public_network", "forwarded_port", "nat"):
        assert forbidden not in code.replace("management_network", ""), forbidden
    assert 'lv.management_network_mode = "none"' in text
    assert "lv.forward_ssh_port = false" in text
    script = (ROOT / "scripts" / "vagrant-lab.sh").read_text()
    network = script[script.index("<network>") : script.index("</network>")]
    assert "<forward" not in network and '<dns enable="no"/>' in network


def test_the_box_recipe_hash_follows_the_recipe(tmp_path: Path) -> None:
    def cache_dir(**env: str) -> str:
        return subprocess.run(
            [str(ROOT / "scripts" / "vagrant-box.sh"), "--print-dir"],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), **env},
        ).stdout.strip()

    first = cache_dir()
    assert first == cache_dir() and first.startswith(f"{tmp_path}/.cache/orchestrator/vagrant/")
    assert cache_dir(DEBIAN_MIRROR="http://127.0.0.1/debian") != first  # another recipe, another box


def test_the_box_carries_the_local_labs_golden_images() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0ZXN0a2V5dGVzdGtleXRlc3RrZXl0ZXN0a2V5 vagrant-lab"
    installed = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    for group in vagrant_images.GROUPS:
        with tarfile.open(fileobj=io.BytesIO(vagrant_images.pack(group, key, installed))) as tar:
            members = {m.name: m for m in tar.getmembers()}
            app = catalog.group(group)["app"]["name"]
            assert f"opt/{app}/bin/{app}" in members and members[f"opt/{app}/bin/{app}"].mode == 0o755
            assert tar.extractfile("root/.ssh/authorized_keys").read().decode().strip() == key
            assert members["root/.ssh/authorized_keys"].mode == 0o600
            assert "etc/ssh/sshd_config" in members
            assert not [n for n in members if n.startswith("var/log/")]  # the real box has the real logs
            assert all(m.mtime == installed.timestamp() for m in members.values())
    assert set(vagrant_images.GROUPS) == {m.image for m in vagrant_seed.machines()}
