"""`orchestrator lab up | status | down | reimage | infect`: the local rehearsal lab, and the incident
planted on the Vagrant lab.

The lab is the sibling package `orchestrator_lab` (the rehearsal kit, not the product): it is imported
only when a lab command runs, so the product's commands work without it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.cli.options import console, emit_json, err_console, json_option
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from types import ModuleType

# The lab's own defaults (orchestrator_lab.settings), repeated here so that `--help` needs no lab;
# a unit test keeps the two in step.
DEFAULT_DIR = "lab-data"
DEFAULT_NET = "127.42.0.0/16"

STAGES = {
    "images": "golden images",
    "hosts": "hosts and backups",
    "sshd": "sshd answering",
    "windows": "Windows stand-ins",
}


def _lab() -> ModuleType:
    """The lab package, imported on use; a clear one-line error where only the product is installed."""
    try:
        import orchestrator_lab
    except ModuleNotFoundError as exc:
        if exc.name != "orchestrator_lab":
            raise
        raise OrchestratorError(
            "the lab is not installed: install the package with its rehearsal kit "
            "(pip install -e '.[lab]' in a checkout of the repository)"
        ) from None
    return orchestrator_lab


def dir_option(f: Any) -> Any:
    return click.option(
        "--dir",
        "directory",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DIR,
        show_default=True,
        envvar="ORCHESTRATOR_LAB_DIR",
        help="Lab directory: manifest, inventory, keys, hosts' trees (env ORCHESTRATOR_LAB_DIR).",
    )(f)


@click.group("lab")
def lab_group() -> None:
    """The local lab: real SSH hosts on loopback (and WinRM stand-ins for Windows) to rehearse on.

    Needs root (namespaces, port 22 on 127.x.y.z addresses), OpenSSH's server and restic.
    """


@lab_group.command("up")
@click.option("--hosts", default=12, show_default=True, type=click.IntRange(2), help="Linux hosts (sshd).")
@click.option(
    "--windows", default=0, show_default=True, type=click.IntRange(0), help="Windows hosts (WinRM stand-ins)."
)
@click.option(
    "--nodes",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Execution nodes: the Linux hosts are split into as many sites, each run through its node.",
)
@click.option(
    "--infected", default=0.4, show_default=True, type=click.FloatRange(0, 1), help="Share of infected hosts."
)
@click.option("--seed", default=1, show_default=True, type=int, help="Scenario seed: same seed, same lab.")
@click.option(
    "--net", default=DEFAULT_NET, show_default=True, help="Loopback network for the hosts' addresses."
)
@dir_option
@json_option
def up(
    hosts: int,
    windows: int,
    nodes: int,
    infected: float,
    seed: int,
    net: str,
    directory: Path,
    as_json: bool,
) -> None:
    """Start the lab (again: a second `up` only restarts what died).

    Every scenario is drawn from the seed and recorded in DIR/manifest.json; the Ansible inventory is
    DIR/inventory, host keys are in DIR/known_hosts.

    \b
    Examples:
      orchestrator lab up --hosts 12 --windows 2 --seed 7
      orchestrator lab up --hosts 200 --dir /srv/lab --net 127.43.0.0/16
      orchestrator lab up --hosts 20 --nodes 2     # two sites, each through its execution node
      orchestrator inventory check -i lab-data/inventory
    """
    lab = _lab()
    config = lab.LabConfig(
        dir=directory, hosts=hosts, windows=windows, nodes=nodes, infected=infected, seed=seed, net=net
    )
    with Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=True,
        disable=as_json,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        manifest = lab.up(config, progress=progress)
    if as_json:
        emit_json(_summary(manifest))
        return
    kinds = Counter(h["scenario"]["kind"] for h in manifest["hosts"])
    root = Path(manifest["dir"])
    click.echo(
        f"lab up in {root}: {len(manifest['hosts'])} hosts on {manifest['net']} (seed {manifest['seed']}); "
        + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    )
    click.echo(f"  inventory:   {root / 'inventory'}")
    click.echo(f"  known_hosts: {root / 'known_hosts'}  (key {root / 'id_ed25519'})")
    click.echo(f"  manifest:    {root / 'manifest.json'}")
    if any(h["os"] == "windows" for h in manifest["hosts"]):
        click.echo(f"  Windows:     export the password first: set -a; . {root / 'winrm.env'}; set +a")
    click.echo(f"next: orchestrator inventory check -i {root / 'inventory'}")


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "dir": manifest["dir"],
        "seed": manifest["seed"],
        "net": manifest["net"],
        "infection_time": manifest["infection_time"],
        "backup_host": manifest["backup_host"],
        "evidence_host": manifest["evidence_host"],
        "inventory": str(Path(manifest["dir"]) / "inventory"),
        "manifest": str(Path(manifest["dir"]) / "manifest.json"),
        "hosts": [
            {k: h[k] for k in ("name", "address", "port", "os", "group", "pid")}
            | {"scenario": h["scenario"]["kind"]}
            for h in manifest["hosts"]
        ],
    }


@lab_group.command("status")
@dir_option
@json_option
def status(directory: Path, as_json: bool) -> None:
    """Hosts, addresses, whether each is up (process alive and port answering), scenario.

    \b
    Examples:
      orchestrator lab status
      orchestrator lab status --dir /srv/lab --json | jq '.hosts[] | select(.state != "up")'
    """
    result = _lab().status(directory)
    if as_json:
        emit_json(result)
        return
    table = Table(title=f"lab {result['dir']} (seed {result['seed']}, {result['net']})")
    for col in ("host", "address", "os", "group", "tier", "scenario", "expected", "state", "pid"):
        table.add_column(col)
    styles = {"up": "green", "down": "red", "stopped": "yellow", "not answering": "yellow"}
    for h in result["hosts"]:
        table.add_row(
            h["name"] + (" (protected)" if h["protected"] else ""),
            f"{h['address']}:{h['port']}",
            h["os"],
            h["group"],
            str(h["tier"]),
            h["scenario"] + (f" (reimaged {h['reimaged']}x)" if h["reimaged"] else ""),
            h["expected_verdict"],
            f"[{styles.get(h['state'], '')}]{h['state']}[/]",
            str(h["pid"] or ""),
        )
    console().print(table)
    click.echo(", ".join(f"{state}: {n}" for state, n in sorted(result["summary"].items())))


@lab_group.command("down")
@dir_option
@json_option
def down(directory: Path, as_json: bool) -> None:
    """Stop every lab process (also after a crash) and remove the lab's files, mounts and namespaces.

    \b
    Example:
      orchestrator lab down --dir /srv/lab
    """
    result = _lab().down(directory)
    if as_json:
        emit_json(result)
    elif result["removed"]:
        where = "removed" if not Path(result["dir"]).exists() else "emptied of the lab's files"
        click.echo(f"lab down: {result['stopped']} process(es) stopped, {result['dir']} {where}")
    else:
        click.echo(f"no lab in {result['dir']}: nothing to do")


@lab_group.command("reimage")
@click.argument("host")
@dir_option
@json_option
def reimage(host: str, directory: Path, as_json: bool) -> None:
    """Reinstall HOST from its role's golden image, with a new host key published in known_hosts.

    Used by the `lab` reimage method of the playbooks; protected hosts are refused.

    \b
    Example:
      orchestrator lab reimage ehrapp-01 --dir lab-data
    """
    entry = _lab().reimage(directory, host)
    if as_json:
        emit_json({"host": entry["name"], "pid": entry["pid"], "reimage": entry["reimages"][-1]})
        return
    last = entry["reimages"][-1]
    key = f", host key {last['host_key_fingerprint']}" if "host_key_fingerprint" in last else ""
    click.echo(f"{entry['name']} reimaged from image {last['image']}{key}")


commands = [lab_group]


@lab_group.command("infect")
@click.option(
    "--vagrant",
    "vagrant",
    is_flag=True,
    required=True,
    help="On the Vagrant lab's machines (the local lab is infected by `lab up` itself).",
)
@click.option(
    "--vagrant-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".vagrant-lab"),
    show_default=True,
    help="The Vagrant lab's state (scripts/vagrant-lab.sh): key, known_hosts, restic password.",
)
@click.option(
    "--seed", default=1, show_default=True, type=int, help="Scenario seed: same seed, same incident."
)
@json_option
def infect(vagrant: bool, vagrant_dir: Path, seed: int, as_json: bool) -> None:
    """Plant the local lab's LockBit incident on the Vagrant lab's running machines: a year of data,
    nightly backups into the restic repository on the backup machine, then the intrusion and the
    encryption. Run it inside the lab's network namespace (scripts/vagrant-lab.sh exec ...).

    \b
    Example:
      scripts/vagrant-lab.sh exec .venv/bin/orchestrator lab infect --vagrant
    """
    manifest = _lab().infect_vagrant(vagrant_dir, seed)
    if as_json:
        emit_json(manifest)
        return
    for host in manifest["hosts"]:
        scenario = host["scenario"]
        clean = sum(1 for s in host["snapshots"] if s["before_compromise"])
        click.echo(
            f"{host['name']:<8} {scenario['kind']:<13} expected {scenario['expected_verdict']:<10} "
            f"snapshots {len(host['snapshots'])} ({clean} before the compromise)"
        )
    click.echo(f"manifest: {vagrant_dir / 'manifest.json'}")
