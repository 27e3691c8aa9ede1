"""The local lab, for real: sshd hosts in their own namespaces, restic backups, golden images, WinRM
stand-ins, and a `down` that leaves nothing. The session's shared lab (`lab` fixture) is only read
here; tests that reimage, kill or tear down use a small lab of their own (`own_lab`)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import winrm
from click.testing import CliRunner

import orchestrator_lab as lab_lib
from orchestrator import inventory
from orchestrator.cli import main
from orchestrator.errors import OrchestratorError, RefusedError
from orchestrator_lab import blueprint, control, hostdata, processes, scenarios
from orchestrator_lab import settings as lab_settings
from orchestrator_lab.layout import BACKED_UP
from tests.conftest import ROOT, LabHandle

KINDS = {
    "clean", "lockbit3", "lockbit2", "linux_locker", "persistence", "suspicious",
    "sshd_down", "sshd_stopped", "hostkey_changed", "lookalikes",
}  # fmt: skip
HOST_KEYS = {"name", "address", "port", "os", "role", "tier", "group", "protected", "pid", "scenario"}
ANSIBLE = str(ROOT / ".venv" / "bin" / "ansible")
UNREACHABLE = ("sshd_down", "sshd_stopped", "hostkey_changed")


def ssh(lab: LabHandle, name: str, command: str) -> str:
    result = subprocess.run(lab.ssh_command(name, command), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def restic(lab: LabHandle, *args: str) -> str:
    repo = lab.dir / "hosts" / lab.manifest["backup_host"] / "srv" / "restic"
    cmd = ["restic", "--no-cache", "-r", str(repo), "--password-file", str(lab.dir / "restic" / "password")]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, check=True, timeout=60).stdout


# -- the manifest -------------------------------------------------------------------------------------
def test_manifest_holds_every_scenario_and_the_protected_hosts(lab: LabHandle) -> None:
    m = lab.manifest
    assert {h["scenario"]["kind"] for h in lab.hosts if h["os"] == "linux"} == KINDS
    assert [h["os"] for h in lab.hosts].count("windows") == 2
    backup, evidence = lab.host(m["backup_host"]), lab.host(m["evidence_host"])
    assert backup["protected"] and evidence["protected"]
    assert backup["scenario"]["kind"] == evidence["scenario"]["kind"] == "clean"
    net = ipaddress.ip_network(m["net"])
    for h in lab.hosts:
        assert set(h) >= HOST_KEYS
        assert ipaddress.ip_address(h["address"]) in net and net.subnet_of(
            ipaddress.ip_network("127.0.0.0/8")
        )
        assert h["port"] == (22 if h["os"] == "linux" else 5985)
    assert len({h["address"] for h in lab.hosts}) == len(lab.hosts)
    changed = lab.by_kind("hostkey_changed")[0]["scenario"]
    assert (changed["expected_verdict"], changed["expected_reason"]) == (
        "error",
        "host key changed: possible interception",
    )
    for h in lab.by_kind("persistence"):  # dwell time: the foothold predates the encryption
        assert h["scenario"]["compromise_time"] < m["infection_time"]


def test_manifest_is_reproducible_from_the_seed(lab: LabHandle) -> None:
    """Drawing the lab again from its seed (and its creation time) gives the same hosts, scenarios,
    planted paths, hashes and compromise times; another seed gives another lab."""
    m = lab.manifest
    config = lab_lib.LabConfig(dir=lab.dir, **m["settings"])
    created = datetime.fromisoformat(m["created_at"].replace("Z", "+00:00"))
    again = blueprint.draw(config, created)
    assert [(h.name, h.address, h.group, h.kind) for h in again.hosts] == [
        (h["name"], h["address"], h["group"], h["scenario"]["kind"]) for h in lab.hosts
    ]
    assert blueprint.iso(again.timeline.infection) == m["infection_time"]
    campaign = scenarios.campaign(m["seed"])
    assert campaign.to_dict() == m["campaign"]
    for host in again.hosts:
        if host.os != "linux":
            continue
        data = hostdata.data_ops(host, m["seed"], again.timeline)
        record = scenarios.scenario_record(
            host, scenarios.plant(host, m["seed"], again.timeline, data, campaign)
        )
        recorded = dict(lab.host(host.name)["scenario"])
        recorded["details"] = {k: v for k, v in recorded["details"].items() if not k.endswith("_fingerprint")}
        assert record == recorded, host.name
    other = blueprint.draw(
        lab_lib.LabConfig(dir=lab.dir, **(m["settings"] | {"seed": m["seed"] + 1})), created
    )
    assert [h.kind for h in other.hosts] != [h.kind for h in again.hosts] or blueprint.iso(
        other.timeline.infection
    ) != m["infection_time"]


# -- hosts: real sshd, isolated ---------------------------------------------------------------------
def test_each_host_sees_only_its_own_files(lab: LabHandle) -> None:
    servers = [
        h
        for h in lab.hosts
        if h["os"] == "linux" and h["scenario"]["kind"] not in UNREACHABLE
        and (lab.dir / "hosts" / h["name"] / "srv" / "data").is_dir()
    ]  # fmt: skip
    first, second = servers[0]["name"], servers[1]["name"]
    listings = {}
    for name in (first, second):
        out = ssh(
            lab, name, f"hostname; cat /etc/hostname; find /srv/data -type f | sort; ls -A {lab.dir} | wc -l"
        )
        lines = out.splitlines()
        assert lines[0] == lines[1] == name
        assert lines[-1] == "0"  # the lab directory is covered by an empty tmpfs
        listings[name] = lines[2:-1]
        on_disk = sorted(
            "/" + str(p.relative_to(lab.dir / "hosts" / name))
            for p in (lab.dir / "hosts" / name / "srv" / "data").rglob("*")
            if p.is_file()
        )
        assert listings[name] == on_disk
    assert listings[first] and listings[second] and listings[first] != listings[second]
    # Nothing of another host is reachable: not by the lab's path, not through /proc.
    other = lab.dir / "hosts" / second / "srv" / "data"
    out = ssh(
        lab, first, f"ls {other} 2>&1; ls /proc | grep -c '^[0-9]'; readlink /proc/1/exe; cat /proc/1/cmdline"
    )
    assert "No such file or directory" in out
    assert int(out.splitlines()[1]) < 10  # its own PID namespace: sshd, this session, these commands
    assert "sshd" in out and lab.host(first)["address"] in out


def test_ansible_ping_reaches_every_reachable_linux_host(lab: LabHandle) -> None:
    """Real `ansible`, over the lab inventory as written: key-only login, host keys from known_hosts."""
    result = subprocess.run(
        [ANSIBLE, "linux", "-i", str(lab.inventory), "-m", "ping", "-T", "5", "-f", "12"],
        capture_output=True,
        text=True,
        timeout=180,
        env=lab.env() | {"ANSIBLE_STDOUT_CALLBACK": "minimal", "ANSIBLE_HOST_KEY_CHECKING": "True"},
        cwd=lab.dir,
    )
    outcome = dict(re.findall(r"^(\S+) \| (SUCCESS|UNREACHABLE!|FAILED!)", result.stdout, re.MULTILINE))
    for h in lab.hosts:
        if h["os"] != "linux":
            continue
        expected = (
            "SUCCESS" if h["scenario"]["expected_verdict"] not in ("unreachable", "error") else "UNREACHABLE!"
        )
        assert outcome.get(h["name"]) == expected, (h["name"], h["scenario"]["kind"], result.stdout[-2000:])
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stdout  # refused, not learned


def test_status_says_which_hosts_are_up_down_or_hanging(lab: LabHandle) -> None:
    result = lab_lib.status(lab.dir)
    states = {h["name"]: h["state"] for h in result["hosts"]}
    for h in lab.hosts:
        kind = h["scenario"]["kind"]
        expected = {"sshd_down": "down", "sshd_stopped": "stopped"}.get(kind, "up")
        assert states[h["name"]] == expected, (h["name"], kind)


def test_windows_hosts_answer_over_winrm_with_the_lab_account(lab: LabHandle) -> None:
    password = lab.env()["LAB_WINRM_PASSWORD"]
    assert password not in (lab.inventory / "group_vars" / "windows.yml").read_text()
    for h in [h for h in lab.hosts if h["os"] == "windows"]:
        session = winrm.Session(
            f"http://{h['address']}:5985/wsman", auth=("Administrator", password), transport="ntlm"
        )
        result = session.run_cmd("hostname")
        assert result.status_code == 0 and result.std_out.decode().strip() == h["name"]


# -- backups ------------------------------------------------------------------------------------------
def test_restic_holds_snapshots_before_and_after_the_infection(lab: LabHandle) -> None:
    snaps = json.loads(restic(lab, "snapshots", "--json"))
    infection = lab.manifest["infection_time"]
    by_host: dict[str, list[dict]] = {}
    for snap in snaps:
        by_host.setdefault(snap["hostname"], []).append(snap)
    for h in (h for h in lab.hosts if h["os"] == "linux"):
        times = sorted(s["time"][:19] + "Z" for s in by_host[h["name"]])
        compromise = h["scenario"]["compromise_time"]
        # The older nightly is kept where it is the clean restore point (a foothold older than the last).
        before = 2 if compromise and compromise < lab.manifest["backups"][1]["time"] else 1
        assert sum(t < infection for t in times) == before and sum(t > infection for t in times) == 1, h[
            "name"
        ]
        assert sorted(s["id"] for s in by_host[h["name"]]) == sorted(s["id"] for s in h["snapshots"])
        assert set(by_host[h["name"]][0]["paths"]) == {f"/{p}" for p in BACKED_UP}
    # The last snapshot of an encrypted host holds the damage; the one before the infection does not.
    victim = lab.by_kind("lockbit3", "linux")[0]
    details = victim["scenario"]["details"]
    before = next(s for s in reversed(victim["snapshots"]) if s["before_compromise"])
    after = victim["snapshots"][-1]
    listing_after = restic(lab, "ls", after["id"]).splitlines()
    listing_before = restic(lab, "ls", before["id"]).splitlines()
    assert details["encrypted"][0] in listing_after and details["originals"][0] not in listing_after
    assert details["originals"][0] in listing_before and details["encrypted"][0] not in listing_before
    assert any(line.endswith(details["note_name"]) for line in listing_after)
    # A foothold planted days before is already in the last nightly backup, not in the older one.
    persistent = lab.by_kind("persistence")[0]
    first, second = persistent["snapshots"][0]["id"], persistent["snapshots"][1]["id"]
    fingerprint_comment = lab.manifest["campaign"]["attacker_key_comment"]
    assert fingerprint_comment not in restic(lab, "dump", first, "/root/.ssh/authorized_keys")
    assert fingerprint_comment in restic(lab, "dump", second, "/root/.ssh/authorized_keys")
    assert (
        persistent["snapshots"][0]["before_compromise"],
        persistent["snapshots"][1]["before_compromise"],
    ) == (
        True,
        False,
    )


def test_planted_files_carry_the_incident_times(lab: LabHandle) -> None:
    persistent = lab.by_kind("persistence")[0]
    dropped = persistent["scenario"]["details"]["dropped"]
    out = ssh(lab, persistent["name"], f"sha256sum {dropped['path']}; stat -c %Y {dropped['path']}")
    digest, mtime = out.split()[0], int(out.split()[-1])
    assert digest == dropped["sha256"] == lab.manifest["campaign"]["dropper_sha256"]
    compromise = datetime.fromisoformat(persistent["scenario"]["compromise_time"].replace("Z", "+00:00"))
    assert abs(mtime - compromise.timestamp()) < 1
    locker = lab.by_kind("linux_locker")[0]
    binary = locker["scenario"]["details"]["binary"]["path"]
    assert "LockBit Linux/ESXi locker" in ssh(lab, locker["name"], f"strings {binary} || cat {binary}")
    look = lab.by_kind("lookalikes")[0]
    paths = look["scenario"]["details"]["lookalikes"]
    assert look["scenario"]["expected_verdict"] == "clean" and any(p.endswith("/README.txt") for p in paths)


# -- the inventory ------------------------------------------------------------------------------------
def test_lab_inventory_is_valid_for_the_whole_tool(lab: LabHandle) -> None:
    inv = inventory.load([str(lab.inventory)])
    assert not inv.problems, inv.problems
    assert set(inv.hosts) == {h["name"] for h in lab.hosts}
    backup = inv.hosts[lab.manifest["backup_host"]]
    assert backup.protected and backup.tier == 0
    for h in lab.hosts:
        host = inv.hosts[h["name"]]
        assert host.address == h["address"] and host.reimage_method == "lab"
        if h["os"] == "windows":
            assert host.connection == "winrm" and host.vars["ansible_winrm_transport"] == "ntlm"
        else:
            assert host.vars["ansible_ssh_private_key_file"] == str(lab.key)
    assert any(host.depends_on_hosts for host in inv.hosts.values())


# -- a lab of its own for what changes or destroys it ---------------------------------------------
@pytest.fixture(scope="module")
def own_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """Brought up through the CLI (progress bar and all): 5 Linux hosts, 1 Windows stand-in."""
    directory = tmp_path_factory.mktemp("own-lab") / "lab"
    args = ["lab", "up", "--hosts", "5", "--windows", "1", "--seed", "11", "--dir", str(directory)]
    result = CliRunner().invoke(main, [*args, "--net", lab_lib.free_net(), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    handle = LabHandle(directory, lab_lib.load_manifest(directory))
    yield handle
    lab_lib.down(directory)


def test_reimage_lays_down_the_image_with_a_new_published_host_key(own_lab: LabHandle) -> None:
    victim = next(
        h
        for h in own_lab.hosts
        if h["os"] == "linux" and not h["protected"] and h["scenario"]["kind"] not in UNREACHABLE
    )
    name = victim["name"]
    ssh(
        own_lab,
        name,
        "mkdir -p /srv/data && echo stale > /srv/data/leftover && echo x >> /root/.ssh/authorized_keys",
    )
    before = own_lab.known_hosts.read_text()
    result = CliRunner().invoke(main, ["lab", "reimage", name, "--dir", str(own_lab.dir), "--json"])
    assert result.exit_code == 0, result.output
    after = own_lab.known_hosts.read_text()
    old_line = next(line for line in before.splitlines() if line.startswith(victim["address"] + " "))
    new_line = next(line for line in after.splitlines() if line.startswith(victim["address"] + " "))
    assert old_line != new_line and len(after.splitlines()) == len(before.splitlines())
    # StrictHostKeyChecking=yes against the published file: the new key is trusted, and is the host's.
    out = ssh(
        own_lab,
        name,
        "cat /etc/ssh/ssh_host_ed25519_key.pub; hostname; ls -A /srv; cat /root/.ssh/authorized_keys",
    )
    assert new_line.split(" ", 1)[1] in out and name in out
    assert "leftover" not in out and "\nx\n" not in out
    group = victim["group"]
    assert (own_lab.dir / "images" / f"{group}.tar.gz").exists()
    app = ssh(own_lab, name, "ls /opt /etc/systemd/system /etc/cron.d")
    assert "e2scrub_all" in app
    manifest = lab_lib.load_manifest(own_lab.dir)
    entry = next(h for h in manifest["hosts"] if h["name"] == name)
    assert len(entry["reimages"]) == 1 and entry["reimages"][0]["image"] == group
    assert lab_lib.status(own_lab.dir)["hosts"][own_lab.hosts.index(victim)]["state"] == "up"


def test_reimage_refuses_protected_hosts(own_lab: LabHandle) -> None:
    with pytest.raises(RefusedError, match="protected"):
        lab_lib.reimage(own_lab.dir, own_lab.manifest["backup_host"])


def test_windows_reimage_gives_a_clean_state(own_lab: LabHandle) -> None:
    win = next(h for h in own_lab.hosts if h["os"] == "windows")
    lab_lib.reimage(own_lab.dir, win["name"])
    state = json.loads((own_lab.dir / "windows" / win["name"] / "state.json").read_text())
    assert not any(p.endswith(".README.txt") for p in state["files"])


def test_up_again_restarts_what_died_and_refuses_other_settings(own_lab: LabHandle) -> None:
    running = next(
        h for h in lab_lib.status(own_lab.dir)["hosts"] if h["state"] == "up" and h["os"] == "linux"
    )
    os.kill(running["pid"], signal.SIGKILL)
    assert _wait_state(own_lab.dir, running["name"], "down")
    settings = own_lab.manifest["settings"]
    lab_lib.up(lab_lib.LabConfig(dir=own_lab.dir, **settings))
    again = next(h for h in lab_lib.status(own_lab.dir)["hosts"] if h["name"] == running["name"])
    assert again["state"] == "up" and again["pid"] != running["pid"]
    with pytest.raises(OrchestratorError, match="other settings"):
        lab_lib.up(lab_lib.LabConfig(dir=own_lab.dir, **(settings | {"seed": settings["seed"] + 1})))


def _wait_state(directory: Path, name: str, state: str) -> bool:
    for _ in range(100):
        if next(h for h in lab_lib.status(directory)["hosts"] if h["name"] == name)["state"] == state:
            return True
        time.sleep(0.05)
    return False


def test_down_after_a_crash_leaves_no_process_mount_or_directory(own_lab: LabHandle) -> None:
    """Runs last in this module: kill -9 every sshd (a crashed lab, stale pid files), then `down`."""
    ssh(own_lab, next(h["name"] for h in lab_lib.status(own_lab.dir)["hosts"] if h["state"] == "up" and h["os"] == "linux"),
        "nohup sleep 600 >/dev/null 2>&1 &")  # fmt: skip
    for h in lab_lib.status(own_lab.dir)["hosts"]:
        if h["pid"] and h["os"] == "linux":
            os.kill(h["pid"], signal.SIGKILL)
    result = CliRunner().invoke(main, ["lab", "down", "--dir", str(own_lab.dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["removed"] is True
    assert not own_lab.dir.exists()
    # Checked, not assumed: no process anywhere has a mount from the lab, none serves its Windows host,
    # nothing of it is mounted here, and the directory is gone.
    left = lab_lib.leftovers(own_lab.dir)
    assert left == {"processes": [], "mounts": [], "dir_exists": False}
    with open("/proc/mounts") as f:
        assert str(own_lab.dir) not in f.read()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                assert f"{own_lab.dir}/" not in (entry / "mountinfo").read_text(), entry.name
                assert str(own_lab.dir) not in (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:  # the process ended while being read
                continue
    for h in own_lab.hosts:
        assert not processes.port_open(h["address"], h["port"], timeout=0.2)
    assert CliRunner().invoke(main, ["lab", "down", "--dir", str(own_lab.dir)]).output.startswith("no lab")


# -- without a lab ------------------------------------------------------------------------------------
def test_addresses_are_valid_loopback_octets() -> None:
    network = lab_settings.parse_net("127.42.0.0/16")
    addresses = lab_settings.addresses(network, 300)
    assert (
        addresses[0] == "127.42.0.11" and addresses[243] == "127.42.0.254" and addresses[244] == "127.42.1.11"
    )
    assert all(11 <= int(a.rsplit(".", 1)[1]) <= 254 for a in addresses)
    for bad in ("10.0.0.0/16", "192.168.1.0/24", "127.1.2.0/28", "nonsense"):
        with pytest.raises(OrchestratorError):
            lab_lib.LabConfig(dir=Path("x"), net=bad)


def test_the_lab_never_adopts_a_system_or_foreign_directory(tmp_path: Path) -> None:
    for system in ("/etc/ssh", "/usr/local/lab", "/tmp", "/"):
        with pytest.raises(OrchestratorError, match="directory of its own"):
            lab_lib.LabConfig(dir=Path(system))
    foreign = tmp_path / "repo"
    (foreign / "inventory").mkdir(parents=True)
    (foreign / "inventory" / "hosts.yml").write_text("all: {}\n")
    with pytest.raises(OrchestratorError, match="not a lab directory"):
        lab_lib.up(lab_lib.LabConfig(dir=foreign, hosts=2))
    assert sorted(p.name for p in foreign.iterdir()) == ["inventory"]
    assert lab_lib.down(foreign)["removed"] is False and (foreign / "inventory" / "hosts.yml").exists()


def test_small_labs_keep_the_protected_hosts_and_drop_extras_first() -> None:
    now = datetime(2025, 3, 14, 12, tzinfo=UTC)
    two = blueprint.draw(lab_lib.LabConfig(dir=Path("x"), hosts=2), now)
    assert [(h.group, h.kind) for h in two.hosts] == [("backup", "clean"), ("evidence_store", "clean")]
    big = blueprint.draw(lab_lib.LabConfig(dir=Path("x"), hosts=200, infected=0.3, seed=5), now)
    kinds = [h.kind for h in big.hosts]
    assert set(kinds) == KINDS and kinds.count("sshd_stopped") == 1 and kinds.count("hostkey_changed") == 1
    infected = sum(k in blueprint.INFECTED_KINDS for k in kinds)
    assert infected == round(0.3 * 198)


def test_without_root_the_lab_says_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(OrchestratorError, match=r"needs root.*namespaces"):
        control.require_environment()
