"""Reading inventory sources with Ansible's own machinery, set up as the `ansible-inventory` CLI sets it
up: sources made absolute, the plugin loader and collection finder initialised (so plugins named by
their full name and collection plugins load), Vault secrets from the configuration. What differs is
deliberate: dynamic inventory scripts have a bounded time, a failure is one line naming the file and
line, and an inventory without hosts is refused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import types
from collections.abc import Iterator, Sequence
from typing import Any

from orchestrator.errors import InventoryError
from orchestrator.inventory import checks, records
from orchestrator.inventory.model import Inventory, Problem
from orchestrator.inventory.origins import error_origin, first_line

TIMEOUT_ENV = "ORCHESTRATOR_INVENTORY_TIMEOUT"
DEFAULT_SCRIPT_TIMEOUT = 60.0
# For a YAML file, the plugin whose reason to report when none could read it: `auto` only explains
# plugin configuration files, `yaml` explains the mistakes people make in host lists.
_PREFERRED = {".yml": ("yaml", "auto"), ".yaml": ("yaml", "auto"), ".json": ("yaml", "auto")}


def quiet_unparsed_warning() -> None:
    """Ansible's "unable to parse" warning is replaced by our own one-line error."""
    os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")


def script_timeout() -> float:
    """Seconds a run of dynamic inventory scripts may take in all (env ORCHESTRATOR_INVENTORY_TIMEOUT)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_SCRIPT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 86400:
        raise InventoryError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds (0 < seconds <= 86400)")
    return seconds


def absolute_sources(sources: Sequence[str]) -> list[str]:
    """As Ansible's CLI does: every path made absolute (`-i hosts`), host lists (`a,b,`) kept."""
    from ansible.utils.path import unfrackpath

    return [source if "," in source else unfrackpath(source, follow=False) for source in sources]


def init_plugin_loader() -> None:
    """The plugin loader and collection finder, initialised once as the ansible CLI does: without it
    `plugin: ansible.builtin.constructed` or a collection's inventory plugin cannot be found."""
    from ansible.plugins.loader import init_plugin_loader as ansible_init
    from ansible.utils.collection_loader import AnsibleCollectionConfig

    if AnsibleCollectionConfig.collection_finder is None:
        ansible_init([])


@contextlib.contextmanager
def bounded_scripts(seconds: float) -> Iterator[None]:
    """Ansible's script plugin waits for a script without limit; here every run of a script (its
    `--list`, then `--host` calls) shares one deadline, and a script still running at the deadline is
    killed with everything it started (its own session) and reported as an error of its source.

    The plugin module's `subprocess` is replaced for the duration of the load only: the plugin's
    code is unchanged, and nothing else in the process sees the bounded `Popen`."""
    from ansible.errors import AnsibleError
    from ansible.plugins.inventory import script as script_plugin

    deadline = time.monotonic() + seconds

    class BoundedPopen(subprocess.Popen):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, start_new_session=True, **kwargs)

        def communicate(self, input: Any = None, timeout: float | None = None) -> Any:
            try:
                return super().communicate(input, timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                super().communicate()
                raise AnsibleError(
                    f"inventory script gave no answer within {seconds:g}s ({TIMEOUT_ENV} sets the limit)"
                ) from None

    bounded = types.SimpleNamespace(Popen=BoundedPopen, PIPE=subprocess.PIPE)
    original = script_plugin.subprocess
    script_plugin.subprocess = bounded  # type: ignore[assignment]
    try:
        yield
    finally:
        script_plugin.subprocess = original


def vault_loader() -> Any:
    """Ansible's DataLoader with the Vault secrets the configuration names (password files, ids)."""
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
    """Load and validate. Raises InventoryError when a source cannot be read at all or holds no host;
    problems that concern single hosts are collected in `Inventory.problems` so a check can report
    them all. Nothing here resolves a host name: that happens only when connecting."""
    if not sources:
        raise InventoryError("no inventory given: use -i PATH (repeatable) or set ORCHESTRATOR_INVENTORY")
    for source in sources:
        if "," not in source and not os.path.exists(source):
            raise InventoryError(f"{source}: no such inventory file or directory")
        if os.path.isfile(source) and not os.access(source, os.R_OK):
            raise InventoryError(f"{source}: not readable (permission denied)")
    timeout = script_timeout()

    quiet_unparsed_warning()
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.vars.manager import VariableManager

    init_plugin_loader()
    absolute = absolute_sources(sources)
    loader = vault_loader()
    with _captured_failures() as failures, bounded_scripts(timeout):
        manager = InventoryManager(loader=loader, sources=absolute, parse=False)
        _yaml_before_auto(manager)
        for given, source in zip(sources, absolute, strict=True):
            before = len(failures)
            try:
                parsed = manager.parse_source(source)
            except AnsibleError as exc:
                raise InventoryError(f"{error_origin(exc) or given}: {first_line(exc)}") from exc
            if not parsed:
                mine = failures[before:]
                raise InventoryError(_explain_failure(_failed_file(source, mine), mine))
        manager.reconcile_inventory()

    variables = VariableManager(loader=loader, inventory=manager)
    if not manager.get_hosts(ignore_restrictions=True):
        raise InventoryError(f"{', '.join(absolute)}: no hosts in the inventory")
    return _build(list(sources), manager, variables, loader)


def _yaml_before_auto(manager: Any) -> None:
    """Ansible tries its `auto` plugin before `yaml` (the default order): for a YAML inventory that
    parses and deep-copies the whole file once for nothing (auto wants a `plugin:` key) before `yaml`
    parses it again, a third of the loader's time on a 50,000-host file. Trying `yaml` first gives
    the same result (it refuses a plugin configuration, which `auto` then takes) for one parse."""
    fetch = manager._fetch_inventory_plugins
    plugins: list[Any] = []

    def ordered() -> list[Any]:
        if not plugins:
            found = fetch()
            names = [str(getattr(p, "_load_name", "")).rsplit(".", 1)[-1] for p in found]
            if "auto" in names and "yaml" in names and names.index("auto") < names.index("yaml"):
                found.insert(names.index("auto"), found.pop(names.index("yaml")))
            plugins.extend(found)
        return list(plugins)

    manager._fetch_inventory_plugins = ordered


@contextlib.contextmanager
def _captured_failures() -> Iterator[list[tuple[str, BaseException]]]:
    """Ansible reports why each plugin failed as warnings; they are kept to explain a failure in one
    line, and its "Unable to parse" warning is dropped (our error says it better)."""
    from ansible.inventory import manager as manager_module

    failures: list[tuple[str, BaseException]] = []
    display = manager_module.display
    original = display.error_as_warning, display.warning

    def capture(msg: str, exception: BaseException, **_: Any) -> None:
        failures.append((msg.split("'")[1] if "'" in msg else "?", exception))

    def quiet(msg: str, *args: Any, **kwargs: Any) -> None:
        if not msg.startswith("Unable to parse"):
            original[1](msg, *args, **kwargs)

    display.error_as_warning = capture  # type: ignore[method-assign]
    display.warning = quiet  # type: ignore[method-assign]
    try:
        yield failures
    finally:
        display.error_as_warning, display.warning = original  # type: ignore[method-assign]


def _explain_failure(source: str, failures: list[tuple[str, BaseException]]) -> str:
    """One line saying why a source could not be parsed, from the plugin that was meant to read it."""
    if not failures:
        return f"{source}: not an inventory Ansible can read"
    ext = os.path.splitext(source)[1].lower()
    script = os.path.isfile(source) and os.access(source, os.X_OK)
    preferred = ("script",) if script else _PREFERRED.get(ext, ("ini", "toml"))
    if ext in _PREFERRED and _declares_plugin(failures):
        preferred = ("auto", "yaml")  # a plugin configuration file: `auto` read it and says why
    chosen = next(
        (f for name in preferred for f in failures if f[0] in (name, f"ansible.builtin.{name}")), failures[0]
    )
    where = error_origin(chosen[1]) or source
    if ":" not in where and (line := _parser_line(chosen[1], where)):
        where = f"{where}:{line}"
    return f"{where}: {first_line(chosen[1]) or 'cannot be parsed'}"


def _parser_line(exc: BaseException | None, path: str) -> int | None:
    """The line of `path` the failing plugin was reading, when its error leaves it out (ansible-core
    2.19's INI and YAML plugins often name the file only). Taken from the innermost frame that knows:
    the INI plugin's `_parse` loop holds the line it stopped on, the YAML plugin's frames hold values
    tagged with where they were read (the furthest one is what it was reading)."""
    from orchestrator.inventory.origins import value_origin

    frames = []
    while exc is not None:
        tb = exc.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        exc = exc.__cause__
    for frame in reversed(frames):
        local = frame.f_locals
        current, lines = local.get("line"), local.get("lines")
        if frame.f_code.co_name == "_parse" and isinstance(current, str) and isinstance(lines, list):
            stripped = [str(text).strip() for text in lines]
            if current.strip() in stripped:
                return stripped.index(current.strip()) + 1
        found = [value_origin(v) for k, v in local.items() if k != "self"]
        numbers = [int(w.rsplit(":", 1)[1]) for w in found if w and w.rsplit(":", 1)[0] == path and ":" in w]
        if numbers:
            return max(numbers)
    return None


def _declares_plugin(failures: list[tuple[str, BaseException]]) -> bool:
    """Whether `auto` got past "no root 'plugin' key" (the file names a plugin it then failed on)."""
    return any(
        name in ("auto", "ansible.builtin.auto") and "root 'plugin' key" not in str(exc)
        for name, exc in failures
    )


def _failed_file(source: str, failures: list[tuple[str, BaseException]]) -> str:
    """For a directory source, the file inside it that failed (named by the plugin's origin)."""
    for _, exc in failures:
        where = error_origin(exc)
        if where:
            return where.split(":")[0]
        text = str(getattr(exc, "obj", "") or "")
        if "with source '" in text:
            return text.split("with source '")[1].split("'")[0]
    return source


def _build(sources: list[str], manager: Any, variables: Any, loader: Any) -> Inventory:
    from ansible.errors import AnsibleError

    problems: list[Problem] = []
    hosts = {}
    groups = {
        name: sorted(h.name for h in group.get_hosts())
        for name, group in manager.groups.items()
        if name not in ("all", "ungrouped")
    }
    for ahost in manager.get_hosts(ignore_restrictions=True):
        try:
            hv = variables.get_vars(host=ahost, include_hostvars=False, stage="all")
        except AnsibleError as exc:  # a group_vars/host_vars file Ansible cannot read
            raise InventoryError(f"{error_origin(exc) or ', '.join(sources)}: {first_line(exc)}") from exc
        group_names = sorted(g.name for g in ahost.get_groups())
        host, host_problems = records.host_from_vars(ahost.name, hv, group_names, loader)
        hosts[host.name] = host
        problems.extend(host_problems)
    problems.extend(checks.resolve_dependencies(hosts, groups))
    problems.extend(checks.duplicate_addresses(hosts))
    problems.extend(checks.check_execution_nodes(hosts))
    return Inventory(sources=sources, hosts=hosts, groups=groups, problems=problems, _manager=manager)
