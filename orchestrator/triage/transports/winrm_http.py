"""The HTTP under pywinrm, bounded in time and size against a hostile WS-Management endpoint.

requests' timeouts bound each socket read, not a request: an endpoint that drips one byte per second
never trips them, and pywinrm reads every response body whole into memory. So each WinRM connection of
a host gets a `Guard`: a watchdog that shuts down every socket the host's requests opened when the
host's deadline passes (a blocked read returns at once, in the TLS handshake, the headers or the body
alike), and an adapter that reads each response body through a size cap instead of whole.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# WinRM answers in envelopes of at most MaxEnvelopeSize (pywinrm asks for 150 KB; Windows allows up
# to 500 KB by default): a body many times larger is not WinRM.
MAX_RESPONSE = 4 * 1024 * 1024
CHUNK = 64 * 1024


class DeadlineExpired(Exception):
    """The host's deadline passed; its sockets were shut down."""


class ResponseTooLarge(Exception):
    """A response body exceeded MAX_RESPONSE (or was compressed, which WinRM never does)."""


class RedirectRefused(Exception):
    """The endpoint answered with a redirect: WinRM never does, and following one would let a host
    send our next request, and the authentication that follows it, wherever it likes."""


class Guard:
    """One host's deadline over every socket its WinRM requests open."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Guard:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        """Keep a duplicate of the socket: shutting it down ends the TCP connection even after TLS
        wrapping has taken the original object's descriptor."""
        with self._lock:
            dup = sock.dup()
            self._sockets.append(dup)
            if self.fired:
                _shutdown(dup)

    def check(self) -> None:
        if self.fired:
            raise DeadlineExpired(f"deadline of {self.seconds:g}s passed")

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _pool_classes(guard: Guard) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pools whose connections register their sockets with the guard."""

    class _HTTP(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            guard.watch(sock)
            return sock

    class _HTTPS(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            guard.watch(sock)
            return sock

    class _HTTPPool(HTTPConnectionPool):
        ConnectionCls = _HTTP

    class _HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _HTTPS

    return {"http": _HTTPPool, "https": _HTTPSPool}


class BoundedAdapter(HTTPAdapter):
    """Streams every response and reads at most MAX_RESPONSE bytes of its body, under the guard."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.guard)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        """Through an HTTP proxy too (a SOCKS proxy keeps its own pools: only the size caps hold)."""
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _pool_classes(self.guard)
        return manager

    def send(self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any) -> Any:
        self.guard.check()
        response = super().send(request, stream=True, **kwargs)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        declared = response.headers.get("Content-Length", "")
        problem = None
        if encoding not in ("", "identity"):
            problem = f"compressed response ({encoding[:40]!r}) refused"
        elif declared.isdigit() and int(declared) > MAX_RESPONSE:
            problem = f"response of {int(declared)} bytes refused (limit {MAX_RESPONSE})"
        if response.is_redirect:
            response.close()
            raise RedirectRefused(
                f"redirect ({response.status_code}) refused: WinRM endpoints do not redirect"
            )
        if problem:
            response.close()
            raise ResponseTooLarge(problem)
        # The body is read later (by requests after its hooks, or by an authentication hook that
        # needs the unread response's socket), always through this capped reader.
        response.iter_content = self._capped(response.iter_content)
        return response

    def _capped(self, iter_content: Any) -> Any:
        guard = self.guard

        def read(chunk_size: int | None = 1, decode_unicode: bool = False) -> Iterator[bytes]:
            size = 0
            try:
                for chunk in iter_content(CHUNK):
                    size += len(chunk)
                    if size > MAX_RESPONSE:
                        raise ResponseTooLarge(f"response over {MAX_RESPONSE} bytes refused")
                    yield chunk
            except Exception:
                guard.check()  # a read cut short by the deadline is a timeout, not a bad response
                raise
            guard.check()  # a body that ended because its socket was shut down is not whole

        return read


def bound(protocol: Any, guard: Guard) -> None:
    """Route every request of this pywinrm Protocol (including the authentication round trips and
    the message-encryption set-up, which happen inside pywinrm's session building) through the
    guard's adapter. pywinrm sends every message through `Transport._send_message_request`; the
    adapter is mounted on whichever session that call uses."""
    transport = protocol.transport
    send = transport._send_message_request

    def guarded(*args: Any, **kwargs: Any) -> Any:
        session = next((a for a in args if isinstance(a, requests.Session)), None) or transport.session
        if session is not None and not isinstance(session.get_adapter("http://"), BoundedAdapter):
            adapter = BoundedAdapter(guard)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        guard.check()
        return send(*args, **kwargs)

    transport._send_message_request = guarded
