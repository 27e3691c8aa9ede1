"""The parsed inventory, kept between commands, keyed by the content of everything that makes it.

Ansible's loader takes about a second per 1,000 hosts (52 s at 50,000), and every command that reads
the inventory paid it again. Here the result of `inventory.load` is written to a private file (0600,
in a 0700 directory) and read back, in well under a second, by the next command whose inputs are
byte for byte the same: every file of each source (a directory: every file under it; a file: it and
the group_vars/ and host_vars/ beside it), the Ansible configuration files, the ANSIBLE_* environment,
the ansible-core version and this package's inventory code. Any change gives another key, and the
inventory is loaded again.

Sources whose content is not on disk (an executable inventory script, an inventory plugin such as
aws_ec2) are run every time, unless the operator sets ORCHESTRATOR_INVENTORY_CACHE_TTL (seconds): then
their answer is reused for that long. No secret is written in clear: inline vault values are kept as
their ciphertext and decrypted in memory when read back; an inventory with a whole-file vault (a
vault.yml in group_vars) is not cached at all, since its values have no ciphertext of their own.
ORCHESTRATOR_INVENTORY_CACHE=off turns the cache off; another value names its directory.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import InventoryError
from orchestrator.inventory import loading, model, prefetch

FORMAT = 2  # 2: marked values listed by path (`marks`), the JSON parsed without a hook
ENV_DIR = "ORCHESTRATOR_INVENTORY_CACHE"
ENV_TTL = "ORCHESTRATOR_INVENTORY_CACHE_TTL"
# Inventory plugins that only rework what the other sources already hold: their output is as
# static as their inputs, so they do not make a source dynamic.
STATIC_PLUGINS = frozenset(
    {"constructed", "generator", "ansible.builtin.constructed", "ansible.builtin.generator"}
)
_PLUGIN_LINE = re.compile(rb"^plugin:\s*['\"]?([\w.]+)", re.MULTILINE)
_VAULT_HEADER = b"$ANSIBLE_VAULT"
_VAULT_KEY = "__orchestrator_vault__"
# Set by `inventory.load` itself (warnings only): whether an earlier load in this process or its
# parent set it must not change the key, or `run` (which loads in a forked helper) and `plan` would
# never share an entry.
_OWN_ENV = frozenset({"ANSIBLE_INVENTORY_UNPARSED_WARNING"})
_PLAIN = frozenset({str, int, float, bool, type(None)})


class Uncacheable(Exception):
    """The inventory must not be written (a whole-file vault, a value with no safe JSON form)."""


@dataclass
class Inputs:
    """What a cached inventory depends on: the digest of every input, and whether a source is
    dynamic (its content comes from running something, not from reading a file)."""

    digest: str
    dynamic: list[str]
    whole_file_vault: list[str]


def load(sources: Sequence[str]) -> model.Inventory:
    """`inventory.load`, from the cache when nothing it depends on has changed."""
    directory = cache_dir()
    if directory is None or not sources:
        return loading.load(sources)
    ttl = _ttl()
    for source in sources:  # the loader's own message for a missing source, not a cache error
        if "," not in source and not os.path.exists(source):
            return loading.load(sources)
    inputs = scan(sources)
    if inputs.dynamic and ttl <= 0:
        return loading.load(sources)
    path = directory / f"{_source_id(sources)}.json"
    cached = _read(path, sources, inputs, ttl)
    if cached is not None:
        return cached
    loaded = loading.load(sources)
    if not inputs.whole_file_vault:
        _write_aside(path, inputs, loaded)
    return loaded


def _write_aside(path: Path, inputs: Inputs, loaded: model.Inventory) -> None:
    """Write the cache from a forked child while this process gets on with its command (writing
    50,000 hosts takes seconds; with two cores the command does not wait for it). The process waits
    for the child when it exits, so the next command finds the file. Where a fork is unsafe (other
    threads) or impossible, write here."""
    pid = 0
    if hasattr(os, "fork") and threading.active_count() == 1:
        with contextlib.suppress(OSError):
            pid = os.fork()
            if pid == 0:  # the child: never returns, never runs the parent's exit handlers
                code = 1
                try:
                    with contextlib.suppress(Uncacheable, OSError):
                        _write(path, inputs, loaded)
                    code = 0
                finally:
                    os._exit(code)
    if pid:
        atexit.register(_reap, pid)
        return
    with contextlib.suppress(Uncacheable, OSError):
        _write(path, inputs, loaded)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def cache_dir() -> Path | None:
    setting = os.environ.get(ENV_DIR, "")
    if setting.lower() == "off":
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "orchestrator" / "inventory"


def _ttl() -> float:
    raw = os.environ.get(ENV_TTL, "0")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise InventoryError(
            f"{ENV_TTL}={raw!r}: expected a number of seconds (0: always run dynamic sources)"
        )
    return value


# --- what the inventory depends on -------------------------------------------------------------------


def scan(sources: Sequence[str]) -> Inputs:
    digest = hashlib.sha256()
    dynamic: list[str] = []
    vaulted: list[str] = []

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("format", f"{FORMAT} {sys.version} {_ansible_version()}".encode())
    for code in sorted(Path(__file__).parent.glob("*.py")):
        add(f"code {code.name}", code.read_bytes())
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith("ANSIBLE_") and k not in _OWN_ENV)
    add("env", json.dumps(env).encode())
    add("cwd", os.getcwd().encode())  # relative paths in sources and in ansible.cfg resolve from here
    for config in _config_files():
        add(f"config {config}", _read_bytes(config))
    for source in sources:
        add("source", source.encode())
        if "," in source and not os.path.exists(source):
            continue  # a host list ("a,b,"): the text is the whole input
        for file, role in _files(Path(source)):
            data = _read_bytes(file)
            add(f"file {file}", data)
            if data.startswith(_VAULT_HEADER):
                vaulted.append(str(file))
            elif role == "source" and _is_dynamic(file, data):
                dynamic.append(str(file))
    return Inputs(digest.hexdigest(), dynamic, vaulted)


def _files(source: Path) -> Iterator[tuple[Path, str]]:
    """Every file Ansible may read for a source, in a stable order: ('source' | 'vars', path)."""
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            rel = path.relative_to(source).parts
            yield path, "vars" if rel[0] in ("group_vars", "host_vars") else "source"
        return
    yield source, "source"
    for name in ("group_vars", "host_vars"):
        beside = source.parent / name
        if beside.is_dir():
            for path in sorted(p for p in beside.rglob("*") if p.is_file()):
                yield path, "vars"


def _is_dynamic(path: Path, data: bytes) -> bool:
    """An executable file is run by the script plugin; a YAML file naming a plugin is that plugin's
    configuration (both answer with whatever their source says today)."""
    if os.access(path, os.X_OK):
        return True
    if path.suffix.lower() not in (".yml", ".yaml", ".json"):
        return False
    match = _PLUGIN_LINE.search(data)
    return match is not None and match.group(1).decode() not in STATIC_PLUGINS


def _config_files() -> list[Path]:
    """Ansible's configuration search path (the first file found wins; all are hashed)."""
    candidates = [
        os.environ.get("ANSIBLE_CONFIG", ""),
        "ansible.cfg",
        "~/.ansible.cfg",
        "/etc/ansible/ansible.cfg",
    ]
    return [Path(c).expanduser() for c in candidates if c and Path(c).expanduser().is_file()]


def _ansible_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ansible-core")
    except PackageNotFoundError:
        return "?"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:  # unreadable: the loader will say so; the key still changes with it
        return f"unreadable: {exc.strerror}".encode()


def _source_id(sources: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps([os.getcwd(), *map(os.path.abspath, sources)]).encode()).hexdigest()[:32]


# --- the cache file ------------------------------------------------------------------------------------


def _write(path: Path, inputs: Inputs, loaded: model.Inventory) -> None:
    from ansible.template import is_trusted_as_template

    hosts = [{**h.to_dict(), "vars": _to_json(h.vars, is_trusted_as_template)} for h in loaded.hosts.values()]
    payload = {
        "format": FORMAT,
        "key": inputs.digest,
        "written": time.time(),
        "hosts": hosts,
        # Where a vault value or a trusted template stands, by path: revived only where we wrote
        # one (a variable that merely looks like a marker in an inventory file stays plain data),
        # after a parse without a per-object hook.
        "marks": [
            [i, *path]
            for i, (h, original) in enumerate(zip(hosts, loaded.hosts.values(), strict=True))
            for path in _marks(h["vars"], original.vars, [])
        ],
        "groups": loaded.groups,
        "problems": [asdict(p) for p in loaded.problems],
        # The group tree as Ansible holds it, so host patterns match and order hosts as they did.
        "tree": [
            [g.name, [c.name for c in g.child_groups], [h.name for h in g.hosts]]
            for g in loaded._manager.groups.values()
        ],
    }
    data = json.dumps(payload, separators=(",", ":")).encode()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".inventory-", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read(path: Path, sources: Sequence[str], inputs: Inputs, ttl: float) -> model.Inventory | None:
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_uid != os.geteuid():
                return None  # someone else's file: never trusted
            payload = _parse(f.read())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != FORMAT
        or payload.get("key") != inputs.digest
    ):
        return None
    if inputs.dynamic and time.time() - float(payload.get("written", 0)) > ttl:
        return None
    try:
        vaulted = _revive(payload["hosts"], payload["marks"])
    except (KeyError, IndexError, TypeError):  # not what `_write` wrote: load again
        return None
    if vaulted:
        _vault_secrets()
    loaded = model.Inventory(
        sources=list(sources),
        hosts={h["name"]: model.Host(**h) for h in payload["hosts"]},
        groups=payload["groups"],
        problems=[model.Problem(**p) for p in payload["problems"]],
    )
    loaded._manager = _Patterns(list(loaded.hosts), payload["tree"])
    return loaded


class _Patterns:
    """Ansible's host patterns (`web:&north:!web03`, `ehr*`, `~regex`) over a cached inventory: an
    InventoryManager holding only the group tree and host names, built the first time a pattern is
    asked for (most commands select every host and never pay for it)."""

    def __init__(self, hosts: list[str], tree: list[list[Any]]) -> None:
        self._hosts = hosts
        self._tree = tree
        self._manager: Any = None

    def get_hosts(self, pattern: str) -> list[Any]:
        if self._manager is None:
            from ansible.inventory.manager import InventoryManager
            from ansible.parsing.dataloader import DataLoader

            manager = InventoryManager(loader=DataLoader(), sources=[], parse=False)
            data = manager._inventory
            for host in self._hosts:  # first, in inventory order (the order of `all`)
                data.add_host(host)
            for name, _, _ in self._tree:
                data.add_group(name)
            for name, children, hosts in self._tree:
                for child in children:
                    data.add_child(name, child)
                for host in hosts:
                    data.add_host(host, group=name)
            manager.reconcile_inventory()
            self._manager = manager
        return list(self._manager.get_hosts(pattern=pattern))


def _parse(data: bytes) -> Any:
    """JSON with the cyclic garbage collector paused: parsing 50,000 hosts creates millions of
    objects, and the collections they trigger (each walking every object created so far) were two
    thirds of the parse (1.55 s -> 0.53 s of CPU for the 88 MB file of bench/scale.py's fleet). JSON
    makes no reference cycles, so nothing is left for the collector to find."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(data)
    finally:
        if enabled:
            gc.enable()


def _marks(value: Any, original: Any, path: list[Any]) -> Iterator[list[Any]]:
    """Paths, in a variable written by `_to_json`, of the markers it made: a one-key marker dict
    where the variable held no dict (a vault value, a trusted template)."""
    if isinstance(value, dict):
        if (
            len(value) == 1
            and (_VAULT_KEY in value or prefetch._TEMPLATE_KEY in value)
            and not isinstance(original, dict)
        ):
            yield path
            return
        if isinstance(original, dict):
            for key, child in value.items():
                yield from _marks(child, original.get(key), [*path, key])
    elif isinstance(value, list) and isinstance(original, list | tuple | set | frozenset):
        for index, (child, was) in enumerate(zip(value, original, strict=False)):
            yield from _marks(child, was, [*path, index])


def _revive(hosts: list[dict[str, Any]], marks: list[list[Any]]) -> bool:
    """Turn each marked value back into what it was; return whether one was a vault value."""
    vaulted = False
    for host_index, *path in marks:
        parent: Any = hosts[host_index]["vars"]
        for step in path[:-1]:
            parent = parent[step]
        marker = parent[path[-1]]
        if _VAULT_KEY in marker:
            from ansible.parsing.vault import EncryptedString

            parent[path[-1]] = EncryptedString(ciphertext=str(marker[_VAULT_KEY]))
            vaulted = True
        else:
            parent[path[-1]] = prefetch.TrustedTemplate(marker[prefetch._TEMPLATE_KEY])
    return vaulted


def _to_json(value: Any, trusted: Any) -> Any:
    """A variable as JSON: vault values as their ciphertext, trusted templates marked as such."""
    vault = _vault_types()
    kind = type(value)
    if kind in _PLAIN:  # untagged: neither vaulted nor trusted (both are tags), kept as it is
        return value
    if kind is vault.encrypted or vault.tag.is_tagged_on(value):
        return {_VAULT_KEY: str(vault.helper.get_ciphertext(value, with_tags=False))}
    if isinstance(value, str):
        return prefetch._portable(value, trusted)
    if isinstance(value, dict):
        return {str(k): _to_json(v, trusted) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_to_json(v, trusted) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    raise Uncacheable(type(value).__name__)


@dataclass(frozen=True)
class _VaultTypes:
    encrypted: type
    tag: Any
    helper: Any


@functools.cache
def _vault_types() -> _VaultTypes:
    """Ansible's vault types, imported once (the check runs for every value of every host)."""
    from ansible._internal._datatag._tags import VaultedValue
    from ansible.parsing.vault import EncryptedString, VaultHelper

    return _VaultTypes(EncryptedString, VaultedValue, VaultHelper)


def _vault_secrets() -> None:
    """Vault values decrypt on use, with the secrets Ansible's configuration names (as `load` does)."""
    from ansible.parsing.vault import VaultSecretsContext

    if VaultSecretsContext.current(optional=True) is None:
        loading.vault_loader()
