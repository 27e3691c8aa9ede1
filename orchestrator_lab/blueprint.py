"""Which hosts a lab has and what happened to each, drawn from the seed alone.

Pure: no file is touched and no clock is read (the caller passes `now`), so the same seed and `now`
always give the same lab, and tests can compare the manifest against a second draw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator_lab import catalog
from orchestrator_lab.settings import SSH_PORT, WINRM_PORT, LabConfig, addresses, parse_net

NODE_GROUP = "execution_node"
INFECTED_KINDS = ("lockbit3", "lockbit2", "linux_locker", "persistence")


@dataclass
class HostPlan:
    name: str
    address: str
    port: int
    os: str
    group: str
    role: str
    tier: int
    protected: bool
    kind: str

    @property
    def image(self) -> str:
        return self.group if self.os == "linux" else f"windows-{self.group}"


@dataclass
class Timeline:
    """The incident's clock: nightly backups at 01:00, the encryption one afternoon, a backup job that
    ran after it (so the newest snapshot is not a clean one)."""

    infection: datetime
    backups: list[tuple[str, datetime]]  # (tag, time), oldest first
    installed: datetime  # when the golden images were installed

    def to_dict(self) -> dict[str, Any]:
        return {
            "infection_time": iso(self.infection),
            "backups": [{"tag": tag, "time": iso(t)} for tag, t in self.backups],
        }


@dataclass
class LabPlan:
    seed: int
    net: str
    created_at: datetime
    timeline: Timeline
    hosts: list[HostPlan] = field(default_factory=list)

    @property
    def backup_host(self) -> str:
        return next(h.name for h in self.hosts if h.group == "backup")

    @property
    def evidence_host(self) -> str:
        return next(h.name for h in self.hosts if h.group == "evidence_store")

    def groups(self) -> list[str]:
        return sorted({h.group for h in self.hosts})


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timeline(seed: int, now: datetime) -> Timeline:
    rng = random.Random(f"{seed}/timeline")
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
    day = midnight - timedelta(days=1)
    infection = day + timedelta(hours=rng.randint(3, 21), minutes=rng.randint(0, 59))
    backups = [
        ("nightly", day - timedelta(days=7) + timedelta(hours=1)),
        ("nightly", day + timedelta(hours=1)),
        ("hourly", infection + timedelta(hours=2)),
    ]
    return Timeline(infection=infection, backups=backups, installed=day - timedelta(days=420))


def draw(config: LabConfig, now: datetime) -> LabPlan:
    rng = random.Random(f"{config.seed}/plan")
    cat = catalog.catalog()
    addrs = addresses(parse_net(config.net), config.hosts + config.windows + config.nodes)
    plan = LabPlan(seed=config.seed, net=config.net, created_at=now, timeline=timeline(config.seed, now))

    groups = list(cat["first"][: config.hosts])
    weighted = [(g, spec["weight"]) for g, spec in cat["groups"].items() if spec.get("weight")]
    while len(groups) < config.hosts:
        groups.append(rng.choices([g for g, _ in weighted], [w for _, w in weighted])[0])
    kinds = _linux_kinds(config, rng)
    counters: dict[str, int] = {}
    for i, (group_name, kind) in enumerate(zip(groups, kinds, strict=True)):
        spec = cat["groups"][group_name]
        counters[group_name] = counters.get(group_name, 0) + 1
        rec = spec["recovery"]
        plan.hosts.append(
            HostPlan(
                name=f"{spec['prefix']}-{counters[group_name]:02d}",
                address=addrs[i],
                port=SSH_PORT,
                os="linux",
                group=group_name,
                role=rec["role"],
                tier=rec["tier"],
                protected=bool(rec.get("protected", False)),
                kind=kind,
            )
        )
    plan.hosts.extend(_windows_hosts(config, rng, addrs[config.hosts : config.hosts + config.windows]))
    plan.hosts.extend(_node_hosts(config.nodes, addrs[config.hosts + config.windows :]))
    return plan


def _node_hosts(count: int, addrs: list[str]) -> list[HostPlan]:
    spec = catalog.group(NODE_GROUP)
    rec = spec["recovery"]
    return [
        HostPlan(
            name=f"{spec['prefix']}-{i + 1:02d}",
            address=addrs[i],
            port=SSH_PORT,
            os="linux",
            group=NODE_GROUP,
            role=rec["role"],
            tier=rec["tier"],
            protected=True,
            kind="clean",
        )
        for i in range(count)
    ]


def _linux_kinds(config: LabConfig, rng: random.Random) -> list[str]:
    """The backup host and the evidence store first (clean: protected hosts are verified, never
    wiped), then every other kind at least once when the lab is big enough, the rest clean."""
    spec = catalog.scenarios()
    slots = config.hosts - 2
    infected = round(config.infected * slots)
    if config.infected > 0 and slots > 0:
        infected = max(infected, 1)
    others: list[str] = []
    for kind, share in spec["others"].items():
        others += [kind] * max(share["min"], round(share["share"] * config.hosts))
    # Room for every infected kind first when asked for, then the others, trimmed from the end.
    others = others[: max(0, slots - infected)]
    infected = min(infected, slots - len(others))
    chosen = others + _infected_mix(infected, spec["infected_mix"], rng)
    chosen += ["clean"] * (slots - len(chosen))
    rng.shuffle(chosen)
    return ["clean", "clean", *chosen]


def _infected_mix(count: int, mix: dict[str, int], rng: random.Random) -> list[str]:
    kinds = list(mix)
    out = kinds[:count]  # each kind once, as far as the count goes
    while len(out) < count:
        out.append(rng.choices(kinds, [mix[k] for k in kinds])[0])
    return out


def _windows_hosts(config: LabConfig, rng: random.Random, addrs: list[str]) -> list[HostPlan]:
    if not config.windows:
        return []
    win = catalog.catalog()["windows"]
    kinds_spec = catalog.scenarios()["windows"]
    hosts: list[HostPlan] = []
    counters: dict[str, int] = {}
    for i in range(config.windows):
        group_name = win["first"][i] if i < len(win["first"]) else win["rest"][i % len(win["rest"])]
        spec = win["groups"][group_name]
        rec = spec.get("recovery") or catalog.group(group_name)["recovery"]
        counters[group_name] = counters.get(group_name, 0) + 1
        if i < len(kinds_spec["first"]):
            kind = kinds_spec["first"][i]
        elif rng.random() < config.infected:
            kind = rng.choice(kinds_spec["infected"])
        else:
            kind = rng.choice(kinds_spec["other"])
        hosts.append(
            HostPlan(
                name=f"{spec['prefix']}-{counters[group_name]:02d}",
                address=addrs[i],
                port=WINRM_PORT,
                os="windows",
                group=group_name,
                role=rec["role"],
                tier=rec["tier"],
                protected=False,
                kind=kind,
            )
        )
    return hosts
