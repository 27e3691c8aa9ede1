"""No per-host step grows with the fleet: the same inventory shape at two sizes costs the same number
of function calls per host (counted by cProfile, deterministic, unlike wall time) when loaded, when a
triage prepares (secrets to scrub, scripts, login keys) and when a plan is built. Before, every host
carried Ansible's `groups` (every group with every host) and the triage stringified it per host."""

from __future__ import annotations

import cProfile
import json
import pstats
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator import inventory
from orchestrator.triage import packs as packs_lib
from orchestrator.triage.engine import Settings, Triage

SITES = 4


def write_fleet(root: Path, per_site: int) -> Path:
    """SITES sites of `per_site` hosts each: Windows workstations and Linux servers that depend on
    their site's servers, a fleet password from an environment lookup, a per-site secret by template."""
    (root / "group_vars").mkdir(parents=True)
    lines = ["all:", "  children:"]
    for s in range(SITES):
        site = f"site{s}"
        servers = [f"srv-{site}-{i:04d}" for i in range(per_site // 10)]
        stations = [f"ws-{site}-{i:05d}" for i in range(per_site - len(servers))]
        lines += [f"    {site}_servers:", "      hosts:"]
        lines += [
            f"        {h}: {{ansible_host: 127.{40 + s}.{i // 250}.{i % 250 + 1}}}"
            for i, h in enumerate(servers)
        ]
        lines += [f"    {site}_workstations:", "      hosts:"]
        offset = len(servers)
        lines += [
            f"        {h}: {{ansible_host: 127.{40 + s}.{(i + offset) // 250}.{(i + offset) % 250 + 1}}}"
            for i, h in enumerate(stations)
        ]
        lines += [
            f"    {site}:",
            "      children:",
            f"        {site}_servers: {{}}",
            f"        {site}_workstations: {{}}",
        ]
        (root / "group_vars" / f"{site}.yml").write_text(
            f"recovery_site: {site}\nsite_secret: 'pw-{site}'\nansible_become_password: '{{{{ site_secret }}}}'\n"
        )
        (root / "group_vars" / f"{site}_workstations.yml").write_text(
            "recovery_role: workstation\nansible_connection: winrm\nansible_winrm_transport: ntlm\n"
            f"recovery_depends_on: [{site}_servers]\n"
        )
        (root / "group_vars" / f"{site}_servers.yml").write_text("recovery_tier: 2\n")
    (root / "group_vars" / "all.yml").write_text(
        "ansible_user: recovery\nansible_password: \"{{ lookup('env', 'SCALE_TEST_PW') }}\"\n"
    )
    (root / "hosts.yml").write_text("\n".join(lines) + "\n")
    return root


def calls(fn: Callable[[], Any]) -> int:
    profile = cProfile.Profile()
    profile.runcall(fn)
    return sum(entry[1] for entry in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> dict[int, inventory.Inventory]:
    import os

    os.environ["SCALE_TEST_PW"] = "fleet-pw-from-env"
    sizes = (100, 400)
    return {n: inventory.load([str(write_fleet(tmp_path_factory.mktemp(f"fleet{n}"), n))]) for n in sizes}


def test_a_hosts_variables_do_not_grow_with_the_fleet(fleets: dict[int, inventory.Inventory]) -> None:
    per_host = {}
    for n, inv in fleets.items():
        inv.require_valid()
        assert len(inv.hosts) == SITES * n
        per_host[n] = sum(len(json.dumps(h.vars, default=str)) for h in inv.hosts.values()) / len(inv.hosts)
        assert all("groups" not in h.vars for h in inv.hosts.values())
    small, large = (per_host[n] for n in sorted(per_host))
    assert large <= small * 1.05, per_host


def test_triage_set_up_costs_the_same_per_host_at_four_times_the_fleet(
    fleets: dict[int, inventory.Inventory],
) -> None:
    loaded = packs_lib.load(())
    per_host = {}
    made: dict[int, Triage] = {}
    for n, inv in fleets.items():
        hosts = list(inv.hosts.values())
        per_host[n] = calls(
            lambda hosts=hosts, n=n: made.__setitem__(n, Triage(hosts, loaded, Settings()))
        ) / len(hosts)
    small, large = (per_host[n] for n in sorted(per_host))
    assert large <= small * 1.10, per_host
    # and the secrets are still all found: the env lookup and each site's templated secret
    scrub = made[max(made)].scrub
    text = "fleet-pw-from-env " + " ".join(f"pw-site{s}" for s in range(SITES))
    assert "pw-" not in scrub(text) and "fleet-pw" not in scrub(text)


def test_a_per_host_template_is_rendered_with_that_hosts_own_variables(tmp_path: Path) -> None:
    """Templating each distinct value once must not merge hosts whose templates read different values."""
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n  vars:\n    ansible_password: '{{ base }}-{{ inventory_hostname }}'\n    base: b\n  hosts:\n"
        "    a1: {ansible_host: 127.44.0.1}\n    a2: {ansible_host: 127.44.0.2, base: other}\n"
    )
    hosts = list(inventory.load([str(path)]).hosts.values())
    scrub = Triage(hosts, packs_lib.load(()), Settings()).scrub
    assert scrub("b-a1 other-a2") == "*** ***"
