"""SSH (paramiko) for Linux hosts: one connection, one command, per host; every phase (TCP connect,
banner, key exchange, authentication, the command) bounded by the host's deadline. Host keys are
checked against the files OpenSSH would read, so "host key changed" is told apart from "unknown".
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shlex
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from orchestrator.inventory import Host
from orchestrator.triage.transports.base import (
    CONNECT_TIMEOUT,
    HOSTKEY_CHANGED,
    MAX_STDERR,
    MAX_STDOUT,
    Deadline,
    HostVars,
    TransportError,
    resolve,
)

# paramiko logs a traceback from its reader thread when we close a connection that timed out; the
# reason is already in the verdict, so its log records go nowhere unless the caller configures logging.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

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
