"""WinRM (pywinrm) for Windows hosts: PowerShell over WS-Management with the inventory's Ansible winrm
settings, bounded in time and size by winrm_http's guard against a hostile endpoint.
"""

from __future__ import annotations

import contextlib
from typing import Any

from orchestrator.inventory import Host
from orchestrator.triage.transports import winrm_http
from orchestrator.triage.transports.base import (
    MAX_STDERR,
    MAX_STDOUT,
    Deadline,
    HostVars,
    TransportError,
    resolve,
)

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
