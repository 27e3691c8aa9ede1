"""One host's record from its Ansible variables, read as Ansible reads them on use: templates rendered
by Ansible's templar (only text Ansible trusts as a template, i.e. text from the inventory itself), and
the connection address, port and user resolved from the connection plugin's own option definitions,
so the legacy names (`ansible_ssh_host`, `ansible_ssh_port`, `ansible_ssh_user`, `ansible_winrm_host`,
...) take the precedence ansible-core gives them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestrator.inventory.model import (
    DEFAULT_TIER_BY_ROLE,
    FLEET_WIDE_VARS,
    ROLES,
    TIERS,
    WINDOWS_CONNECTIONS,
    WINRM_TRANSPORTS,
    Host,
    Problem,
)
from orchestrator.inventory.origins import first_line, value_origin

# Host record field -> the connection plugin option it comes from (the ssh plugin says `host`, the
# Windows ones `remote_addr`).
CONNECTION_OPTIONS = {"address": ("host", "remote_addr"), "port": ("port",), "user": ("remote_user",)}
_loaded_plugins: set[str] = set()


def plugin_for(connection: str) -> str:
    """The connection plugin whose options say where a host is reached. Hosts on other connections
    (local, docker, ...) are reached by the orchestrator's own checks over SSH: the ssh plugin's rules."""
    return connection if connection in WINDOWS_CONNECTIONS else "ssh"


def _option_definitions(plugin: str) -> dict[str, Any]:
    from ansible import constants as C
    from ansible.plugins.loader import connection_loader

    if plugin not in _loaded_plugins:  # loading the plugin class registers its options
        connection_loader.get(plugin, class_only=True)
        _loaded_plugins.add(plugin)
    return C.config.get_configuration_definitions(plugin_type="connection", name=plugin)


class Renderer:
    """A host's variables rendered on demand with Ansible's templar, each at most once."""

    def __init__(self, loader: Any, hv: dict[str, Any]) -> None:
        self.hv = hv
        self._loader = loader
        self._templar: Any = None
        self._done: dict[str, Any] = {}

    def get(self, var: str) -> Any:
        """The rendered value (None when unset); raises Ansible's error when it cannot render."""
        if var not in self._done:
            value = self.hv.get(var)
            if isinstance(value, str) and ("{{" in value or "{%" in value):
                if self._templar is None:
                    from ansible.template import Templar

                    self._templar = Templar(loader=self._loader, variables=self.hv)
                value = self._templar.template(value)
            self._done[var] = value
        return self._done[var]


class _Reader:
    """Reads one host's variables, collecting a problem (with the variable's file and line) for each
    value Ansible could not render or the recovery cannot use."""

    def __init__(self, name: str, renderer: Renderer) -> None:
        self.name = name
        self.renderer = renderer
        self.problems: list[Problem] = []

    def problem(self, message: str, var: str | None = None) -> None:
        hv = self.renderer.hv
        where = (value_origin(hv.get(var)) if var else None) or value_origin(hv.get("ansible_host"))
        source = hv.get("inventory_file")
        self.problems.append(
            Problem(message, host=self.name, where=where or (str(source) if source else None))
        )

    def get(self, var: str) -> Any:
        from ansible.errors import AnsibleError

        try:
            return self.renderer.get(var)
        except AnsibleError as exc:
            self.problem(f"cannot render {var}: {first_line(exc)}", var)
            return None

    def connection_option(self, plugin: str, field: str, connection_vars: dict[str, Any]) -> tuple[Any, str]:
        """(value, origin) of the option as the plugin would resolve it, from the rendered variables."""
        from ansible import constants as C
        from ansible.errors import AnsibleError

        definitions = _option_definitions(plugin)
        option = next(o for o in CONNECTION_OPTIONS[field] if o in definitions)
        try:
            return C.config.get_config_value_and_origin(
                option, plugin_type="connection", plugin_name=plugin, variables=connection_vars
            )
        except AnsibleError:
            names = [v["name"] for v in definitions[option].get("vars", []) if v["name"] in connection_vars]
            var = names[-1] if names else option
            self.problem(f"invalid {var} {connection_vars.get(var)!r}", var)
            return None, "invalid"

    def connection_vars(self, plugin: str) -> dict[str, Any]:
        """The variables the plugin's address, port and user options read, rendered."""
        definitions = _option_definitions(plugin)
        names = {
            v["name"]
            for field in CONNECTION_OPTIONS.values()
            for option in field
            for v in definitions.get(option, {}).get("vars", [])
        }
        found = {"inventory_hostname": self.name}
        for var in sorted(names - {"inventory_hostname"}):
            if self.renderer.hv.get(var) is not None:
                value = self.get(var)
                if value is not None and value != "":
                    found[var] = value
        return found


def host_from_vars(
    name: str, hv: dict[str, Any], group_names: list[str], loader: Any
) -> tuple[Host, list[Problem]]:
    reader = _Reader(name, Renderer(loader, hv))
    problem, get = reader.problem, reader.get

    groups = [g for g in group_names if g not in ("all", "ungrouped")]
    connection = str(get("ansible_connection") or "ssh")
    is_windows = connection in WINDOWS_CONNECTIONS or "windows" in groups

    role = str(
        get("recovery_role") or ("workstation" if any("workstation" in g for g in groups) else "server")
    )
    if role not in ROLES:
        problem(f"invalid recovery_role {role!r} (expected one of: {', '.join(ROLES)})", "recovery_role")
    raw_tier = get("recovery_tier")
    tier = DEFAULT_TIER_BY_ROLE.get(role, 2) if raw_tier is None else _as_int(raw_tier)
    if tier is None or tier not in TIERS:
        problem(f"invalid recovery_tier {raw_tier!r} (expected 0, 1, 2 or 3)", "recovery_tier")
        tier = DEFAULT_TIER_BY_ROLE.get(role, 2)
    raw_priority = get("recovery_priority")
    priority = 100 if raw_priority is None else _as_int(raw_priority)
    if priority is None:
        problem(f"invalid recovery_priority {raw_priority!r} (expected an integer)", "recovery_priority")
        priority = 100
    raw_protected = get("recovery_protected")
    protected = _as_bool(False if raw_protected is None else raw_protected)
    if protected is None:
        problem(
            f"invalid recovery_protected {raw_protected!r} (expected true or false)", "recovery_protected"
        )
        protected = True  # when in doubt, never wipe

    plugin = plugin_for(connection)
    connection_vars = reader.connection_vars(plugin)
    address, _ = reader.connection_option(plugin, "address", connection_vars)
    port, port_origin = reader.connection_option(plugin, "port", connection_vars)
    if port_origin == "default":  # the transport picks the protocol's port (22, 5985/5986 by scheme)
        port = None
    elif port is not None and not 0 < port < 65536:
        problem(f"invalid port {port!r}", "ansible_port")
        port = None
    user, _ = reader.connection_option(plugin, "user", connection_vars)

    if is_windows:
        if connection not in WINDOWS_CONNECTIONS:
            problem(
                f"Windows host (group 'windows') with ansible_connection {connection!r}: set it to winrm",
                "ansible_connection",
            )
        transport = get("ansible_winrm_transport")
        if connection == "winrm" and not transport:
            problem(
                "Windows host without WinRM settings: set ansible_winrm_transport (ntlm, kerberos, "
                "credssp or basic)"
            )
        elif connection == "winrm" and any(t.strip() not in WINRM_TRANSPORTS for t in _as_list(transport)):
            problem(f"invalid ansible_winrm_transport {transport!r}", "ansible_winrm_transport")
        if not user:
            problem("Windows host without WinRM settings: set ansible_user")

    def text(var: str) -> str | None:
        value = get(var)
        return str(value) if value not in (None, "") else None

    host = Host(
        name=name,
        address=str(address or name),
        port=port,
        user=str(user) if user else None,
        connection=connection,
        os="windows" if is_windows else "linux",
        tier=tier,
        role=role,
        depends_on=_as_list(get("recovery_depends_on")),
        depends_on_hosts=[],
        protected=protected,
        site=text("recovery_site"),
        reimage_method=text("recovery_reimage_method"),
        restore_method=text("recovery_restore_method"),
        priority=priority,
        groups=groups,
        data_categories=_as_list(get("recovery_data_categories")),
        execution_node=text("recovery_execution_node"),
        vars={k: v for k, v in hv.items() if k not in FLEET_WIDE_VARS},
    )
    return host, reader.problems


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
