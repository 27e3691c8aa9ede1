"""What a lab is asked to be, the address plan, and where its files live.

Lab traffic must stay on loopback (127.0.0.0/8), with numeric, valid addresses: the configuration is
refused otherwise, before anything is started.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
DEFAULT_NET = "127.42.0.0/16"
DEFAULT_DIR = "lab-data"
SSH_PORT = 22
WINRM_PORT = 5985
FIRST_HOST_OCTET = 11  # .1-.10 of every /24 stay free, as on a real segment (gateways, appliances)
MAX_HOSTS = 2000
SYSTEM_DIRS = (
    "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/proc", "/sys",
    "/dev", "/run", "/var/lib", "/var/cache", "/var/log", "/var/spool", "/var/run",
)  # fmt: skip


@dataclass(frozen=True)
class LabConfig:
    dir: Path = Path(DEFAULT_DIR)
    hosts: int = 12
    windows: int = 0
    nodes: int = 0
    infected: float = 0.4
    seed: int = 1
    net: str = DEFAULT_NET

    def __post_init__(self) -> None:
        object.__setattr__(self, "dir", Path(self.dir).absolute())
        # Each host sees the lab directory covered by an empty tmpfs: it must not hold what a host
        # needs (its programs, /etc), nor be a whole top-level directory.
        system = any(self.dir == Path(p) or Path(p) in self.dir.parents for p in SYSTEM_DIRS)
        if len(self.dir.parts) < 3 or system:
            raise OrchestratorError(
                f"--dir {self.dir}: use a directory of its own outside the system's, e.g. {Path.cwd() / DEFAULT_DIR}"
            )
        if self.hosts < 2:
            raise OrchestratorError("--hosts must be at least 2 (the backup host and the evidence store)")
        if self.hosts + self.windows + self.nodes > MAX_HOSTS:
            raise OrchestratorError(f"at most {MAX_HOSTS} lab hosts in all")
        if self.windows < 0:
            raise OrchestratorError("--windows must be 0 or more")
        if not 0 <= self.nodes <= self.hosts:
            raise OrchestratorError(
                "--nodes must be between 0 and --hosts (each node serves a site of hosts)"
            )
        if not 0.0 <= self.infected <= 1.0:
            raise OrchestratorError("--infected must be a fraction between 0 and 1")
        network = parse_net(self.net)
        total = self.hosts + self.windows + self.nodes
        if len(addresses(network, total)) < total:
            raise OrchestratorError(f"--net {self.net} is too small for {total} hosts")

    def settings(self) -> dict[str, Any]:
        """What makes two labs the same lab (the directory aside): compared by `up` to stay idempotent."""
        data = asdict(self)
        data.pop("dir")
        return data


def parse_net(net: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(net, strict=False)
    except ValueError as exc:
        raise OrchestratorError(f"--net {net!r} is not a network (expected e.g. {DEFAULT_NET})") from exc
    if not isinstance(network, ipaddress.IPv4Network) or not network.subnet_of(LOOPBACK):
        raise OrchestratorError(f"--net {net} is not inside 127.0.0.0/8: lab traffic stays on loopback")
    if network.prefixlen > 24:
        raise OrchestratorError(f"--net {net}: use a /24 or larger loopback network")
    return network


def addresses(network: ipaddress.IPv4Network, count: int) -> list[str]:
    """`.11`, `.12`, ... `.254`, then the next /24 from `.11` again: every octet valid, none a network or
    broadcast address, so the plan reads like a real segment's."""
    out: list[str] = []
    for subnet in network.subnets(new_prefix=24):
        base = int(subnet.network_address)
        for last in range(FIRST_HOST_OCTET, 255):
            out.append(str(ipaddress.IPv4Address(base + last)))
            if len(out) == count:
                return out
    return out


@dataclass(frozen=True)
class LabPaths:
    """The lab directory's layout (see the lab contract)."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def marker(self) -> Path:
        """Written first, removed last: says this directory holds a lab, complete or not."""
        return self.root / ".orchestrator-lab"

    @property
    def lock(self) -> Path:
        return self.root / ".lab.lock"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    def host(self, name: str) -> Path:
        return self.hosts / name

    @property
    def images(self) -> Path:
        return self.root / "images"

    def image(self, name: str) -> Path:
        return self.images / f"{name}.tar.gz"

    @property
    def restic(self) -> Path:
        return self.root / "restic"

    @property
    def restic_password(self) -> Path:
        return self.restic / "password"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    def pidfile(self, name: str) -> Path:
        return self.pids / f"{name}.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def ns(self) -> Path:
        """Per-host mount tables used to run restic with the host's own paths."""
        return self.root / "ns"

    @property
    def windows(self) -> Path:
        return self.root / "windows"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory"

    @property
    def winrm_env(self) -> Path:
        return self.root / "winrm.env"

    def owned(self) -> list[Path]:
        """Everything `up` creates: `down` removes exactly these, then the directory if it is empty
        (the demo keeps its database next to the lab)."""
        return [
            self.hosts,
            self.images,
            self.restic,
            self.pids,
            self.logs,
            self.ns,
            self.windows,
            self.inventory,
            self.manifest,
            self.known_hosts,
            self.key,
            self.key.with_name("id_ed25519.pub"),
            self.winrm_env,
            self.lock,
            self.marker,
        ]
