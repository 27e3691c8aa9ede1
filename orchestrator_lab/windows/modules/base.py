"""What every emulated module shares: its arguments checked as Ansible.Basic checks them, and its result.

A real Windows module validates its arguments on the host (Ansible.Basic: types, defaults, choices,
aliases, unsupported parameters), so the stand-in must too, or a typo in a playbook would pass on the lab
and fail in production. The specification is read from the module's own documentation in the installed
collection (ansible-test keeps it identical to the module's `$spec`), through Ansible's documentation
reader and argument validator: nothing to keep in sync here.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator_lab.windows.hoststate import expand_env

if TYPE_CHECKING:
    from orchestrator_lab.windows.commands import Session

REHEARSE = "rehearse on the Vagrant lab"


class Fail(Exception):
    """The module's FailJson: a failed result with a message and whatever it had gathered."""

    def __init__(self, msg: str, **result: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result


@dataclass
class Call:
    """One module run: checked parameters, check mode, the host, and the result being built."""

    module: str  # FQCN
    params: dict[str, Any]
    check_mode: bool
    session: Session
    result: dict[str, Any] = field(default_factory=lambda: {"changed": False})
    args: dict[str, Any] = field(default_factory=dict)  # as sent: an action plugin's private `_` options too

    @property
    def short_name(self) -> str:
        return self.module.rsplit(".", 1)[-1]

    def warn(self, message: str) -> None:
        self.result.setdefault("warnings", []).append(message)

    def expand(self, value: str) -> str:
        """Ansible.Basic's `path` type: environment variables expanded as Windows does (%NAME%)."""
        return expand_env(value, self.session.env)


@dataclass(frozen=True)
class Emulator:
    """How the stand-in answers one module. `not_emulated`: options it refuses (when set to anything but
    their default) rather than ignores.
    `strict`: Ansible.Basic modules reject unknown options; legacy (Parse-Args) modules ignore them."""

    run: Callable[[Call], None]
    not_emulated: tuple[str, ...] = ()
    strict: bool = True


def not_emulated(subject: str) -> str:
    """The failure message for what the stand-in does not answer: `subject` names it ("module X")."""
    return f"{subject} is not emulated by the lab's Windows stand-in: {REHEARSE}"


@functools.cache
def argument_spec(module: str) -> tuple[dict[str, dict[str, Any]], frozenset[str]]:
    """(argument spec, names of `path` options) from the module's documentation in its collection."""
    from ansible.parsing.plugin_docs import read_docstring

    namespace, collection, name = module.split(".")
    package = f"ansible_collections.{namespace}.{collection}.plugins.modules"
    doc = read_docstring(str(importlib.resources.files(package) / f"{name}.py"))["doc"] or {}
    spec: dict[str, dict[str, Any]] = {}
    paths = set()
    for option, meta in (doc.get("options") or {}).items():
        spec[option] = {
            k: meta[k] for k in ("required", "default", "choices", "aliases", "elements") if k in meta
        }
        kind = meta.get("type", "str")
        if kind == "path":  # Windows paths: no POSIX ~ or $VAR expansion; Call.expand does %VAR%
            paths.add(option)
            kind = "str"
        spec[option]["type"] = kind
    return spec, frozenset(paths)


def check_arguments(module: str, args: dict[str, Any], emulator: Emulator) -> dict[str, Any]:
    """The module's parameters with defaults applied, or Fail with Ansible.Basic's kind of message."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    spec, _paths = argument_spec(module)
    sent = {k: v for k, v in args.items() if not k.startswith("_ansible_")}
    names = {alias: option for option, meta in spec.items() for alias in [option, *meta.get("aliases", [])]}
    checked = sent if emulator.strict else {k: v for k, v in sent.items() if k in names}
    result = ArgumentSpecValidator(spec).validate(checked)
    if result.error_messages:
        short = module.rsplit(".", 1)[-1]
        messages = [
            f"Unsupported parameters for ({short}) module: {m}" if "Supported parameters include" in m else m
            for m in result.error_messages
        ]
        raise Fail("; ".join(messages))
    params = {option: result.validated_parameters.get(option) for option in spec}
    for option in emulator.not_emulated:  # undocumented ones (a legacy module's extras) as sent
        if params.get(option, sent.get(option)) not in (None, spec.get(option, {}).get("default")):
            raise Fail(not_emulated(f"option {option} of module {module}"))
    return params
