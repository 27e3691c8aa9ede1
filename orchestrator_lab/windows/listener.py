"""HTTP side of the stand-in: the WinRM listener's authentication and MS-WSMV message encryption.

Authentication follows HTTP.sys + WinRM: a request without credentials gets 401 with one
`WWW-Authenticate` header per enabled scheme (Negotiate, Basic realm="WSMAN"); Basic is checked on every
request; Negotiate/NTLM is a three-leg handshake whose context belongs to the TCP connection, so later
requests on that connection are authenticated without a header, and a new connection must authenticate
again. The acceptor is pyspnego's (the library pywinrm's own client uses), reading accounts from an
NTLM_USER_FILE, so the NTLMv2 proof, session key and sealing are computed by a real implementation, not
faked. After NTLM, bodies are `multipart/encrypted` (application/HTTP-SPNEGO-session-encrypted): a
4-byte signature length, the 16-byte NTLM signature and the RC4-sealed SOAP message.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import socket
import struct
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import spnego
from spnego.exceptions import SpnegoError

from orchestrator_lab.windows import soap
from orchestrator_lab.windows.shells import Host

log = logging.getLogger("orchestrator_lab.windows")

ENCRYPTED_PROTOCOL = b"application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
SOAP_TYPE = "application/soap+xml;charset=UTF-8"


@dataclass
class Credentials:
    """Local accounts of the stand-in hosts and the listener's service settings (winrm/config/service)."""

    users: dict[str, str] = field(default_factory=dict)
    basic: bool = True
    ntlm: bool = True
    allow_unencrypted: bool = True

    @classmethod
    def load(cls, path: Path) -> Credentials:
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            users={u["username"]: u["password"] for u in data.get("users", [])},
            basic=bool(data.get("basic", True)),
            ntlm=bool(data.get("ntlm", True)),
            allow_unencrypted=bool(data.get("allow_unencrypted", True)),
        )

    def account(self, principal: str, host: Host) -> str | None:
        """The local account a `DOMAIN\\user`, `user@domain` or `user` name refers to on this host."""
        domain, _, user = principal.rpartition("\\")
        if "@" in user and not domain:
            user, _, domain = user.partition("@")
        if domain and domain.casefold() not in (".", host.name.casefold(), "workgroup", "localhost"):
            return None
        return next((u for u in self.users if u.casefold() == user.casefold()), None)


def ntlm_user_lines(credentials: Credentials, hostnames: list[str]) -> str:
    """NTLM_USER_FILE lines (`DOMAIN:USER:PASSWORD`) for each account under every name Windows accepts for
    a local account: no domain, `.`, the computer name, WORKGROUP."""
    domains = ["", ".", "WORKGROUP", *sorted({h.upper() for h in hostnames})]
    return "".join(f"{d}:{u}:{p}\n" for u, p in credentials.users.items() for d in domains)


class WSManServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: Host, credentials: Credentials) -> None:
        self.host = host
        self.credentials = credentials
        super().__init__((host.address, host.port), WSManHandler)


class WSManHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: WSManServer

    def version_string(self) -> str:
        return "Microsoft-HTTPAPI/2.0"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.context: Any = None  # the connection's NTLM/SPNEGO acceptor context
        self.ntlm_user: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    # -- HTTP ------------------------------------------------------------------------------------------
    def do_POST(self) -> None:
        started = time.monotonic()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0].rstrip("/").lower() != "/wsman":
            self._send(404, b"", {})
            return
        user = self._authenticate()
        if user is None:
            return
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.lower().startswith("multipart/encrypted")
        if encrypted:
            if self.context is None:
                self._send(400, b"", {})
                return
            try:
                message = self._decrypt(body, content_type)
            except (SpnegoError, ValueError) as exc:
                log.warning("%s: cannot decrypt message: %s", self.server.host.name, exc)
                self._send(400, b"", {})
                return
        elif content_type.lower().startswith("multipart/x-multi-encrypted"):
            self._send(400, b"", {})  # CredSSP: not offered by the stand-in
            return
        else:
            if body and not self.server.credentials.allow_unencrypted:
                self._challenge()
                return
            message = body
        if not message:
            self._send(200, b"", {})  # pywinrm's empty POST that sets up the encryption context
            return
        status, reply = self._dispatch(message, user)
        if encrypted:
            payload, headers = self._encrypt(reply)
        else:
            payload, headers = reply, {"Content-Type": SOAP_TYPE}
        self._send(status, payload, headers)
        log.debug(
            "%s %s %d in %.1f ms", self.server.host.name, user, status, (time.monotonic() - started) * 1000
        )

    def _dispatch(self, message: bytes, user: str) -> tuple[int, bytes]:
        host = self.server.host
        relates_to = ""
        try:
            request = soap.parse(message)
            relates_to = request.message_id
            return 200, host.handle(request, user)
        except soap.Fault as fault:
            return 500, soap.fault_envelope(fault, relates_to, host.name)
        except (
            Exception
        ) as exc:  # the stand-in must answer with a fault, as WinRM does, not drop the connection
            log.exception("%s: internal error", host.name)
            fault = soap.Fault(
                "w:InternalError", f"The lab's Windows stand-in failed: {exc}", 2150858751, sender=False
            )
            return 500, soap.fault_envelope(fault, relates_to, host.name)

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers.items() if isinstance(headers, dict) else headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    # -- authentication --------------------------------------------------------------------------------
    def _challenge(self, token: str | None = None, scheme: str = "Negotiate") -> None:
        creds = self.server.credentials
        if token:
            headers = [("WWW-Authenticate", f"{scheme} {token}")]
        else:
            headers = [("WWW-Authenticate", "Negotiate")] if creds.ntlm else []
            if creds.basic:
                headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._send(401, b"", headers)

    def _authenticate(self) -> str | None:
        """The account this request runs as, or None after answering 401."""
        header = self.headers.get("Authorization")
        creds = self.server.credentials
        if not header:
            if self.ntlm_user is not None:
                return self.ntlm_user
            self._challenge()
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "basic" and creds.basic:
            return self._basic(token.strip())
        if scheme.lower() in ("negotiate", "ntlm") and creds.ntlm:
            return self._negotiate(scheme, token.strip())
        self._challenge()
        return None

    def _basic(self, token: str) -> str | None:
        host, creds = self.server.host, self.server.credentials
        try:
            name, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            name, password = "", ""
        account = creds.account(name, host)
        if account is None or creds.users[account] != password or account not in host.users:
            log.info("%s: Basic authentication refused for %r", host.name, name)
            self._challenge()
            return None
        if not creds.allow_unencrypted:
            self._challenge()
            return None
        return account

    def _negotiate(self, scheme: str, token: str) -> str | None:
        host, creds = self.server.host, self.server.credentials
        try:
            data = base64.b64decode(token, validate=True)
        except binascii.Error:
            self._challenge()
            return None
        first_leg = data.startswith(b"NTLMSSP\x00\x01") or data[:1] == b"\x60"
        if first_leg or self.context is None or self.context.complete:
            self.context = spnego.server(protocol="negotiate")
            self.ntlm_user = None
        try:
            out = self.context.step(data)
        except SpnegoError as exc:
            log.info("%s: %s authentication refused: %s", host.name, scheme, exc)
            self.context = None
            self._challenge()
            return None
        if not self.context.complete:
            self._challenge(base64.b64encode(out or b"").decode(), scheme)
            return None
        account = creds.account(self.context.client_principal or "", host)
        if account is None or account not in host.users:
            log.info("%s: %s account %r not allowed here", host.name, scheme, self.context.client_principal)
            self.context = None
            self._challenge()
            return None
        self.ntlm_user = account
        return account

    # -- MS-WSMV 2.2.9.1.1 encryption ------------------------------------------------------------------
    def _decrypt(self, body: bytes, content_type: str) -> bytes:
        m = re.search(r'boundary="?([^";]+)"?', content_type)
        boundary = b"--" + (m.group(1).encode() if m else b"Encrypted Boundary")
        parts = [p for p in body.split(boundary + b"\r\n") if p]
        message = b""
        for header, payload in zip(parts[0::2], parts[1::2], strict=False):
            length = re.search(rb"Length=(\d+)", header)
            if not length:
                raise ValueError("encrypted part without OriginalContent length")
            if payload.endswith(boundary + b"--\r\n"):
                payload = payload[: -len(boundary + b"--\r\n")]
            prefix = b"\tContent-Type: application/octet-stream\r\n"
            if not payload.startswith(prefix):
                raise ValueError("encrypted part without application/octet-stream header")
            blob = payload[len(prefix) :]
            (sig_len,) = struct.unpack("<I", blob[:4])
            plain = self.context.unwrap(blob[4 : 4 + sig_len] + blob[4 + sig_len :]).data
            if len(plain) != int(length.group(1)):
                raise ValueError("decrypted length does not match OriginalContent")
            message += plain
        return message

    def _encrypt(self, message: bytes) -> tuple[bytes, dict[str, str]]:
        wrapped = self.context.wrap(message, encrypt=True).data
        signature, sealed = wrapped[:16], wrapped[16:]
        payload = (
            BOUNDARY + b"\r\n"
            b"\tContent-Type: " + ENCRYPTED_PROTOCOL + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(message)).encode()
            + b"\r\n"
            + BOUNDARY
            + b"\r\n"
            b"\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<I", len(signature))
            + signature
            + sealed
            + BOUNDARY
            + b"--\r\n"
        )
        content_type = 'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";boundary="Encrypted Boundary"'
        return payload, {"Content-Type": content_type}
