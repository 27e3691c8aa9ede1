"""Scenario states for the lab's Windows stand-in hosts: a realistic in-use baseline, and LockBit traces.

`make_state()` returns the JSON state the WinRM stand-in (`python -m orchestrator_lab.windows`) answers from,
the verdict triage must reach on it, and the ground-truth details (planted paths, hashes, extension,
compromise time) the lab records in its manifest. Everything is drawn from the caller's `random.Random`,
so one lab seed gives the same hosts every time. The baseline and the indicators themselves are data
(`data/windows_scenarios.yml`); this module only decides what goes where and when.

Timestamps: baseline activity is before `infection_time`; every planted indicator is at or after it, and
`details["compromise_time"]` is the earliest timestamp a triage probe can see (a file mtime, an event, a
task's creation), so the manifest's compromise time is reachable by triage (registry values carry no
time in the probe protocol).
"""

from __future__ import annotations

import copy
import hashlib
import random
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from orchestrator.lifecycle import CLEAN, INFECTED, SUSPICIOUS
from orchestrator_lab.windows.hoststate import entry_digest

KINDS = ("clean", "lockbit3", "lockbit2", "suspicious", "lookalikes")
EXPECTED_VERDICT = {  # what the product's triage must say of each kind (its own vocabulary)
    "clean": CLEAN,
    "lookalikes": CLEAN,
    "suspicious": SUSPICIOUS,
    "lockbit3": INFECTED,
    "lockbit2": INFECTED,
}
DATA_FILE = Path(__file__).parent / "data" / "windows_scenarios.yml"


@cache
def _data() -> dict[str, Any]:
    return yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _guid(rng: random.Random) -> str:
    return "{" + str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper() + "}"


def make_state(
    kind: str,
    rng: random.Random,
    infection_time: datetime | str,
    *,
    hostname: str | None = None,
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(state, expected_verdict, details) for one Windows host of scenario `kind` (see KINDS).

    `hostname` defaults to a random `WIN-XXXXXXX` name; the lab normally passes the inventory name.
    """
    if kind not in EXPECTED_VERDICT:
        raise ValueError(f"unknown Windows scenario {kind!r}; expected one of {', '.join(KINDS)}")
    if isinstance(infection_time, str):
        infection_time = datetime.fromisoformat(infection_time.replace("Z", "+00:00"))
    if infection_time.tzinfo is None:
        infection_time = infection_time.replace(tzinfo=UTC)
    name = hostname or "WIN-" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(7))
    builder = _Builder(rng, infection_time, name)
    builder.baseline()
    details: dict[str, Any] = {"kind": kind}
    getattr(builder, kind)(details)
    details["compromise_time"] = _iso(min(builder.planted_times)) if builder.planted_times else None
    return builder.state, EXPECTED_VERDICT[kind], details


class _Builder:
    def __init__(self, rng: random.Random, infection: datetime, hostname: str) -> None:
        self.rng = rng
        self.infection = infection
        self.data = _data()
        self.user = self.data["user"]
        self.planted_times: list[datetime] = []
        self.state: dict[str, Any] = {
            "schema": 1,
            "hostname": hostname,
            "dns_suffix": "lab.local",
            "os": dict(self.data["os"]),
            "volume_guid": _guid(rng).strip("{}").lower(),
            "files": {},
            "dirs": [],
            "registry": {},
            "services": {},
            "eventlog": [],
            "shadow_copies": [],
            "scheduled_tasks": [],
            "faults": {},
        }

    # -- helpers -------------------------------------------------------------------------------------
    def _sub(self, text: str, **extra: str) -> str:
        for key, value in {"user": self.user, **extra}.items():
            text = text.replace("{" + key + "}", value)
        return text

    def _before(self, max_days: float, min_days: float = 0.02) -> datetime:
        return self.infection - timedelta(seconds=self.rng.uniform(min_days, max_days) * 86400)

    def _text_file(self, path: str, content: str, mtime: datetime) -> None:
        body = content.replace("\r\n", "\n").replace("\n", "\r\n")
        raw = body.encode("utf-8")
        self.state["files"][path] = {
            "content": body,
            "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "mtime": _iso(mtime),
        }

    def _binary_file(self, path: str, size: int, mtime: datetime) -> None:
        # bytes synthesized from the seed when read (see hoststate): fetch and hashes agree, disk stays small
        self.state["files"][path] = {"size": size, "fill": self.rng.randbytes(32).hex(), "mtime": _iso(mtime)}

    def _sha256(self, path: str) -> str:
        return str(entry_digest(self.state["files"][path], "sha256"))

    def _plant(self, moment: datetime) -> datetime:
        self.planted_times.append(moment)
        return moment

    def _event(self, log: str, event_id: int, moment: datetime) -> None:
        self.state["eventlog"].append({"log": log, "id": event_id, "time": _iso(moment)})

    def _task(self, task: dict[str, Any], created: datetime) -> None:
        self.state["scheduled_tasks"].append(
            {
                "name": task["name"],
                "path": task["path"],
                "action": task["action"],
                "created": _iso(created),
                "state": "Ready",
            }
        )

    def _data_files(self) -> list[str]:
        return [p for p in self.state["files"] if p.startswith(tuple(self._folders()))]

    def _folders(self) -> list[str]:
        return [self._sub(folder) for folder in self.data["data_folders"]]

    # -- the in-use baseline ---------------------------------------------------------------------------
    def baseline(self) -> None:
        rng = self.rng
        for folder, names in self.data["data_folders"].items():
            folder = self._sub(folder)
            keep = sorted(rng.sample(names, k=rng.randint(max(2, len(names) // 2), len(names))))
            if folder.endswith("Documents") and "report.docx" in names and "report.docx" not in keep:
                keep.append("report.docx")  # the lookalikes' Office lock file needs its document
            for name in keep:
                path = f"{folder}\\{name}"
                mtime = self._before(400, 1)
                if name.endswith((".txt", ".csv")):
                    self._text_file(
                        path,
                        self.data["text_content"].format(name=name, hostname=self.state["hostname"]),
                        mtime,
                    )
                else:
                    self._binary_file(path, rng.randint(8_000, 2_000_000), mtime)
        for path, content in self.data["system_files"].items():
            mtime = self._before(700, 300)
            if content is None:
                self._binary_file(path, rng.randint(100_000, 40_000_000), mtime)
            else:
                self._text_file(path, content, mtime)
        self.state["dirs"] = [
            f"C:\\Users\\{self.user}\\AppData\\Local\\Temp",
            "C:\\Windows\\Temp",
            "C:\\ProgramData",
            "C:\\Program Files",
        ]
        self.state["registry"] = {
            key: {name: self._sub(v) if isinstance(v, str) else v for name, v in values.items()}
            for key, values in copy.deepcopy(self.data["registry"]).items()
        }
        self.state["services"] = {
            name: {"display_name": display, "status": status, "start_type": start}
            for name, (display, status, start) in self.data["services"].items()
        }
        for day in range(7, 0, -1):
            boot = self.infection - timedelta(days=day, hours=rng.uniform(0, 2))
            for _ in range(rng.randint(2, 5)):
                logon = boot + timedelta(hours=rng.uniform(0, 20))
                self._event("Security", 4624, logon)
                self._event("Security", 4672, logon + timedelta(seconds=1))
            self._event("System", 7036, boot)
        self._event("System", 6005, self.infection - timedelta(days=8))
        for day in range(3, 0, -1):
            created = (self.infection - timedelta(days=day)).replace(
                hour=7, minute=0, second=0, microsecond=0
            )
            self.state["shadow_copies"].append(
                {"id": _guid(rng), "set_id": _guid(rng), "created": _iso(created)}
            )
        for task in self.data["scheduled_tasks"]:
            self._task(task, self.infection - timedelta(days=task["age_days"]))

    # -- scenarios -----------------------------------------------------------------------------------
    def clean(self, details: dict[str, Any]) -> None:
        details["description"] = "in-use baseline: services running, shadow copies present, normal registry"

    def lookalikes(self, details: dict[str, Any]) -> None:
        planted = []
        for path, content in self.data["lookalikes"]["files"].items():
            path = self._sub(path)
            mtime = self._before(30, 1)
            if content is None:
                self._binary_file(path, 162, mtime)
            else:
                self._text_file(path, content, mtime)
            planted.append(path)
        for task in self.data["vendor_tasks"]:
            self._task(task, self.infection - timedelta(days=task["age_days"]))
        details["description"] = "clean host with files and tasks that merely resemble indicators"
        details["lookalike_files"] = planted
        details["vendor_tasks"] = [t["path"] + t["name"] for t in self.data["vendor_tasks"]]

    def suspicious(self, details: dict[str, Any]) -> None:
        sign = self.rng.choice(["vss_disabled", "unknown_task"])
        details["sign"] = sign
        if sign == "vss_disabled":
            self.state["services"]["VSS"].update(status="Stopped", start_type="Disabled")
            self.state["registry"]["HKLM\\SYSTEM\\CurrentControlSet\\Services\\VSS"]["Start"] = 4
            details["description"] = "Volume Shadow Copy service stopped and disabled, nothing else"
        else:
            task = self.data["suspicious"]["task"]
            created = self._plant(self.infection + timedelta(seconds=self.rng.randint(0, 600)))
            self._task(task, created)
            details["description"] = "an unknown scheduled task running a binary from C:\\ProgramData"
            details["task"] = {"path": task["path"], "name": task["name"], "action": task["action"]}

    def _encrypt(self, suffix: str, note_name: str, note: str) -> tuple[list[str], list[str], datetime]:
        """Rename every data file with `suffix` and drop a note in each folder; returns the last time."""
        rng = self.rng
        moment = self._plant(self.infection + timedelta(seconds=rng.randint(30, 300)))
        encrypted, notes = [], []
        folders_done: set[str] = set()
        for path in sorted(self._data_files()):
            folder = path.rsplit("\\", 1)[0]
            if folder not in folders_done:
                folders_done.add(folder)
                note_path = f"{folder}\\{note_name}"
                self._text_file(note_path, note, moment)
                notes.append(note_path)
            entry = self.state["files"].pop(path)
            moment += timedelta(seconds=rng.uniform(0.2, 4))
            self._binary_file(path + suffix, int(entry["size"]) + rng.randint(512, 2048), moment)
            encrypted.append(path + suffix)
        return encrypted, notes, moment

    def _stop_services(self, names: list[str]) -> None:
        for name in names:
            self.state["services"][name].update(status="Stopped", start_type="Disabled")

    def _clear_logs(self, moment: datetime) -> None:
        self.state["eventlog"] = [e for e in self.state["eventlog"] if e["log"] not in ("Security", "System")]
        self._event("Security", 1102, moment)
        self._event("System", 104, moment)

    def lockbit3(self, details: dict[str, Any]) -> None:
        rng, spec = self.rng, self.data["lockbit3"]
        ext = "".join(rng.choice(spec["extension_alphabet"]) for _ in range(9))
        note_name = f"{ext}.README.txt"
        decryption_id = rng.randbytes(8).hex().upper()
        encrypted, notes, last = self._encrypt(
            f".{ext}", note_name, spec["note"].format(decryption_id=decryption_id)
        )
        icon, bitmap = f"C:\\ProgramData\\{ext}.ico", f"C:\\ProgramData\\{ext}.bmp"
        self._binary_file(icon, 15086, last + timedelta(seconds=2))
        self._binary_file(bitmap, 3_145_782, last + timedelta(seconds=3))
        reg = self.state["registry"]
        reg[f"HKCR\\.{ext}"] = {"(default)": ext}
        reg[f"HKCR\\{ext}\\DefaultIcon"] = {"(default)": icon}
        reg["HKCU\\Control Panel\\Desktop"]["Wallpaper"] = bitmap
        winlogon = {
            k: self._sub(v, password="Lb3!" + rng.randbytes(4).hex(), domain="LAB")
            for k, v in spec["winlogon"].items()
        }
        reg["HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon"].update(winlogon)
        for profile in ("DomainProfile", "StandardProfile"):
            reg[f"HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall\\{profile}"]["EnableFirewall"] = 0
        self._stop_services(spec["stopped_services"])
        deleted = len(self.state["shadow_copies"])
        self.state["shadow_copies"] = []
        self._clear_logs(last + timedelta(seconds=30))
        details.update(
            family="LockBit 3.0",
            extension=ext,
            note_name=note_name,
            notes=notes,
            encrypted_files=encrypted,
            planted_files={p: self._sha256(p) for p in [*notes, icon, bitmap]},
            registry=[
                {"path": f"HKCR\\.{ext}", "name": "(default)", "value": ext},
                {"path": f"HKCR\\{ext}\\DefaultIcon", "name": "(default)", "value": icon},
                {"path": "HKCU\\Control Panel\\Desktop", "name": "Wallpaper", "value": bitmap},
                *(
                    {
                        "path": "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon",
                        "name": k,
                        "value": v,
                    }
                    for k, v in winlogon.items()
                ),
                *(
                    {
                        "path": f"HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall\\{p}",
                        "name": "EnableFirewall",
                        "value": 0,
                    }
                    for p in ("DomainProfile", "StandardProfile")
                ),
            ],
            stopped_services=list(spec["stopped_services"]),
            cleared_logs=["Security", "System"],
            shadow_copies_deleted=deleted,
        )

    def lockbit2(self, details: dict[str, Any]) -> None:
        rng, spec = self.rng, self.data["lockbit2"]
        decryption_id = rng.randbytes(8).hex().upper()
        encrypted, notes, last = self._encrypt(
            ".lockbit", "Restore-My-Files.txt", spec["note"].format(decryption_id=decryption_id)
        )
        hta = f"C:\\Users\\{self.user}\\Desktop\\LockBit-note.hta"
        self._text_file(
            hta, spec["hta_note"].format(decryption_id=decryption_id), last + timedelta(seconds=1)
        )
        run_key = "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run"
        dropped = f"C:\\Users\\{self.user}\\AppData\\Local\\Temp\\{rng.randbytes(4).hex()}.exe"
        reg = self.state["registry"]
        reg[run_key][spec["run_value"]] = dropped
        reg["HKCU\\SOFTWARE\\LockBit"] = {"full": rng.randbytes(16).hex(), "Public": rng.randbytes(16).hex()}
        self._stop_services(spec["stopped_services"])
        deleted = len(self.state["shadow_copies"])
        self.state["shadow_copies"] = []
        self._clear_logs(last + timedelta(seconds=30))
        details.update(
            family="LockBit 2.0",
            extension="lockbit",
            note_name="Restore-My-Files.txt",
            notes=notes,
            encrypted_files=encrypted,
            planted_files={p: self._sha256(p) for p in [*notes, hta]},
            registry=[
                {"path": run_key, "name": spec["run_value"], "value": dropped},
                {"path": "HKCU\\SOFTWARE\\LockBit", "name": None, "value": None},
            ],
            stopped_services=list(spec["stopped_services"]),
            cleared_logs=["Security", "System"],
            shadow_copies_deleted=deleted,
        )
