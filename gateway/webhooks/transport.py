"""Calling a URL someone else gave us, safely: the callback is resolved, every address must be
public (loopback only when allowed), and the connection is made to the address that was checked, so
DNS cannot be re-pointed between check and use. Redirects are never followed, and a deadline bounds
the whole exchange. The webhook dispatcher POSTs through it; client_keys fetches a jwks_uri with it.
"""
from __future__ import annotations

import email.utils
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from coproduction.events import now

USER_AGENT = "coproduction-webhooks/1"
RESPONSE_KEPT = 1000


class UnsafeUrl(ValueError):
    """A callback URL we will not call, with the reason."""


def _address_problem(ip: ipaddress._BaseAddress, allow_loopback: bool) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


def resolve_safely(url: str, allow_loopback: bool) -> tuple[str, int, list[str]]:
    """Check a callback URL; return (host, port, addresses to connect to) or raise UnsafeUrl.

    Every address the host resolves to must be public (or loopback, when allowed): a name that
    resolves to one public and one private address is refused, since either could be used.
    """
    if len(url) > 2000:
        raise UnsafeUrl("is longer than 2000 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("must use http or https")
    if not parts.hostname:
        raise UnsafeUrl("has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not carry credentials")
    if parts.fragment:
        raise UnsafeUrl("must not have a fragment")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"host {host} does not resolve ({exc})") from None
    addresses = []
    for *_rest, sockaddr in infos:
        address = sockaddr[0].split("%", 1)[0]
        ip = ipaddress.ip_address(address)
        problem = _address_problem(ip, allow_loopback)
        if problem:
            raise UnsafeUrl(f"host {host} resolves to {address}, {problem}; callbacks must be public"
                            + ("" if allow_loopback or not ip.is_loopback else
                               " (ALLOW_LOOPBACK_WEBHOOKS=1 allows loopback in development)"))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeUrl(f"host {host} does not resolve")
    return host, port, addresses


# -- connections pinned to a checked address ----------------------------------------------------
class PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout, context):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._ctx = context

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def pinned_connection(scheme: str, host: str, port: int, address: str, timeout: float,
                      tls_context: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    """A connection to ``host`` made to ``address`` (not connected yet); https checks ``host``'s certificate."""
    if scheme == "https":
        return PinnedHTTPSConnection(host, port, address, timeout, tls_context or ssl.create_default_context())
    return PinnedHTTPConnection(host, port, address, timeout)


def connections(scheme: str, host: str, port: int, addresses: list[str], deadline: float,
                errors: list[Exception], tls_context: ssl.SSLContext | None = None):
    """Connect to each of ``addresses`` in turn while time is left before ``deadline``
    (time.monotonic()), yielding each connection that opens; it is closed when the caller moves on
    or closes this generator. Addresses that would not connect add their error to ``errors``."""
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        conn = pinned_connection(scheme, host, port, address, remaining, tls_context)
        try:
            conn.connect()
        except OSError as exc:
            errors.append(exc)
            conn.close()
            continue
        try:
            yield conn
        finally:
            conn.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@contextmanager
def cut_off_at(sock: socket.socket, deadline: float):
    """Shut ``sock`` at ``deadline`` (time.monotonic()): the socket's own timeout bounds each read,
    this bounds the whole exchange, so a server trickling its answer cannot hold us."""
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (sock,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# -- one webhook request ------------------------------------------------------------------------
@dataclass
class Result:
    outcome: str                   # delivered | failed | gone | refused
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    retry_after: float | None = None
    response: str | None = None
    sent: bool = False             # the request reached the receiver (it saw the person's data)


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, (when - now()).total_seconds()) if when.tzinfo else None


def post(url: str, headers: dict[str, str], body: bytes, *, timeout: float, allow_loopback: bool,
         tls_context: ssl.SSLContext | None = None) -> Result:
    """POST once, never following a redirect, within ``timeout`` seconds in all."""
    started = time.monotonic()
    deadline = started + timeout

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        host, port, addresses = resolve_safely(url, allow_loopback)
    except UnsafeUrl as exc:
        return Result("refused", error=f"refused: the URL {exc}", duration_ms=took())
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    errors: list[Exception] = []
    opened = connections(parts.scheme, host, port, addresses, deadline, errors, tls_context)
    sent = False
    try:
        conn = next(opened, None)  # only a failed connect moves on: a POST once sent is never repeated
        if conn is None:
            raise errors[-1] if errors else TimeoutError("timed out")
        with cut_off_at(conn.sock, deadline):
            all_headers = {"Host": host_header, "User-Agent": USER_AGENT, "Content-Type": "application/json",
                           "Content-Length": str(len(body)), "Connection": "close", **headers}
            conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
            for name, value in all_headers.items():
                conn.putheader(name, value)
            conn.endheaders(body)
            sent = True
            response = conn.getresponse()
            answer = response.read(RESPONSE_KEPT).decode("utf-8", "replace")
            status = response.status
            if time.monotonic() > deadline:
                raise TimeoutError("timed out")
    except (socket.timeout, TimeoutError):
        return Result("failed", error=f"timed out after {timeout:g}s", duration_ms=took(), sent=sent)
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        if time.monotonic() >= deadline:
            return Result("failed", error=f"timed out after {timeout:g}s", duration_ms=took(), sent=sent)
        reason = str(exc) or type(exc).__name__
        return Result("failed", error=f"{type(exc).__name__}: {reason}"[:500], duration_ms=took(), sent=sent)
    finally:
        opened.close()
    duration = took()
    if 200 <= status < 300:
        return Result("delivered", status, duration_ms=duration, response=answer, sent=True)
    if status == 410:
        return Result("gone", status, error="the receiver answered 410 Gone", duration_ms=duration,
                      response=answer, sent=True)
    if 300 <= status < 400:
        where = response.getheader("Location", "")
        return Result("failed", status, error=f"redirect to {where or '?'} not followed"[:500],
                      duration_ms=duration, response=answer, sent=True)
    return Result("failed", status, error=f"the receiver answered {status}", duration_ms=duration,
                  retry_after=retry_after_seconds(response.getheader("Retry-After")), response=answer,
                  sent=True)
