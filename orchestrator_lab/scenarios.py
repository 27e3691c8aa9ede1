"""What each scenario plants on a Linux lab host, as file operations with realistic times, and the
ground truth the manifest records about it (kind, expected verdict, compromise time, planted paths).

The incident is one campaign: the dropped tool and the attacker's SSH key are the same on every host
(drawn from the seed), so their hashes and fingerprint are indicators a triage pack can carry as data.
"""

from __future__ import annotations

import hashlib
import posixpath
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from orchestrator_lab import catalog, keys
from orchestrator_lab.blueprint import HostPlan, Timeline, iso
from orchestrator_lab.hostdata import FileOp, host_rng, users_of


@dataclass(frozen=True)
class Campaign:
    dropper: bytes
    locker: bytes
    attacker_key: str  # an authorized_keys line

    def to_dict(self) -> dict[str, Any]:
        return {
            "dropper_sha256": sha256(self.dropper),
            "locker_sha256": sha256(self.locker),
            "attacker_key_fingerprint": keys.fingerprint(self.attacker_key),
            "attacker_key_comment": self.attacker_key.split()[-1],
        }


@dataclass
class Planted:
    ops: list[FileOp] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    compromise: datetime | None = None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def campaign(seed: int) -> Campaign:
    rng = random.Random(f"{seed}/campaign")
    spec = catalog.scenarios()
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00\x01\x00\x00\x00"
    dropper = elf + rng.randbytes(6000) + b"\x00/bin/sh\x00-c\x00" + rng.randbytes(2000)
    strings = b"\x00".join(s.encode() for s in spec["linux_locker"]["strings"])
    locker = elf + rng.randbytes(4000) + b"\x00" + strings + b"\x00" + rng.randbytes(4000)
    comment = rng.choice(spec["persistence"]["key_comments"])
    _, attacker_key = keys.new_keypair(comment, seed=rng.randbytes(32))
    return Campaign(dropper=dropper, locker=locker, attacker_key=attacker_key)


def expected(kind: str) -> tuple[str, str | None]:
    spec = catalog.scenarios()["expected"][kind]
    return spec["verdict"], spec.get("reason")


def plant(host: HostPlan, seed: int, tl: Timeline, data: list[FileOp], camp: Campaign) -> Planted:
    rng = host_rng(seed, host.name, "scenario")
    planter = {
        "lockbit3": _lockbit3,
        "lockbit2": _lockbit2,
        "linux_locker": _linux_locker,
        "persistence": _persistence,
        "suspicious": _suspicious,
        "lookalikes": _lookalikes,
    }.get(host.kind)
    if planter is None:  # clean, and the hosts whose trouble is their sshd or host key
        return Planted(details={"signal": "SIGSTOP"} if host.kind == "sshd_stopped" else {})
    planted = planter(host, seed, tl, data, camp, rng)
    times = [op.when for op in planted.ops if op.action != "link"]
    if host.kind != "lookalikes" and times:
        planted.compromise = min(times)
    return planted


def _abs(path: str) -> str:
    return "/" + path


def _encrypt(
    host: HostPlan,
    seed: int,
    tl: Timeline,
    data: list[FileOp],
    rng: random.Random,
    extension: str,
    note_name: str,
    note_template: str,
    extra_dirs: list[str],
    start: datetime,
) -> Planted:
    """Rename every data file under the target roots to `<name>.<extension>` with unreadable content,
    and leave the note in each folder touched, as LockBit does."""
    spec = catalog.scenarios()
    roots = tuple(r + "/" for r in spec["encrypt_roots"])
    final = {op.path: op for op in data if op.action == "write"}
    targets = sorted(p for p in final if p.startswith(roots))
    if len(targets) > spec["max_encrypted"]:
        targets = sorted(rng.sample(targets, spec["max_encrypted"]))
    victim = rng.randbytes(16).hex().upper()
    note = catalog.render_template(note_template, victim_id=victim, seed=seed, host=host.name).encode()
    ops: list[FileOp] = []
    when = start
    for path in targets:
        when += timedelta(seconds=rng.uniform(0.05, 2.0))
        size = len(final[path].data)
        ops.append(
            FileOp(
                "encrypt", path, when, rng.randbytes(size) + rng.randbytes(512), 0o644, f"{path}.{extension}"
            )
        )
    dirs = sorted({posixpath.dirname(p) for p in targets} | set(extra_dirs))
    notes = []
    for d in dirs:
        note_path = f"{d}/{note_name}"
        ops.append(FileOp("write", note_path, start + timedelta(seconds=rng.uniform(0, 30)), note, 0o644))
        notes.append(_abs(note_path))
    details = {
        "extension": extension,
        "note_name": note_name,
        "victim_id": victim,
        "notes": notes,
        "encrypted": [_abs(f"{p}.{extension}") for p in targets],
        "originals": [_abs(p) for p in targets],
    }
    return Planted(ops=ops, details=details)


def _extension(rng: random.Random) -> str:
    spec = catalog.scenarios()["lockbit3"]
    return "".join(rng.choices(spec["extension_alphabet"], k=spec["extension_length"]))


def _lockbit3(
    host: HostPlan, seed: int, tl: Timeline, data: list[FileOp], camp: Campaign, rng: random.Random
) -> Planted:
    spec = catalog.scenarios()["lockbit3"]
    ext = _extension(rng)
    planted = _encrypt(
        host,
        seed,
        tl,
        data,
        rng,
        ext,
        f"{ext}.README.txt",
        spec["note_template"],
        spec["note_dirs_extra"],
        tl.infection,
    )
    if rng.random() < spec["dwell_probability"]:
        days = rng.uniform(*catalog.scenarios()["persistence"]["dwell_days"])
        key_op = _authorized_key(camp.attacker_key, tl.infection - timedelta(days=days))
        planted.ops.append(key_op)
        planted.details["foothold"] = {
            "authorized_key": {"path": _abs(key_op.path), "fingerprint": keys.fingerprint(camp.attacker_key)},
            "dwell_days": round(days, 2),
        }
    return planted


def _lockbit2(
    host: HostPlan, seed: int, tl: Timeline, data: list[FileOp], camp: Campaign, rng: random.Random
) -> Planted:
    spec = catalog.scenarios()["lockbit2"]
    return _encrypt(
        host,
        seed,
        tl,
        data,
        rng,
        spec["extension"],
        spec["note_name"],
        spec["note_template"],
        spec["note_dirs_extra"],
        tl.infection,
    )


def _linux_locker(
    host: HostPlan, seed: int, tl: Timeline, data: list[FileOp], camp: Campaign, rng: random.Random
) -> Planted:
    spec = catalog.scenarios()["linux_locker"]
    ext = _extension(rng)
    planted = _encrypt(
        host, seed, tl, data, rng, ext, f"{ext}.README.txt", spec["note_template"], [], tl.infection
    )
    path = rng.choice(spec["binary_paths"])
    dropped = tl.infection - timedelta(minutes=spec["minutes_before"])
    planted.ops.append(FileOp("write", path, dropped, camp.locker, 0o755))
    planted.details["binary"] = {
        "path": _abs(path),
        "sha256": sha256(camp.locker),
        "strings": spec["strings"],
    }
    return planted


def _authorized_key(line: str, when: datetime) -> FileOp:
    return FileOp("append", "root/.ssh/authorized_keys", when, f"{line}\n".encode(), 0o600)


def _persistence(
    host: HostPlan, seed: int, tl: Timeline, data: list[FileOp], camp: Campaign, rng: random.Random
) -> Planted:
    spec = catalog.scenarios()["persistence"]
    days = rng.uniform(*spec["dwell_days"])
    start = tl.infection - timedelta(days=days)
    dropped = rng.choice(spec["dropped_paths"])
    ops = [FileOp("write", dropped, start, camp.dropper, 0o755)]
    details: dict[str, Any] = {
        "dropped": {"path": _abs(dropped), "sha256": sha256(camp.dropper)},
        "dwell_days": round(days, 2),
    }
    if rng.random() < 0.5:
        cron = rng.choice(spec["cron"])
        line = cron["line"].format(dropped=_abs(dropped))
        ops.append(FileOp("write", cron["file"], start + timedelta(minutes=2), f"{line}\n".encode()))
        details["cron"] = {"path": _abs(cron["file"]), "line": line}
    else:
        unit = rng.choice(spec["units"])
        name = posixpath.basename(unit["file"])
        text = (
            f"[Unit]\nDescription={unit['description']}\n\n[Service]\nExecStart={_abs(dropped)}\n"
            f"Restart=always\n\n[Install]\nWantedBy=multi-user.target\n"
        )
        ops.append(FileOp("write", unit["file"], start + timedelta(minutes=2), text.encode()))
        wants = f"etc/systemd/system/multi-user.target.wants/{name}"
        ops.append(FileOp("link", wants, start + timedelta(minutes=2), target=_abs(unit["file"])))
        details["unit"] = {"path": _abs(unit["file"]), "enabled_by": _abs(wants)}
    ops.append(_authorized_key(camp.attacker_key, start + timedelta(minutes=5)))
    details["authorized_key"] = {
        "path": "/root/.ssh/authorized_keys",
        "fingerprint": keys.fingerprint(camp.attacker_key),
    }
    return Planted(ops=ops, details=details)


def _suspicious(
    host: HostPlan, seed: int, tl: Timeline, data: list[FileOp], camp: Campaign, rng: random.Random
) -> Planted:
    spec = catalog.scenarios()["suspicious"]
    sign = rng.choice(spec["signs"])
    when = tl.infection - timedelta(days=rng.uniform(*spec["days_before"]))
    if sign["kind"] == "authorized_key":
        _, line = keys.new_keypair(sign["comment"], seed=rng.randbytes(32))
        op = _authorized_key(line, when)
        return Planted(
            ops=[op],
            details={"sign": "authorized_key", "path": _abs(op.path), "fingerprint": keys.fingerprint(line)},
        )
    op = FileOp("write", sign["file"], when, f"{sign['line']}\n".encode())
    return Planted(ops=[op], details={"sign": "cron", "path": _abs(sign["file"]), "line": sign["line"]})


def _lookalikes(
    host: HostPlan, seed: int, tl: Timeline, data: list[FileOp], camp: Campaign, rng: random.Random
) -> Planted:
    spec = catalog.scenarios()["lookalikes"]
    users = users_of(host, seed)
    app = catalog.group(host.group)["app"]["name"]
    oldest, newest = tl.installed, tl.backups[0][1] - timedelta(hours=2)
    ops: list[FileOp] = []

    def when() -> datetime:
        return oldest + (newest - oldest) * rng.uniform(0.3, 1.0)

    for item in spec["files"]:
        if "{user}" in item["path"] + item["text"] and not users:
            continue
        fields = {"user": users[0] if users else "", "app": app, "host": host.name}
        ops.append(
            FileOp("write", item["path"].format(**fields), when(), item["text"].format(**fields).encode())
        )
    for cron in spec["cron"]:
        ops.append(FileOp("write", cron["file"], when(), f"{cron['line']}\n".encode()))
    for unit in spec["units"]:
        text = (
            f"[Unit]\nDescription={unit['description']}\n\n[Service]\nExecStart={unit['exec']}\n\n"
            f"[Install]\nWantedBy=multi-user.target\n"
        )
        ops.append(FileOp("write", unit["file"], when(), text.encode()))
    return Planted(ops=ops, details={"lookalikes": [_abs(op.path) for op in ops]})


def scenario_record(host: HostPlan, planted: Planted) -> dict[str, Any]:
    verdict, reason = expected(host.kind)
    return {
        "kind": host.kind,
        "expected_verdict": verdict,
        "expected_reason": reason,
        "compromise_time": iso(planted.compromise) if planted.compromise else None,
        "details": planted.details,
    }
