"""A lab host's history as a list of file operations, and the ordinary data it holds.

The whole life of a host (its data written over the past year, an intruder's foothold, the encryption)
is a list of `FileOp`s with the time each happened. The tree builder replays them in time order and
takes a restic snapshot between them at each backup time, so every snapshot holds exactly what the host
had then. Contents are drawn from the seed, so two labs with one seed hold the same bytes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator_lab import catalog
from orchestrator_lab.blueprint import HostPlan, Timeline

WORDS = [
    "patient",
    "ward",
    "admission",
    "discharge",
    "triage",
    "protocol",
    "dose",
    "order",
    "result",
    "imaging",
    "report",
    "schedule",
    "shift",
    "nurse",
    "physician",
    "pharmacy",
    "laboratory",
    "sample",
    "consent",
    "referral",
    "follow-up",
    "allergy",
    "vital",
    "chart",
    "budget",
    "invoice",
    "supplier",
    "contract",
    "audit",
    "meeting",
    "agenda",
    "minutes",
    "action",
    "review",
    "quality",
    "incident",
]


@dataclass(frozen=True)
class FileOp:
    """One change to a host's tree at one moment of its history.

    action: `write` (create or replace), `append`, `encrypt` (rename `path` to `target` and replace the
    content with `data`, what a locker does) or `link` (a symlink to `target`)."""

    action: str
    path: str  # relative to the host's root, e.g. "srv/data/report.docx"
    when: datetime
    data: bytes = b""
    mode: int = 0o644
    target: str = ""


def host_rng(seed: int, host: str, purpose: str) -> random.Random:
    return random.Random(f"{seed}/{host}/{purpose}")


def users_of(host: HostPlan, seed: int) -> list[str]:
    spec = catalog.group(host.group)
    count = spec.get("users", 0)
    return sorted(host_rng(seed, host.name, "users").sample(catalog.catalog()["vocabulary"]["user"], count))


def data_ops(host: HostPlan, seed: int, tl: Timeline) -> list[FileOp]:
    """The host's own data: what a restore must bring back. Most files are months old; two were
    changed between the two nightly backups, so those backups differ as real ones do."""
    rng = host_rng(seed, host.name, "data")
    cat = catalog.catalog()
    spec = catalog.group(host.group)
    users = users_of(host, seed)
    sets = list(spec.get("data", [])) + (["home"] if users else [])
    first_backup, second_backup = tl.backups[0][1], tl.backups[1][1]
    ops: list[FileOp] = []
    used: set[str] = set()
    for set_name in sets:
        for item in cat["datasets"][set_name]:
            for n in range(item["count"]):
                per_user = users if "{user}" in item["path"] else [None]
                for user in per_user:
                    fields = {key: rng.choice(values) for key, values in cat["vocabulary"].items()}
                    fields.update(n=n + 1, user=user, date=_day(rng, tl.infection), host=host.name)
                    path = _unique(item["path"].format(**fields), used)
                    when = tl.infection - timedelta(days=rng.uniform(8, 400))
                    when = min(when, first_backup - timedelta(hours=1))
                    data = content(item["kind"], rng, item.get("size", [1024, 8192]), host.name)
                    ops.append(FileOp("write", path, when, data, 0o640 if user else 0o644))
    # Work done during the week before the incident: only the second nightly backup has it.
    for index in rng.sample(range(len(ops)), min(2, len(ops))):
        op = ops[index]
        recent = first_backup + (second_backup - first_backup) * rng.uniform(0.2, 0.8)
        ops[index] = FileOp(op.action, op.path, recent, op.data + b"\n", op.mode)
    ops.append(FileOp("write", "etc/hostname", tl.installed, f"{host.name}\n".encode()))
    ops.extend(_user_homes(users, tl))
    return ops


def _user_homes(users: list[str], tl: Timeline) -> list[FileOp]:
    ops = []
    for user in users:
        profile = (
            b"# ~/.profile: executed by the command interpreter for login shells.\nexport LANG=fr_FR.UTF-8\n"
        )
        ops.append(FileOp("write", f"home/{user}/.profile", tl.installed + timedelta(days=3), profile))
    return ops


def _day(rng: random.Random, infection: datetime) -> str:
    return (infection - timedelta(days=rng.randint(8, 300))).strftime("%Y%m%d")


def _unique(path: str, used: set[str]) -> str:
    candidate, n = path, 2
    while candidate in used:
        stem, dot, ext = path.rpartition(".")
        candidate = f"{stem}_{n}.{ext}" if dot and "/" not in ext else f"{path}_{n}"
        n += 1
    used.add(candidate)
    return candidate


def _text(rng: random.Random, lines: int) -> str:
    return "\n".join(" ".join(rng.choices(WORDS, k=rng.randint(6, 14))) for _ in range(lines)) + "\n"


def content(kind: str, rng: random.Random, size: list[int], host: str) -> bytes:
    """Bytes that look like the kind of file they are named for (magic numbers, structure), enough
    for `file`, for a triage that reads headers, and for a restore to be checked byte for byte."""
    n = rng.randint(size[0], size[1])
    if kind == "binary":
        return rng.randbytes(n)
    if kind == "office":
        return b"PK\x03\x04\x14\x00\x06\x00" + rng.randbytes(n)
    if kind == "pdf":
        return b"%PDF-1.7\n" + _text(rng, 20).encode() + b"%%EOF\n"
    if kind == "dicom":
        return bytes(128) + b"DICM" + rng.randbytes(n)
    if kind == "csv":
        rows = ["mrn,date,unit,code,amount"]
        for _ in range(rng.randint(20, 80)):
            rows.append(
                f"{rng.randint(10**7, 10**8 - 1)},2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
                f"{rng.choice(['ED', 'ICU', 'CARD', 'SURG', 'RAD'])},{rng.randint(100, 999)},{rng.randint(10, 9000)}"
            )
        return ("\n".join(rows) + "\n").encode()
    if kind == "hl7":
        segments = [
            f"MSH|^~\\&|LIS|HOSP|EHR|HOSP|2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}||ORU^R01|{rng.randint(10**5, 10**6)}|P|2.5",
            f"PID|1||{rng.randint(10**7, 10**8 - 1)}^^^HOSP||DOE^J",
            f"OBX|1|NM|2345-7^GLUCOSE||{rng.randint(60, 200)}|mg/dL|70-110|N|||F",
        ]
        return ("\r".join(segments) + "\r").encode()
    if kind == "json":
        job: dict[str, Any] = {"job": host, "schedule": "daily 01:00", "retention": {"daily": 7, "weekly": 4}}
        return (json.dumps(job, indent=2) + "\n").encode()
    return _text(rng, rng.randint(5, 40)).encode()
