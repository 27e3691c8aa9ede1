"""How a check script reaches a host and its output comes back: one interface, `run(script, timeout)`,
over SSH (paramiko) for Linux and WinRM (pywinrm) for Windows.

Every phase (name resolution, TCP connect, banner, key exchange, authentication, the command itself)
is bounded by one per-host deadline, so a host whose sshd was stopped with SIGSTOP costs its timeout
and no more. Failures are raised as `TransportError` with a kind that says what went wrong, because
"refused", "timed out", "no such name", "wrong key" and "host key changed" each call for a different
action from the operator.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paramiko

from orchestrator.inventory import FLEET_WIDE_VARS, SECRET_VARS, Host, ansible_value
from orchestrator.triage import winrm_http

# paramiko logs a traceback from its reader thread when we close a connection that timed out; the
# reason is already in the verdict, so its log records go nowhere unless the caller configures logging.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

# Kinds of failure, and the verdict each one gives the host.
UNREACHABLE_KINDS = ("refused", "timeout", "dns", "unreachable")
ERROR_KINDS = ("auth", "hostkey_changed", "hostkey_unknown", "tls", "command_failed", "command_timeout")
HOSTKEY_CHANGED = "host key changed: possible interception"
MAX_STDOUT = 8 * 1024 * 1024
MAX_STDERR = 64 * 1024
CONNECT_TIMEOUT = 10.0
# Variables Ansible sets itself on every host: never a secret of the operator's.
MAGIC_VARS = FLEET_WIDE_VARS | {
    "group_names",
    "inventory_dir",
    "inventory_file",
    "inventory_hostname",
    "inventory_hostname_short",
    "playbook_dir",
    "ansible_playbook_python",
    "ansible_config_file",
    "ansible_version",
    "ansible_facts",
    "omit",
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TransportError(Exception):
    """A host could not be checked; `kind` is one of UNREACHABLE_KINDS or ERROR_KINDS."""

    def __init__(self, kind: str, reason: str, stdout: str = "") -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.stdout = stdout  # what a command printed before it failed or timed out

    @property
    def verdict(self) -> str:
        return "unreachable" if self.kind in UNREACHABLE_KINDS else "error"


class Transport(Protocol):
    def run(self, script: str, timeout: float) -> tuple[int, str, str]:
        """Run one script; return (exit code, stdout, stderr) or raise TransportError."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(self.end - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return time.monotonic() >= self.end


# --- Inventory variables --------------------------------------------------------------------------


class HostVars:
    """A host's Ansible variables, templated on use (`{{ lookup('env', 'X') }}` resolves like Ansible's
    own), so a password is only ever held in memory, for the connection that needs it."""

    def __init__(self, host: Host) -> None:
        self._vars = host.vars
        self._templar: Any = None

    def get(self, *names: str) -> Any:
        for name in names:
            value = self._vars.get(name)
            if value is None or value == "":
                continue
            if isinstance(value, str) and "{{" in value:
                value = self._template(value)
            if value is not None and value != "":
                return value
        return None

    def _template(self, value: str) -> Any:
        if self._templar is None:
            from ansible.parsing.dataloader import DataLoader
            from ansible.template import Templar

            self._templar = Templar(loader=DataLoader(), variables=ansible_value(self._vars))
        return self._templar.template(ansible_value(value))

    def secret_names(self) -> list[str]:
        """The variables that can hold a secret: the connection passwords, and any name that says so
        (Ansible's magic variables never do, and `groups` alone is as large as the fleet)."""
        from orchestrator.store.audit import SECRET_NAME

        return [
            name
            for name in self._vars
            if name not in MAGIC_VARS and (name in SECRET_VARS or SECRET_NAME.search(str(name)))
        ]

    def secrets(self, only: Iterable[str] | None = None) -> set[str]:
        """The values of this host's secret variables (templated), to scrub from anything stored."""
        found: set[str] = set()
        names = set(self.secret_names())
        for name in names if only is None else [n for n in only if n in names]:
            try:
                value = self.get(name)
            except Exception:  # an unresolvable template cannot leak its value
                continue
            if isinstance(value, str | int) and str(value):
                found.add(str(value))
        return found

    def render_key(self, name: str) -> tuple[str, ...]:
        """Everything the templated value of `name` depends on: its raw text and, for a template, the
        raw text of each variable of this host it names, followed transitively. Two variables with
        equal keys render to the same value, so a run templates each distinct value once, not once
        per host (a fleet's password usually comes from one group_vars file)."""
        key: list[str] = [repr(self._vars.get(name))]
        pending = [self._vars.get(name)]
        seen = {name}
        while pending:
            value = pending.pop()
            if not (isinstance(value, str) and "{{" in value):
                continue
            for word in sorted(set(_IDENTIFIER.findall(value)) - seen):
                if word in self._vars and word not in FLEET_WIDE_VARS:
                    seen.add(word)
                    key.append(f"{word}={self._vars[word]!r}")
                    pending.append(self._vars[word])
        return tuple(key)


# --- Host keys -----------------------------------------------------------------------------------


def known_hosts_files(hv: HostVars) -> list[Path]:
    """The files OpenSSH would read for this host: `-o UserKnownHostsFile=...` from the inventory's
    ssh args (as Ansible passes them), else the user's ~/.ssh/known_hosts; plus the system file."""
    for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_ssh_args"):
        files = _user_known_hosts(str(hv.get(var) or ""))
        if files:
            return files
    return [Path("~/.ssh/known_hosts").expanduser(), Path("/etc/ssh/ssh_known_hosts")]


def _user_known_hosts(args: str) -> list[Path]:
    try:
        words = shlex.split(args)
    except ValueError:
        return []
    options: list[str] = []
    for i, word in enumerate(words):
        if word == "-o" and i + 1 < len(words):
            options.append(words[i + 1])
        elif word.startswith("-o") and len(word) > 2:
            options.append(word[2:])
    for option in options:
        key, _, value = option.replace("=", " ", 1).partition(" ")
        if key.strip().lower() == "userknownhostsfile" and value.strip():
            return [Path(v).expanduser() for v in value.split()]
    return []


class KnownHosts:
    """known_hosts files, each parsed once per run and shared by every connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[Path, paramiko.HostKeys] = {}

    def keys_for(self, files: list[Path], address: str, port: int) -> dict[str, paramiko.PKey]:
        name = address if port == 22 else f"[{address}]:{port}"
        found: dict[str, paramiko.PKey] = {}
        for path in files:
            entry = self._load(path).lookup(name)
            if entry:
                for key_type in entry:
                    found.setdefault(key_type, entry[key_type])
        return found

    def _load(self, path: Path) -> paramiko.HostKeys:
        with self._lock:
            if path not in self._files:
                keys = paramiko.HostKeys()
                if path.is_file():
                    keys.load(str(path))
                self._files[path] = keys
            return self._files[path]


class PrivateKeys:
    """Private keys loaded once per run (parsing and decrypting a key is not free)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str | None], paramiko.PKey] = {}

    def load(self, path: str, passphrase: str | None) -> paramiko.PKey:
        with self._lock:
            cache_key = (path, passphrase)
            if cache_key not in self._keys:
                self._keys[cache_key] = paramiko.PKey.from_path(path, password=passphrase)
            return self._keys[cache_key]


@dataclass
class SSHOptions:
    """What every SSH connection of a run shares."""

    trust_new_keys: bool = False
    known_hosts: KnownHosts = field(default_factory=KnownHosts)
    private_keys: PrivateKeys = field(default_factory=PrivateKeys)
    _defaults: list[paramiko.PKey] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def default_keys(self) -> list[paramiko.PKey]:
        """The keys OpenSSH would offer when the inventory names none: the agent's, then
        ~/.ssh/id_ed25519, id_ecdsa, id_rsa (unencrypted ones). Listed once per run."""
        with self._lock:
            if self._defaults is None:
                keys: list[paramiko.PKey] = []
                if os.environ.get("SSH_AUTH_SOCK"):
                    with contextlib.suppress(paramiko.SSHException, OSError):
                        keys.extend(paramiko.Agent().get_keys())
                for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
                    path = Path("~/.ssh").expanduser() / name
                    if path.is_file():
                        with contextlib.suppress(paramiko.SSHException, ValueError, OSError):
                            keys.append(self.private_keys.load(str(path), None))
                self._defaults = keys
            return self._defaults


def _quickack_socket(sock: socket.socket) -> Any:
    """The socket, acknowledging every segment at once.

    After login sshd sends an unsolicited `hostkeys-00@openssh.com` notice that paramiko never answers;
    with delayed ACKs sshd's next packet then waits ~40 ms for our acknowledgement (perf-notes.md).
    TCP_QUICKACK is reset by the kernel, so it is set again after each read.
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is None:
        return sock

    class _Socket:
        def recv(self, n: int) -> bytes:
            data = sock.recv(n)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
            return data

        def __getattr__(self, name: str) -> Any:
            return getattr(sock, name)

    return _Socket()


# --- SSH ------------------------------------------------------------------------------------------


def resolve(address: str, port: int, deadline: Deadline) -> tuple[Any, ...]:
    """The address (an IP, or a name as the inventory gives it), looked up within the deadline: the
    system resolver has no timeout of its own, so the lookup runs on a helper thread and a resolver
    that hangs costs the host its timeout, not the run."""
    answer: list[Any] = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(address, port, type=socket.SOCK_STREAM))
        except (socket.gaierror, UnicodeError, OSError) as exc:
            answer.append(exc)

    worker = threading.Thread(target=lookup, name=f"resolve-{address}", daemon=True)
    worker.start()
    worker.join(deadline.left())
    if not answer or deadline.expired():
        raise TransportError("timeout", f"timeout: resolving {address!r} took over {deadline.seconds:g}s")
    if isinstance(answer[0], BaseException):
        raise TransportError("dns", f"DNS failure: cannot resolve {address!r} ({answer[0]})")
    return answer[0][0]


def connect(address: str, port: int, deadline: Deadline) -> socket.socket:
    family, kind, proto, _, sockaddr = resolve(address, port, deadline)
    sock = socket.socket(family, kind, proto)
    sock.settimeout(min(CONNECT_TIMEOUT, max(deadline.left(), 0.01)))
    try:
        sock.connect(sockaddr)
    except ConnectionRefusedError:
        sock.close()
        raise TransportError("refused", f"connection refused by {address}:{port}") from None
    except TimeoutError:
        sock.close()
        raise TransportError("timeout", f"timeout: no TCP connection to {address}:{port}") from None
    except OSError as exc:
        sock.close()
        raise TransportError(
            "unreachable", f"cannot connect to {address}:{port}: {exc.strerror or exc}"
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class SSHTransport:
    """One connection, one command, per host."""

    def __init__(self, host: Host, options: SSHOptions) -> None:
        self.host = host
        self.options = options
        self.vars = HostVars(host)
        self.port = host.port or 22
        # The inventory resolved the user as Ansible's ssh plugin does (ansible_ssh_user wins).
        self.user = host.user or getpass.getuser()
        self.new_key: str | None = None  # fingerprint of a key accepted with --trust-new-keys

    def run(self, script: str, timeout: float) -> tuple[int, str, str]:
        deadline = Deadline(timeout)
        sock = connect(self.host.address, self.port, deadline)
        transport = paramiko.Transport(_quickack_socket(sock))
        try:
            self._handshake(transport, deadline)
            self._authenticate(transport, deadline)
            command, stdin = self._become(script)
            return self._execute(transport, command, stdin, deadline)
        finally:
            transport.close()
            sock.close()

    def _become(self, script: str) -> tuple[str, str | None]:
        """The command line, and what it reads on stdin: the script itself, or under sudo when the
        inventory says `ansible_become` (a non-root login cannot read /root or other users' homes)."""
        become = str(self.vars.get("ansible_become") or "").strip().lower() in ("1", "true", "yes", "on")
        if not become:
            return script, None
        method = str(self.vars.get("ansible_become_method") or "sudo")
        if method != "sudo":
            raise TransportError(
                "command_failed", f"command failed: become method {method!r} is not supported (use sudo)"
            )
        user = shlex.quote(str(self.vars.get("ansible_become_user") or "root"))
        password = self.vars.get("ansible_become_password", "ansible_become_pass")
        prompt = "-S -p ''" if password else "-n"
        return f"sudo {prompt} -H -u {user} -- /bin/sh -c {shlex.quote(script)}", (
            f"{password}\n" if password else None
        )

    def _handshake(self, transport: paramiko.Transport, deadline: Deadline) -> None:
        files = known_hosts_files(self.vars)
        known = self.options.known_hosts.keys_for(files, self.host.address, self.port)
        if known:
            # Ask for a key type we know, as OpenSSH does, so a host with several keys is not
            # mistaken for a changed one.
            ours = [t for t in transport.get_security_options().key_types if _base_type(t) in known]
            if ours:
                transport.get_security_options().key_types = ours
        transport.banner_timeout = transport.handshake_timeout = max(deadline.left(), 0.01)
        try:
            transport.start_client(timeout=max(deadline.left(), 0.01))
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._handshake_error(transport, exc, deadline) from None
        if transport.host_key is None:  # start_client returns quietly when its timeout expires
            raise self._handshake_error(transport, TimeoutError(), deadline)
        key = transport.get_remote_server_key()
        expected = known.get(key.get_name())
        if expected is not None and expected == key:
            return
        if known:
            raise TransportError("hostkey_changed", HOSTKEY_CHANGED)
        fingerprint = f"{key.get_name()} SHA256:{key.fingerprint.split(':', 1)[-1]}"
        if not self.options.trust_new_keys:
            where = ", ".join(str(f) for f in files)
            raise TransportError(
                "hostkey_unknown", f"host key unknown: {self.host.address} is not in {where}"
            )
        self.new_key = fingerprint

    def _handshake_error(
        self, transport: paramiko.Transport, exc: BaseException, deadline: Deadline
    ) -> TransportError:
        text = str(exc)
        if deadline.expired() or "timeout" in text.lower() or isinstance(exc, TimeoutError):
            stage = "no SSH banner" if not transport.remote_version else "SSH key exchange not finished"
            return TransportError("timeout", f"timeout: {stage} after {deadline.seconds:g}s (sshd hung?)")
        if "Incompatible" in text or "no acceptable" in text.lower():
            return TransportError("command_failed", f"SSH negotiation failed: {text}")
        return TransportError(
            "unreachable", f"connection closed during the SSH handshake: {text or type(exc).__name__}"
        )

    def _authenticate(self, transport: paramiko.Transport, deadline: Deadline) -> None:
        transport.auth_timeout = max(deadline.left(), 0.01)
        key_file = self.vars.get("ansible_ssh_private_key_file", "ansible_private_key_file")
        passphrase = self.vars.get("ansible_ssh_private_key_passphrase")
        # The ssh plugin's `password` option: the last of its variables that is set wins.
        password = self.vars.get("ansible_ssh_password", "ansible_ssh_pass", "ansible_password")
        tried: list[str] = []
        try:
            if key_file:
                path = os.path.expanduser(str(key_file))
                try:
                    key = self.options.private_keys.load(path, str(passphrase) if passphrase else None)
                except (OSError, paramiko.SSHException, ValueError) as exc:
                    raise TransportError(
                        "auth", f"auth failure: cannot use private key {path}: {exc}"
                    ) from None
                tried.append(f"key {path}")
                if self._try(lambda: transport.auth_publickey(self.user, key), deadline):
                    return
            if password:
                tried.append("password")
                if self._try(lambda: transport.auth_password(self.user, str(password)), deadline):
                    return
            if not key_file and not password:
                for key in self.options.default_keys():
                    tried.append(f"key {getattr(key, 'comment', '') or key.get_name()}")
                    if self._try(lambda key=key: transport.auth_publickey(self.user, key), deadline):
                        return
        except TransportError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if deadline.expired():
                raise TransportError(
                    "timeout", f"timeout: authentication not finished after {deadline.seconds:g}s"
                ) from None
            raise TransportError("auth", f"auth failure for {self.user}: {exc}") from None
        what = ", ".join(tried) if tried else "no key or password configured"
        raise TransportError("auth", f"auth failure: {self.user}@{self.host.address} refused ({what})")

    @staticmethod
    def _try(attempt: Callable[[], Any], deadline: Deadline) -> bool:
        try:
            attempt()
            return True
        except paramiko.AuthenticationException:
            return False
        except paramiko.SSHException as exc:
            if deadline.expired() or "timeout" in str(exc).lower():
                raise TransportError(
                    "timeout", f"timeout: authentication not finished after {deadline.seconds:g}s"
                ) from None
            raise

    def _execute(
        self, transport: paramiko.Transport, command: str, stdin: str | None, deadline: Deadline
    ) -> tuple[int, str, str]:
        try:
            channel = transport.open_session(timeout=max(deadline.left(), 0.01))
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin.encode())
            channel.shutdown_write()  # then EOF: nothing on the host can wait for more input
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if deadline.expired():
                raise TransportError(
                    "command_timeout", f"command timed out after {deadline.seconds:g}s"
                ) from None
            raise TransportError("command_failed", f"command failed: cannot start it: {exc}") from None
        out: list[bytes] = []
        err: list[bytes] = []
        size = 0
        try:
            while True:
                left = deadline.left()
                if left <= 0:
                    raise TimeoutError
                channel.settimeout(min(left, 0.5))
                try:
                    data = channel.recv(65536)
                except TimeoutError:
                    data = None
                while channel.recv_stderr_ready() and sum(map(len, err)) < MAX_STDERR:
                    err.append(channel.recv_stderr(65536))
                if data == b"":
                    break
                if data:
                    out.append(data)
                    size += len(data)
                    if size >= MAX_STDOUT:
                        break  # the script bounds its output; this bounds a misbehaving host
            if not channel.status_event.wait(max(deadline.left(), 0.01)) and size < MAX_STDOUT:
                raise TimeoutError
        except TimeoutError:
            partial = b"".join(out).decode("utf-8", errors="replace")
            raise TransportError(
                "command_timeout", f"command timed out after {deadline.seconds:g}s", stdout=partial
            ) from None
        while channel.recv_stderr_ready() and sum(map(len, err)) < MAX_STDERR:
            err.append(channel.recv_stderr(65536))
        rc = channel.exit_status if channel.status_event.is_set() else -1
        channel.close()
        return (
            rc,
            b"".join(out)[:MAX_STDOUT].decode("utf-8", errors="replace"),
            b"".join(err)[:MAX_STDERR].decode("utf-8", errors="replace"),
        )


def _base_type(key_type: str) -> str:
    return "ssh-rsa" if key_type.startswith("rsa-sha2-") else key_type


# --- WinRM ----------------------------------------------------------------------------------------

POWERSHELL_STDIN = "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command -"


class WinRMTransport:
    """PowerShell over WinRM with the inventory's Ansible winrm settings; HTTPS certificates are
    validated unless the inventory says `ansible_winrm_server_cert_validation: ignore`."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.vars = HostVars(host)
        self.new_key: str | None = None
        scheme = str(self.vars.get("ansible_winrm_scheme") or "").lower()
        port = host.port or (5985 if scheme == "http" else 5986)
        self.scheme = scheme or ("http" if port == 5985 else "https")
        self.port = port
        path = str(self.vars.get("ansible_winrm_path") or "/wsman")
        address = f"[{host.address}]" if ":" in host.address else host.address
        self.endpoint = f"{self.scheme}://{address}:{port}{path}"
        transports = str(self.vars.get("ansible_winrm_transport") or "ntlm").split(",")
        self.auth = transports[0].strip().lower()
        self.user = str(self.vars.get("ansible_winrm_user", "ansible_user") or "")
        self.validate = (
            str(self.vars.get("ansible_winrm_server_cert_validation") or "validate").lower() != "ignore"
        )

    def run(self, script: str, timeout: float) -> tuple[int, str, str]:
        deadline = Deadline(timeout)
        resolve(self.host.address, self.port, deadline)
        with winrm_http.Guard(deadline.left()) as guard:
            return self._run(script, deadline, guard)

    def _run(self, script: str, deadline: Deadline, guard: winrm_http.Guard) -> tuple[int, str, str]:
        import requests
        import winrm
        from winrm.exceptions import (
            InvalidCredentialsError,
            WinRMError,
            WinRMOperationTimeoutError,
            WinRMTransportError,
        )

        timeout = deadline.seconds
        # Each WinRM receive waits at most this long, so the deadline is checked at least that often;
        # the guard closes the connection at the deadline whatever the endpoint does.
        operation = max(1, min(20, int(timeout // 3)))
        password = self.vars.get("ansible_winrm_password", "ansible_password")
        protocol = winrm.Protocol(
            endpoint=self.endpoint,
            transport=self.auth,
            username=self.user,
            password=str(password) if password is not None else None,
            server_cert_validation="validate" if self.validate else "ignore",
            ca_trust_path=str(self.vars.get("ansible_winrm_ca_trust_path") or "") or None,
            read_timeout_sec=operation + 1,
            operation_timeout_sec=operation,
            kerberos_delegation=_truthy(self.vars.get("ansible_winrm_kerberos_delegation")),
            kerberos_hostname_override=self.vars.get("ansible_winrm_kerberos_hostname_override"),
            service=str(self.vars.get("ansible_winrm_service") or "HTTP"),
            message_encryption=str(self.vars.get("ansible_winrm_message_encryption") or "auto"),
            cert_pem=self.vars.get("ansible_winrm_cert_pem"),
            cert_key_pem=self.vars.get("ansible_winrm_cert_key_pem"),
        )
        winrm_http.bound(protocol, guard)
        shell = None
        try:
            shell = protocol.open_shell(codepage=65001)
            command = protocol.run_command(shell, POWERSHELL_STDIN)
            protocol.send_command_input(shell, command, script.encode("utf-8"), end=True)
            out, err, rc = self._receive(protocol, shell, command, deadline, guard)
            protocol.cleanup_command(shell, command)
            return rc, out, err
        except TransportError:
            raise
        except Exception as exc:
            if guard.fired or isinstance(exc, winrm_http.DeadlineExpired):
                raise TransportError(
                    "timeout", f"timeout: {self.endpoint} did not finish within {timeout:g}s"
                ) from None
            if isinstance(exc, winrm_http.ResponseTooLarge | winrm_http.RedirectRefused):
                raise TransportError("command_failed", f"command failed: {exc}") from None
            if isinstance(exc, InvalidCredentialsError):
                raise TransportError(
                    "auth", f"auth failure: {self.user} refused by {self.endpoint} ({_first_line(exc)})"
                ) from None
            if isinstance(exc, requests.exceptions.SSLError):
                raise TransportError(
                    "tls", f"TLS certificate not trusted for {self.endpoint}: {_first_line(exc)}"
                ) from None
            if isinstance(exc, requests.exceptions.ConnectTimeout):
                raise TransportError(
                    "timeout", f"timeout: no TCP connection to {self.host.address}:{self.port}"
                ) from None
            if isinstance(exc, requests.exceptions.ReadTimeout):
                raise TransportError(
                    "timeout", f"timeout: {self.endpoint} did not answer within {timeout:g}s"
                ) from None
            if isinstance(exc, requests.exceptions.ConnectionError):
                if "refused" in str(exc).lower():
                    raise TransportError(
                        "refused", f"connection refused by {self.host.address}:{self.port}"
                    ) from None
                raise TransportError(
                    "unreachable", f"cannot connect to {self.endpoint}: {_first_line(exc)}"
                ) from None
            if self.auth == "kerberos" and "not installed" in str(exc):
                raise TransportError(
                    "auth",
                    "auth failure: ansible_winrm_transport is kerberos but Kerberos support is not "
                    "installed (pip install 'recovery-orchestrator[kerberos]'; then kinit)",
                ) from None
            if isinstance(exc, WinRMOperationTimeoutError | WinRMTransportError | WinRMError):
                raise TransportError(
                    "command_failed", f"command failed: WinRM error: {_first_line(exc)}"
                ) from None
            if isinstance(exc, requests.exceptions.RequestException | ValueError | OSError):
                # A malformed answer (bad XML, broken chunking, a reset): the host is not WinRM-sane.
                raise TransportError(
                    "command_failed", f"command failed: bad WinRM answer: {_first_line(exc)}"
                ) from None
            raise
        finally:
            if shell is not None and not guard.fired:
                # The verdict is already decided; a failed goodbye changes nothing.
                with contextlib.suppress(Exception):
                    protocol.close_shell(shell)

    @staticmethod
    def _receive(
        protocol: Any, shell: str, command: str, deadline: Deadline, guard: winrm_http.Guard
    ) -> tuple[str, str, int]:
        from winrm.exceptions import WinRMOperationTimeoutError

        out: list[bytes] = []
        err = bytearray()
        size = 0
        while True:
            try:
                if deadline.expired():
                    raise winrm_http.DeadlineExpired
                try:
                    stdout, stderr, rc, done = protocol.get_command_output_raw(shell, command)
                except WinRMOperationTimeoutError:
                    continue  # the command is still running: WinRM's long poll expired, ask again
            except Exception as exc:
                if not (guard.fired or isinstance(exc, winrm_http.DeadlineExpired)):
                    raise
                partial = b"".join(out).decode("utf-8", errors="replace")
                raise TransportError(
                    "command_timeout", f"command timed out after {deadline.seconds:g}s", partial
                ) from None
            out.append(stdout)
            size += len(stdout)
            err += stderr[: max(MAX_STDERR - len(err), 0)]
            if size > MAX_STDOUT or done:
                break
        stderr_text = err.decode("utf-8", errors="replace")
        if stderr_text.startswith("#< CLIXML"):
            stderr_text = _clixml_text(stderr_text)
        return b"".join(out)[:MAX_STDOUT].decode("utf-8", errors="replace"), stderr_text, rc


def _truthy(value: Any) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def _clixml_text(text: str) -> str:
    """PowerShell's error stream as plain text (it arrives as CLIXML with -EncodedCommand)."""
    import re
    import xml.etree.ElementTree as ET

    body = text.split("\n", 1)[-1] if "\n" in text else text
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return text
    parts = [el.text or "" for el in root.iter() if el.tag.endswith("}S") and el.get("S") == "Error"]
    joined = "".join(parts)
    return re.sub(r"_x([0-9A-F]{4})_", lambda m: chr(int(m.group(1), 16)), joined)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def login_key_fingerprints(hosts: list[Host], options: SSHOptions) -> set[str]:
    """SHA256 fingerprints of the public halves of the keys the run logs in with: the inventory's key
    files, and the agent's and default keys for hosts that name none."""
    found: set[str] = set()
    done: set[str] = set()
    for host in hosts:
        hv = HostVars(host)
        key_file = hv.get("ansible_ssh_private_key_file", "ansible_private_key_file")
        if not key_file:
            found.update(key.fingerprint for key in options.default_keys())
            continue
        if str(key_file) in done:
            continue
        done.add(str(key_file))
        path = os.path.expanduser(str(key_file))
        try:
            passphrase = hv.get("ansible_ssh_private_key_passphrase")
            key = options.private_keys.load(path, str(passphrase) if passphrase else None)
        except (OSError, paramiko.SSHException, ValueError):
            continue  # the connection will report the unusable key
        found.add(key.fingerprint)
    return found


def for_host(host: Host, ssh_options: SSHOptions) -> SSHTransport | WinRMTransport:
    if host.connection in ("winrm", "psrp"):
        return WinRMTransport(host)
    return SSHTransport(host, ssh_options)


__all__ = [
    "HOSTKEY_CHANGED",
    "HostVars",
    "SSHOptions",
    "SSHTransport",
    "Transport",
    "TransportError",
    "WinRMTransport",
    "for_host",
]
