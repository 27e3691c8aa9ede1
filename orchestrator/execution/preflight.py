"""What a run needs on the controller, checked before anything starts: ansible-playbook, the playbooks
the run will use and every collection they name, ssh, restic where a restore uses it, a writable
database and runs folder, and credentials for the WinRM hosts. A missing piece found half-way through
a wave costs a failed stage on every host of it; found here, it costs one line.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import OrchestratorError
from orchestrator.execution import states
from orchestrator.execution.stages import restore_point
from orchestrator.inventory import WINDOWS_CONNECTIONS, Host

# A task's module named by its full name: namespace.collection.module
FQCN = re.compile(r"^([a-z0-9_]+)\.([a-z0-9_]+)\.[a-z0-9_]+$")
BUILTIN_COLLECTIONS = frozenset({"ansible.builtin", "ansible.legacy"})
# WinRM authentication that needs no password in the inventory.
PASSWORDLESS_WINRM = ("kerberos", "certificate")


@dataclass(frozen=True)
class Finding:
    """One thing checked: what, whether it is there, and where (or what to do)."""

    item: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.item}: {self.detail}"


class PreflightError(OrchestratorError):
    """Something a run needs is missing; `missing` holds one finding per missing thing."""

    def __init__(self, missing: list[Finding]) -> None:
        super().__init__(f"preflight: {len(missing)} thing(s) missing: {missing[0]}")
        self.missing = missing


def stage_files(playbooks: Path, stage: str, hosts: Iterable[Host]) -> list[Path]:
    """The stage's playbook and every task file it includes for these hosts: a templated include
    (`tasks/restore/{{ recovery_restore_method | default('none') }}.yml`) is rendered with each host's
    recovery variables, as the engine passes them."""
    hosts = list(hosts)
    files = [playbooks / f"{stage}.yml"]
    seen: list[Path] = []
    while files:
        path = files.pop(0)
        if path in seen:
            continue
        seen.append(path)
        if path.is_file():
            files.extend(_includes(path, playbooks, hosts))
    return seen


def _includes(path: Path, playbooks: Path, hosts: list[Host]) -> list[Path]:
    found = []
    # Include paths depend on a host's recovery variables only: one rendering per distinct set of them.
    kinds = {_include_values(h): h for h in hosts}
    for key, value in _walk(_read_yaml(path)):
        if not key.endswith(("include_tasks", "import_tasks")) or not isinstance(value, str):
            continue
        names = {value} if "{{" not in value else {_render(value, values) for values in kinds}
        for name in sorted(n for n in names if n):
            # Ansible looks beside the including file, then in the playbook's directory.
            candidates = [path.parent / name, playbooks / name]
            found.append(next((c for c in candidates if c.is_file()), candidates[0]))
    return found


def _include_values(host: Host) -> tuple[tuple[str, str], ...]:
    values = {
        "recovery_os": host.os,
        "recovery_reimage_method": host.reimage_method,
        "recovery_restore_method": host.restore_method,
    }
    return tuple((k, v) for k, v in values.items() if v is not None)


def _render(template: str, values: tuple[tuple[str, str], ...]) -> str | None:
    """An include path for hosts with these values; None when it depends on anything else."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        return env.from_string(template).render(dict(values))
    except jinja2.TemplateError:
        return None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def _walk(data: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield str(key), value
            yield from _walk(value)
    elif isinstance(data, list):
        for item in data:
            yield from _walk(item)


def collections_used(files: Iterable[Path]) -> set[str]:
    """The collections (namespace.name) whose modules the files' tasks call."""
    used: set[str] = set()
    for path in files:
        for key, _ in _walk(_read_yaml(path)):
            match = FQCN.match(key)
            if match and f"{match[1]}.{match[2]}" not in BUILTIN_COLLECTIONS:
                used.add(f"{match[1]}.{match[2]}")
    return used


def collection_installed(name: str) -> bool:
    """Whether Ansible finds the collection, with its collection finder as ansible-playbook sets it up."""
    from orchestrator.inventory.loading import init_plugin_loader

    init_plugin_loader()
    namespace, collection = name.split(".")
    try:
        return importlib.util.find_spec(f"ansible_collections.{namespace}.{collection}") is not None
    except (ImportError, ValueError):
        return False


def _tool(name: str, path: str | None, why: str) -> Finding:
    if path and os.access(path, os.X_OK):
        return Finding(name, True, path)
    return Finding(name, False, f"not found on PATH ({why})")


def _writable(item: str, path: Path) -> Finding:
    """A file or folder can be written when it is writable, or does not exist yet in a folder that is."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK) and (probe.is_dir() or probe == path):
        return Finding(item, True, str(path))
    return Finding(item, False, f"{path} cannot be written ({probe} is not writable)")


WINRM_CREDENTIAL_VARS = ("ansible_winrm_transport", "ansible_winrm_password", "ansible_password")


def _winrm_credentials(hosts: Iterable[Host]) -> list[Finding]:
    """A finding for each WinRM host whose password is unset or renders empty. Hosts whose credential
    variables are the same text over the same values (a group's `lookup('env', ...)`) are rendered
    once: rendering builds Ansible's templar over all of a host's variables."""
    rendered: dict[tuple[str, ...], bool] = {}
    findings = []
    for host in hosts:
        if host.connection not in WINDOWS_CONNECTIONS:
            continue
        key = _credential_key(host)
        if key not in rendered:
            rendered[key] = _has_password(host)
        if not rendered[key]:
            findings.append(
                Finding(
                    f"WinRM credentials for {host.name}",
                    False,
                    "ansible_password is unset or renders empty (a lookup of an unset variable?)",
                )
            )
    return findings


def _credential_key(host: Host) -> tuple[str, ...]:
    """The credential variables' raw text and, transitively, that of every variable they name."""
    import jinja2
    from jinja2 import meta

    env = jinja2.Environment(autoescape=False)
    names, key, seen = list(WINRM_CREDENTIAL_VARS), [], set()
    while names:
        name = names.pop(0)
        if name in seen:
            continue
        seen.add(name)
        value = host.vars.get(name)
        key.append(f"{name}={value!r}")
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            try:
                names.extend(sorted(meta.find_undeclared_variables(env.parse(value))))
            except jinja2.TemplateSyntaxError:
                key.append(f"unique={host.name}")
    return tuple(key)


def _has_password(host: Host) -> bool:
    from orchestrator.triage.transports import HostVars

    hv = HostVars(host)
    try:
        transport = str(hv.get("ansible_winrm_transport") or "").split(",")[0].strip().lower()
        if transport in PASSWORDLESS_WINRM:
            return True
        return bool(hv.get("ansible_winrm_password", "ansible_password"))
    except Exception:  # an unresolvable template: the password is not there either
        return False


def check(
    playbooks: Path,
    stage_hosts: dict[str, list[Host]] | None,
    database: str | None,
    runs_dir: Path | None,
) -> list[Finding]:
    """Every finding (missing or not) for a run where each stage takes the hosts `stage_hosts` gives
    it; None checks for any run: every playbook, ssh and restic."""
    from orchestrator.execution.runner import ansible_playbook_path

    findings: list[Finding] = []
    playbook = ansible_playbook_path()
    findings.append(
        _tool("ansible-playbook", shutil.which(playbook) or playbook, "install the package's dependencies")
    )
    config = playbooks / "ansible.cfg"
    findings.append(
        Finding("playbooks", config.is_file(), str(playbooks) if config.is_file() else f"{config} missing")
    )
    hosts: dict[str, Host] = {}
    files: list[Path] = []
    if stage_hosts is None:
        files = sorted(playbooks.rglob("*.yml"))
        files += [
            playbooks / f"{stage}.yml"
            for stage in states.STAGE_ORDER
            if not (playbooks / f"{stage}.yml").is_file()
        ]
    else:
        for stage, takers in stage_hosts.items():
            hosts.update((h.name, h) for h in takers)
            files.extend(f for f in stage_files(playbooks, stage, takers) if f not in files)
    for path in files:
        if not path.is_file():
            findings.append(Finding(f"playbook {path.name}", False, f"{path} missing"))
    for name in sorted(collections_used(files)):
        installed = collection_installed(name)
        findings.append(
            Finding(
                f"collection {name}",
                installed,
                "installed" if installed else f"not installed (ansible-galaxy collection install {name})",
            )
        )
    if stage_hosts is None or any(h.connection not in WINDOWS_CONNECTIONS for h in hosts.values()):
        findings.append(_tool("ssh", shutil.which("ssh"), "Linux hosts are reached over SSH"))
    restores = stage_hosts is None or any(
        h.restore_method == "restic" for h in stage_hosts.get(restore_point.STAGE, [])
    )
    if restores:
        findings.append(
            _tool("restic", shutil.which("restic"), "restores read restic snapshots on the controller")
        )
    database_file = _sqlite_file(database)
    if database_file is not None:
        findings.append(_writable("database", database_file))
    if runs_dir is not None:
        findings.append(_writable("runs folder", runs_dir.absolute()))
    findings.extend(_winrm_credentials(hosts.values()))
    return findings


def _sqlite_file(database: str | None) -> Path | None:
    """The file of a SQLite database given as a path or URL (a server database is checked on connect)."""
    if not database:
        return None
    if "://" not in database:
        return Path(database).absolute()
    from sqlalchemy.engine import make_url

    url = make_url(database)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).absolute()


def doctor(inventory: list[str], database: str | None, runs_dir: Path) -> list[Finding]:
    """What any run would need: for every stage, over the inventory's hosts when one is given (its
    Windows hosts' credentials, its restic restores), else for a fleet of every kind."""
    from orchestrator.execution.run_model import PLAYBOOKS
    from orchestrator.inventory import cache as inventory_cache

    if not inventory:
        return check(PLAYBOOKS, None, database, runs_dir)
    hosts = list(inventory_cache.load(inventory).hosts.values())
    return check(PLAYBOOKS, {stage: hosts for stage in states.STAGE_ORDER}, database, runs_dir)


def require(findings: list[Finding]) -> None:
    missing = [f for f in findings if not f.ok]
    if missing:
        raise PreflightError(missing)


def to_dict(findings: list[Finding]) -> dict[str, Any]:
    return {"ok": all(f.ok for f in findings), "checks": [asdict(f) for f in findings]}
