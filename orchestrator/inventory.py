"""Hosts from a standard Ansible inventory, with their recovery attributes, and the checks that say
whether that inventory can drive a recovery.

Parsing is Ansible's own (InventoryManager, vars plugins for group_vars/host_vars, Vault): INI, YAML,
directories and dynamic inventory scripts all behave exactly as they do for `ansible-playbook`.
"""

from __future__ import annotations

import contextlib
import graphlib
import ipaddress
import json
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.errors import InventoryError

TIERS = {0: "identity and core infrastructure", 1: "life-critical clinical", 2: "business", 3: "workstations"}
ROLES = ("server", "workstation")
DEFAULT_TIER_BY_ROLE = {"server": 2, "workstation": 3}
WINDOWS_CONNECTIONS = ("winrm", "psrp")
WINRM_TRANSPORTS = ("basic", "ntlm", "kerberos", "credssp", "certificate", "plaintext", "ssl")
# Variables that hold secrets: read for connecting, never copied out of memory.
SECRET_VARS = frozenset(
    {
        "ansible_password",
        "ansible_ssh_pass",
        "ansible_ssh_password",
        "ansible_become_password",
        "ansible_become_pass",
        "ansible_winrm_password",
        "ansible_httpapi_pass",
        "ansible_ssh_private_key_passphrase",
    }
)


@dataclass
class Host:
    """A host as the recovery sees it. `vars` (all its Ansible variables, secrets included) stays in
    memory for the transports: never written anywhere (it crosses at most `Prefetch`'s pipe)."""

    name: str
    address: str
    port: int | None
    user: str | None
    connection: str
    os: str
    tier: int
    role: str
    depends_on: list[str]
    depends_on_hosts: list[str]
    protected: bool
    site: str | None
    reimage_method: str | None
    restore_method: str | None
    priority: int
    groups: list[str]
    data_categories: list[str]
    execution_node: str | None
    vars: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stable, secret-free JSON shape (documented in the README)."""
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "connection": self.connection,
            "os": self.os,
            "tier": self.tier,
            "role": self.role,
            "site": self.site,
            "protected": self.protected,
            "priority": self.priority,
            "depends_on": self.depends_on,
            "depends_on_hosts": self.depends_on_hosts,
            "groups": self.groups,
            "reimage_method": self.reimage_method,
            "restore_method": self.restore_method,
            "data_categories": self.data_categories,
            "execution_node": self.execution_node,
        }


@dataclass
class Problem:
    """One thing wrong with the inventory, with where it was found."""

    message: str
    host: str | None = None
    where: str | None = None  # file[:line[:col]]

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        subject = f"host {self.host}: " if self.host else ""
        return f"{prefix}{subject}{self.message}"


@dataclass
class Inventory:
    sources: list[str]
    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    problems: list[Problem]
    _manager: Any = field(repr=False, default=None)

    def select(self, pattern: str | None) -> list[Host]:
        """Hosts matching an Ansible host pattern (`web:&north:!web03`, `tier0`, `ehr*`), in inventory order."""
        if not pattern:
            return list(self.hosts.values())
        if self._manager is None:
            raise InventoryError("host patterns need the inventory loaded with load(), not Prefetch")
        names = [h.name for h in self._manager.get_hosts(pattern=pattern)]
        if not names:
            raise InventoryError(f"--limit {pattern!r} matches no host in {', '.join(self.sources)}")
        return [self.hosts[n] for n in names if n in self.hosts]

    def require_valid(self) -> None:
        if self.problems:
            raise InventoryError(
                f"{self.problems[0]} ({len(self.problems)} problem(s); run 'orchestrator inventory check')",
                [str(p) for p in self.problems],
            )


def _origin(value: Any) -> str | None:
    """file:line where Ansible read a value, when it knows (ansible-core tags values with their origin)."""
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # pragma: no cover - other ansible-core layouts
        return None
    tag = Origin.get_tag(value)
    if tag is None or not tag.path:
        return None
    return f"{tag.path}:{tag.line_num}" if tag.line_num else str(tag.path)


def _explain_failure(source: str, failures: list[tuple[str, BaseException]]) -> str:
    """One line saying why a source could not be parsed, from the plugin that was meant to read it."""
    if not failures:
        return f"{source}: not an inventory Ansible can read"
    ext = os.path.splitext(source)[1].lower()
    preferred = {".yml": ("auto", "yaml"), ".yaml": ("auto", "yaml"), ".json": ("auto", "yaml")}.get(
        ext, ("script",) if os.access(source, os.X_OK) and os.path.isfile(source) else ("ini", "toml")
    )
    chosen = next((f for f in failures if f[0] in preferred), failures[0])
    exc: BaseException | None = chosen[1]
    where = None
    reason = None
    while exc is not None:
        where = where or _exc_origin(exc)
        text = str(getattr(exc, "message", None) or exc).strip()
        if text and reason is None:  # Ansible's own wording first; it already summarises its causes
            reason = text.splitlines()[0]
        exc = exc.__cause__
    where = where or source
    return f"{where}: {reason or 'cannot be parsed'}"


def _exc_origin(exc: BaseException) -> str | None:
    obj = getattr(exc, "obj", None)
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # pragma: no cover
        return None
    tag = obj if isinstance(obj, Origin) else Origin.get_tag(obj) if obj is not None else None
    if tag is None or not tag.path:
        return None
    parts = [str(tag.path)]
    if tag.line_num:
        parts.append(str(tag.line_num))
        if tag.col_num:
            parts.append(str(tag.col_num))
    return ":".join(parts)


def _vault_loader():
    from ansible import constants as C
    from ansible.cli import CLI
    from ansible.parsing.dataloader import DataLoader

    loader = DataLoader()
    files = [C.DEFAULT_VAULT_PASSWORD_FILE] if C.DEFAULT_VAULT_PASSWORD_FILE else []
    if files or C.DEFAULT_VAULT_IDENTITY_LIST:
        secrets = CLI.setup_vault_secrets(
            loader, vault_ids=C.DEFAULT_VAULT_IDENTITY_LIST, vault_password_files=files, ask_vault_pass=False
        )
        loader.set_vault_secrets(secrets)
    return loader


def load(sources: Sequence[str]) -> Inventory:
    """Load and validate. Raises InventoryError when a source cannot be read at all; problems that
    concern single hosts are collected in `Inventory.problems` so a check can report them all."""
    if not sources:
        raise InventoryError("no inventory given: use -i PATH (repeatable) or set ORCHESTRATOR_INVENTORY")
    for source in sources:
        if "," not in source and not os.path.exists(source):
            raise InventoryError(f"{source}: no such inventory file or directory")
        if os.path.isfile(source) and not os.access(source, os.R_OK):
            raise InventoryError(f"{source}: not readable (permission denied)")

    os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")
    from ansible.errors import AnsibleError
    from ansible.inventory import manager as manager_module
    from ansible.inventory.manager import InventoryManager
    from ansible.vars.manager import VariableManager

    loader = _vault_loader()
    # Ansible reports why each plugin failed as warnings; keep them to explain a failure in one line.
    failures: list[tuple[str, BaseException]] = []
    display = manager_module.display
    original = display.error_as_warning, display.warning

    def capture(msg: str, exception: BaseException, **_: Any) -> None:
        failures.append((msg.split("'")[1] if "'" in msg else "?", exception))

    def quiet(msg: str, *args: Any, **kwargs: Any) -> None:
        if not msg.startswith("Unable to parse"):  # we raise our own, clearer error for that
            original[1](msg, *args, **kwargs)

    display.error_as_warning = capture  # type: ignore[method-assign]
    display.warning = quiet  # type: ignore[method-assign]
    try:
        manager = InventoryManager(loader=loader, sources=list(sources), parse=False)
        for source in sources:
            before = len(failures)
            try:
                parsed = manager.parse_source(source)
            except AnsibleError as exc:
                raise InventoryError(f"{source}: {str(exc).splitlines()[0]}") from exc
            if not parsed:
                mine = failures[before:]
                failed_source = _failed_file(source, mine)
                raise InventoryError(_explain_failure(failed_source, mine))
        manager.reconcile_inventory()
    finally:
        display.error_as_warning, display.warning = original  # type: ignore[method-assign]

    variables = VariableManager(loader=loader, inventory=manager)
    return _build(list(sources), manager, variables)


class Prefetch:
    """An inventory loaded by a forked helper process while the caller goes on with its own start-up.

    Ansible's imports and parsing take about 0.3 s, and `orchestrator run` spends as long importing the
    database layer and reading the plan before it needs the hosts: with two cores, the inventory is
    ready when the engine asks. Hosts cross the pipe as JSON, and their variables with them, in memory
    only (a pipe between this process and its own fork): vault-encrypted values arrive decrypted, as
    Ansible would decrypt them on use; dates arrive as text; text Ansible trusted as a template arrives
    as `TrustedTemplate`, which `ansible_value` trusts again, so a `{{ lookup('env', ...) }}` password
    renders exactly as it would have. The result has no host patterns (`select`): callers that need
    them use `load`. Where the helper cannot help (no fork, other threads running that a fork could
    catch holding a lock, the helper crashed, a value it could not decrypt), the inventory is loaded
    here instead, so an error reads exactly as it would without the helper.
    """

    def __init__(self, sources: Sequence[str]) -> None:
        self.sources = list(sources)
        self._pid: int | None = None
        self._fd: int | None = None
        os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")  # as load() does
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return
        read, write = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # no process to spare: load in this one when asked
            os.close(read)
            os.close(write)
            return
        if pid == 0:  # the helper: never returns, never runs the parent's exit handlers
            code = 1
            try:
                os.close(read)
                _send_inventory(write, self.sources)
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self._pid, self._fd = pid, read

    def result(self) -> Inventory:
        if self._fd is None:
            return load(self.sources)
        with os.fdopen(self._fd, "rb") as pipe:
            self._fd = None
            data = pipe.read()
        self._reap()
        try:
            payload = json.loads(data, object_hook=_trusted_template)
        except ValueError:  # the helper died before answering: load here, with the real error
            return load(self.sources)
        if "error" in payload:
            raise InventoryError(payload["error"], payload["problems"])
        return Inventory(
            sources=self.sources,
            hosts={h["name"]: Host(**h) for h in payload["hosts"]},
            groups=payload["groups"],
            problems=[Problem(**p) for p in payload["problems"]],
        )

    def close(self) -> None:
        """Stop a helper whose answer is no longer wanted (the caller failed before asking)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = None

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _send_inventory(fd: int, sources: list[str]) -> None:
    try:
        inventory = load(sources)
        from ansible.template import is_trusted_as_template

        hosts = inventory.hosts.values()
        payload: dict[str, Any] = {
            "hosts": [{**h.to_dict(), "vars": _portable(h.vars, is_trusted_as_template)} for h in hosts],
            "groups": inventory.groups,
            "problems": [asdict(p) for p in inventory.problems],
        }
    except InventoryError as exc:
        payload = {"error": str(exc), "problems": exc.problems}
    # default=str: vault-encrypted values decrypt (or the helper fails, and the caller loads itself).
    data = json.dumps(payload, default=str).encode()
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(data)


# How a trusted template crosses the pipe: a JSON object with this one key.
_TEMPLATE_KEY = "__orchestrator_trusted_template__"


class TrustedTemplate(str):
    """Text Ansible trusted as a template where it read it (an inventory file, not a remote answer),
    after it crossed from `Prefetch`'s helper as plain JSON (see `ansible_value`)."""


def _portable(value: Any, trusted: Callable[[object], bool]) -> Any:
    """Variables as JSON data, each trusted template marked (ansible-core renders only those)."""
    if isinstance(value, str):
        if ("{{" in value or "{%" in value) and trusted(value):
            return {_TEMPLATE_KEY: str(value)}
        return value
    if isinstance(value, dict):
        return {str(k): _portable(v, trusted) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_portable(v, trusted) for v in value]
    return value


def _trusted_template(obj: dict[str, Any]) -> Any:
    return TrustedTemplate(obj[_TEMPLATE_KEY]) if len(obj) == 1 and _TEMPLATE_KEY in obj else obj


def ansible_value(value: Any) -> Any:
    """A variable as Ansible's templar must see it: TrustedTemplate text trusted again (values from
    `load` are Ansible's own and come back unchanged)."""
    if isinstance(value, TrustedTemplate):
        from ansible.template import trust_as_template

        return trust_as_template(str(value))
    if isinstance(value, dict):
        items = {k: ansible_value(v) for k, v in value.items()}
        return items if any(items[k] is not v for k, v in value.items()) else value
    if isinstance(value, list):
        elements = [ansible_value(v) for v in value]
        return elements if any(a is not b for a, b in zip(elements, value, strict=True)) else value
    return value


def _failed_file(source: str, failures: list[tuple[str, BaseException]]) -> str:
    """For a directory source, the file inside it that failed (named by the plugin's origin)."""
    for _, exc in failures:
        where = _exc_origin(exc)
        if where:
            return where.split(":")[0]
        text = str(getattr(exc, "obj", "") or "")
        if "with source '" in text:
            return text.split("with source '")[1].split("'")[0]
    return source


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    return [str(value)]


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0", ""):
        return False
    if isinstance(value, int):
        return bool(value)
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _build(sources: list[str], manager: Any, variables: Any) -> Inventory:
    problems: list[Problem] = []
    hosts: dict[str, Host] = {}
    groups = {
        name: sorted(h.name for h in group.get_hosts())
        for name, group in manager.groups.items()
        if name not in ("all", "ungrouped")
    }
    for ahost in manager.get_hosts(ignore_restrictions=True):
        hv = variables.get_vars(host=ahost, include_hostvars=False, stage="all")
        host, host_problems = _host_from_vars(ahost.name, hv, sorted(g.name for g in ahost.get_groups()))
        hosts[host.name] = host
        problems.extend(host_problems)
    problems.extend(_resolve_dependencies(hosts, groups))
    problems.extend(_duplicate_addresses(hosts))
    problems.extend(_check_execution_nodes(hosts))
    return Inventory(sources=sources, hosts=hosts, groups=groups, problems=problems, _manager=manager)


def _host_from_vars(name: str, hv: dict[str, Any], group_names: list[str]) -> tuple[Host, list[Problem]]:
    problems: list[Problem] = []

    def problem(message: str, var: str | None = None) -> None:
        where = (_origin(hv.get(var)) if var else None) or _origin(hv.get("ansible_host"))
        problems.append(Problem(message, host=name, where=where or _host_source(hv)))

    groups = [g for g in group_names if g not in ("all", "ungrouped")]
    connection = str(hv.get("ansible_connection") or "ssh")
    is_windows = connection in WINDOWS_CONNECTIONS or "windows" in groups

    role = str(
        hv.get("recovery_role") or ("workstation" if any("workstation" in g for g in groups) else "server")
    )
    if role not in ROLES:
        problem(f"invalid recovery_role {role!r} (expected one of: {', '.join(ROLES)})", "recovery_role")
    raw_tier = hv.get("recovery_tier")
    tier = DEFAULT_TIER_BY_ROLE.get(role, 2) if raw_tier is None else _as_int(raw_tier)
    if tier is None or tier not in TIERS:
        problem(f"invalid recovery_tier {raw_tier!r} (expected 0, 1, 2 or 3)", "recovery_tier")
        tier = DEFAULT_TIER_BY_ROLE.get(role, 2)
    raw_priority = hv.get("recovery_priority", 100)
    priority = _as_int(raw_priority)
    if priority is None:
        problem(f"invalid recovery_priority {raw_priority!r} (expected an integer)", "recovery_priority")
        priority = 100
    protected = _as_bool(hv.get("recovery_protected", False))
    if protected is None:
        problem(
            f"invalid recovery_protected {hv.get('recovery_protected')!r} (expected true or false)",
            "recovery_protected",
        )
        protected = True  # when in doubt, never wipe

    explicit_address = hv.get("ansible_host")
    address = str(explicit_address) if explicit_address not in (None, "") else name
    if explicit_address in (None, "") and not _looks_addressable(name):
        problem("no address: set ansible_host (or name the host by its IP address or FQDN)")
    port = _as_int(hv.get("ansible_port")) if hv.get("ansible_port") is not None else None
    if hv.get("ansible_port") is not None and (port is None or not 0 < port < 65536):
        problem(f"invalid ansible_port {hv.get('ansible_port')!r}", "ansible_port")
        port = None

    if is_windows:
        if connection not in WINDOWS_CONNECTIONS:
            problem(
                f"Windows host (group 'windows') with ansible_connection {connection!r}: set it to winrm",
                "ansible_connection",
            )
        transport = hv.get("ansible_winrm_transport")
        if connection == "winrm" and not transport:
            problem(
                "Windows host without WinRM settings: set ansible_winrm_transport (ntlm, kerberos, "
                "credssp or basic)"
            )
        elif connection == "winrm" and any(t.strip() not in WINRM_TRANSPORTS for t in _as_list(transport)):
            problem(f"invalid ansible_winrm_transport {transport!r}", "ansible_winrm_transport")
        if not hv.get("ansible_user"):
            problem("Windows host without WinRM settings: set ansible_user")

    host = Host(
        name=name,
        address=address,
        port=port,
        user=str(hv["ansible_user"]) if hv.get("ansible_user") else None,
        connection=connection,
        os="windows" if is_windows else "linux",
        tier=tier,
        role=role,
        depends_on=_as_list(hv.get("recovery_depends_on")),
        depends_on_hosts=[],
        protected=protected,
        site=str(hv["recovery_site"]) if hv.get("recovery_site") else None,
        reimage_method=str(hv["recovery_reimage_method"]) if hv.get("recovery_reimage_method") else None,
        restore_method=str(hv["recovery_restore_method"]) if hv.get("recovery_restore_method") else None,
        priority=priority,
        groups=groups,
        data_categories=_as_list(hv.get("recovery_data_categories")),
        execution_node=str(hv["recovery_execution_node"]) if hv.get("recovery_execution_node") else None,
        vars=dict(hv),
    )
    return host, problems


def _host_source(hv: dict[str, Any]) -> str | None:
    """The inventory file that defined the host (Ansible sets `inventory_file` on every host)."""
    source = hv.get("inventory_file")
    return str(source) if source else None


def _looks_addressable(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return "." in name or name == "localhost"


def _resolve_dependencies(hosts: dict[str, Host], groups: dict[str, list[str]]) -> list[Problem]:
    """Expand group dependencies to hosts, report unknown names, then every dependency cycle."""
    problems: list[Problem] = []
    for host in hosts.values():
        resolved: list[str] = []
        for dep in host.depends_on:
            if dep in hosts:
                targets = [dep]
            elif dep in groups:
                targets = [h for h in groups[dep] if h != host.name]
            else:
                problems.append(
                    Problem(
                        f"unknown dependency {dep!r} (no such host or group)",
                        host=host.name,
                        where=_origin(host.vars.get("recovery_depends_on")) or _host_source(host.vars),
                    )
                )
                continue
            resolved.extend(t for t in targets if t not in resolved)
        host.depends_on_hosts = resolved
    for cycle in find_cycles({h.name: h.depends_on_hosts for h in hosts.values()}):
        first = hosts[cycle[0]]
        problems.append(
            Problem(
                f"dependency cycle: {' -> '.join(cycle)}",
                host=first.name,
                where=_origin(first.vars.get("recovery_depends_on")) or _host_source(first.vars),
            )
        )
    return problems


def find_cycles(graph: dict[str, list[str]], limit: int = 20) -> list[list[str]]:
    """Distinct dependency cycles (each as a closed path), found by graphlib one at a time: report a
    cycle, cut one of its edges, look again, so one bad edge never hides another."""
    edges = {node: set(deps) for node, deps in graph.items()}
    cycles: list[list[str]] = []
    while len(cycles) < limit:
        try:
            graphlib.TopologicalSorter({n: sorted(d) for n, d in edges.items()}).prepare()
            break
        except graphlib.CycleError as exc:
            # graphlib lists each node before the one that depends on it; reversed, every node is
            # followed by what it depends on, which is how an operator reads "a -> b".
            path = list(reversed(exc.args[1]))
            cycles.append(path)
            edges[path[0]].discard(path[1])
    return cycles


def _check_execution_nodes(hosts: dict[str, Host]) -> list[Problem]:
    """A node is reached over SSH like any Linux host of the inventory, and runs playbooks itself: it
    cannot hand its own stages to another node (a chain would hide which machine touched a host)."""
    problems = []
    for host in hosts.values():
        node_name = host.execution_node
        if node_name is None:
            continue
        node = hosts.get(node_name)
        where = _origin(host.vars.get("recovery_execution_node")) or _host_source(host.vars)
        if node is None:
            message = (
                f"unknown execution node {node_name!r} (recovery_execution_node names an inventory host)"
            )
        elif node.name == host.name:
            message = "recovery_execution_node names the host itself: leave it unset on the node"
        elif node.connection != "ssh":
            message = f"execution node {node_name} is reached over {node.connection}: a node must take SSH"
        elif node.execution_node is not None:
            message = f"execution node {node_name} has an execution node of its own ({node.execution_node})"
        else:
            continue
        problems.append(Problem(message, host=host.name, where=where))
    return problems


def _duplicate_addresses(hosts: dict[str, Host]) -> list[Problem]:
    seen: dict[tuple[str, int | None], str] = {}
    problems = []
    for host in hosts.values():
        key = (host.address, host.port)
        if key in seen:
            shown = host.address + (f":{host.port}" if host.port else "")
            problems.append(
                Problem(
                    f"same address {shown} as host {seen[key]}",
                    host=host.name,
                    where=_origin(host.vars.get("ansible_host")) or _host_source(host.vars),
                )
            )
        else:
            seen[key] = host.name
    return problems
