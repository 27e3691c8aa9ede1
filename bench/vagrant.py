"""How long the Vagrant lab takes: the box build, `vagrant up`, and each recovery stage on a real VM.

Reads what the last `make test-vagrant` (or scripts/vagrant-lab.sh and the rehearsal test) recorded in
.vagrant-lab/: the box cache's build-seconds, box-add-seconds, up-seconds (machines brought up
together, seconds) and rehearsal.db (the rehearsal's state database: one StageRun per stage and host).
Prints them, and writes .vagrant-lab/stage_durations.yml in the planner's format (minutes), so a plan
for the lab can use them:

    .venv/bin/python bench/vagrant.py [--db ORCHESTRATOR_DB]
    orchestrator plan -i inventory/vagrant --durations .vagrant-lab/stage_durations.yml
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.lifecycle import STAGE_ORDER as STAGES  # noqa: E402
from orchestrator.planning import durations  # noqa: E402

LAB = ROOT / ".vagrant-lab"


def box_figures() -> dict[str, float]:
    box = Path(subprocess.run([str(ROOT / "scripts" / "vagrant-box.sh"), "--print-dir"], capture_output=True,
                              text=True, check=True).stdout.strip())  # fmt: skip
    out = {}
    seconds = box / "build-seconds"
    if seconds.is_file():
        for line in seconds.read_text().splitlines():
            name, value = line.split()
            out[f"box build: {name}"] = float(value)
    if (LAB / "box-add-seconds").is_file():
        out["box add"] = float((LAB / "box-add-seconds").read_text())
    return out


def up_figures() -> list[tuple[int, float]]:
    path = LAB / "up-seconds"
    if not path.is_file():
        return []
    return [(int(n), float(s)) for n, s in (line.split() for line in path.read_text().splitlines() if line)]


def stage_figures(db: Path) -> dict[str, list[tuple[str, float]]]:
    """stage -> [(host, seconds)] of the finished, non-check stage runs."""
    out: dict[str, list[tuple[str, float]]] = {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT stage, host_name, started_at, finished_at FROM stage_run "
            "WHERE status = 'ok' AND check_mode = 0 AND finished_at IS NOT NULL ORDER BY stage, host_name"
        ).fetchall()
    for stage, host, started, finished in rows:
        seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        out.setdefault(stage, []).append((host, seconds))
    return out


def durations_file(stages: dict[str, list[tuple[str, float]]]) -> dict:
    """The planner's format (minutes): medians measured here; the shipped figure where none was."""
    shipped = durations.document()
    minutes = {s: round(statistics.median(t for _, t in stages[s]) / 60, 2) for s in stages if s in STAGES}
    data = {"stages": {**shipped["stages"], **minutes}, "methods": shipped["methods"]}
    for stage, method in (("reimage", "vagrant"), ("restore", "restic")):  # the Vagrant lab's methods
        if stage in minutes:
            data["methods"][stage][method] = minutes[stage]
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description="The Vagrant lab's measured durations.")
    parser.add_argument("--db", type=Path, default=LAB / "rehearsal.db", help="a rehearsal's state database")
    args = parser.parse_args()
    print("Vagrant lab figures (seconds)")
    for name, value in box_figures().items():
        print(f"  {name:<28} {value:8.0f}")
    for count, seconds in up_figures():
        print(f"  vagrant up, {count} machine(s){'':<8} {seconds:8.0f}  ({seconds / count:.0f} per machine)")
    db = args.db
    if not db.is_file():
        print(f"no {db}: run `make test-vagrant` for the per-stage figures", file=sys.stderr)
        return 0
    stages = stage_figures(db)
    print("Stages on the VMs (seconds, per host)")
    for stage in (s for s in STAGES if s in stages):
        runs = ", ".join(f"{host} {seconds:.0f}" for host, seconds in stages[stage])
        print(f"  {stage:<10} median {statistics.median(t for _, t in stages[stage]):6.0f}   {runs}")
    target = LAB / "stage_durations.yml"
    header = "# Measured on the Vagrant lab by bench/vagrant.py (minutes); pass with `orchestrator plan --durations`.\n"
    target.write_text(header + yaml.safe_dump(durations_file(stages), sort_keys=False))
    print(f"planner durations: {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
