"""Bounds on each HTTP connection, below the app: a request head's bytes and time, and open connections (all of
them, and one client address's).

uvicorn's httptools protocol (the one `serve` runs) has no limit on header bytes (its parser joins a header
value chunk by chunk: a 128 MB value took 30 s of the event loop) and no timeout while a head is read (a
client sending a header line every 10 s kept its connection, and its file, for ever). This subclass adds both,
and refuses connections past a cap while the process still has files to answer with.
"""

from __future__ import annotations

import http
import ipaddress
import json
import logging
import resource
import time
from collections import Counter
from functools import lru_cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import Settings, get_settings

log = logging.getLogger("fitserve.connections")
TRIP_LOG_SECONDS = 10.0  # a limit tripping again within this is counted into its next line, not logged alone
SPARE_FILES = 256  # files beyond the connections: the database, the log, the listening socket, workers' pipes


class TripLog:
    """A warning line when a limit trips; under attack at most one a limit every TRIP_LOG_SECONDS, with a count."""

    def __init__(self) -> None:
        self.logged_at: dict[str, float] = {}
        self.unlogged: dict[str, int] = {}

    def trip(self, limit: str, message: str) -> None:
        now, count = time.monotonic(), self.unlogged.get(limit, 0) + 1
        if now - self.logged_at.get(limit, -TRIP_LOG_SECONDS) < TRIP_LOG_SECONDS:
            self.unlogged[limit] = count
            return
        self.logged_at[limit], self.unlogged[limit] = now, 0
        more = f" ({count - 1} more since the last such line)" if count > 1 else ""
        log.warning("limit=%s %s%s", limit, message, more)


TRIPS = TripLog()  # one per process: the event loop's thread is the only one that writes it
OPEN_BY_ADDRESS: Counter[str] = Counter()  # this process's open connections per client address (same thread)


@lru_cache(maxsize=4)
def proxy_networks(allowed: str) -> tuple | None:
    """FITSERVE_FORWARDED_ALLOW_IPS as networks; None for `*` (every address a proxy)."""
    entries = [entry.strip() for entry in allowed.split(",") if entry.strip()]
    if "*" in entries:
        return None
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:  # a name uvicorn matches literally (a unix socket's): no address to except
            continue
    return tuple(networks)


def is_proxy(address: str, allowed: str) -> bool:
    """Whether `address` is a proxy named in FITSERVE_FORWARDED_ALLOW_IPS (its connections carry many clients)."""
    networks = proxy_networks(allowed)
    if networks is None:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class BoundedConnection(HttpToolsProtocol):
    """uvicorn's httptools protocol with FITSERVE_MAX_HEADER_BYTES, _HEADER_TIMEOUT_SECONDS, _MAX_CONNECTIONS and
    _MAX_CONNECTIONS_PER_ADDRESS."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limits: Settings = get_settings()
        self.head_bytes: int | None = None  # bytes of the request head being read; None while none is
        self.head_timer = None
        self.counted: str | None = None  # the client address this connection counts against

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        limits = self.limits
        if len(self.connections) > limits.MAX_CONNECTIONS:
            message = f"{limits.MAX_CONNECTIONS} connections are open (FITSERVE_MAX_CONNECTIONS); retry shortly"
            self.refuse(503, "connections", message, {"retry-after": "1"})
            return
        address = self.client[0] if self.client else None
        if address is not None and not is_proxy(address, limits.FORWARDED_ALLOW_IPS):
            if OPEN_BY_ADDRESS[address] >= limits.MAX_CONNECTIONS_PER_ADDRESS:
                message = (f"{address} has {limits.MAX_CONNECTIONS_PER_ADDRESS} connections open "
                           "(FITSERVE_MAX_CONNECTIONS_PER_ADDRESS); close some, or retry shortly")
                self.refuse(429, "connections_per_address", message, {"retry-after": "1"})
                return
            OPEN_BY_ADDRESS[address] += 1
            self.counted = address
        self.start_head_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc) -> None:
        self.stop_head_timer()
        if self.counted is not None:
            OPEN_BY_ADDRESS[self.counted] -= 1
            if OPEN_BY_ADDRESS[self.counted] <= 0:
                del OPEN_BY_ADDRESS[self.counted]
            self.counted = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.head_bytes is None or self.transport.is_closing():
            return
        # a head still incomplete after this read: every byte so far was the head's (the parser holds them)
        self.head_bytes += len(data)
        if self.head_bytes > self.limits.MAX_HEADER_BYTES:
            self.refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0
        if self.head_timer is None:  # the next request on a kept-alive connection: its head's clock starts now
            self.start_head_timer()

    def on_headers_complete(self) -> None:
        self.head_bytes = None
        self.stop_head_timer()
        # a whole head that came in one read: measured here, before the app is called
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.MAX_HEADER_BYTES:
            self.refuse_head()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():  # refused: the rest of what was read is dropped
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.transport.is_closing():
            super().on_message_complete()

    def refuse_head(self) -> None:
        limit = self.limits.MAX_HEADER_BYTES
        message = f"the request line and headers exceed {limit} bytes (FITSERVE_MAX_HEADER_BYTES)"
        self.refuse(431, "header_bytes", message)

    def start_head_timer(self) -> None:
        self.head_timer = self.loop.call_later(self.limits.HEADER_TIMEOUT_SECONDS, self.head_timed_out)

    def stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timed_out(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            message = (
                f"the request line and headers did not arrive within {self.limits.HEADER_TIMEOUT_SECONDS:g} s "
                "(FITSERVE_HEADER_TIMEOUT_SECONDS)"
            )
            self.refuse(408, "header_timeout", message)

    def refuse(self, status: int, limit: str, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer `status` with {"detail": message} and close, whatever the request has sent so far; log it."""
        client = "%s:%d" % self.client if self.client else "-"
        TRIPS.trip(limit, f"client={client} status={status} {message}")
        self.stop_head_timer()
        self.head_bytes = None
        body = json.dumps({"detail": message}).encode()
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", "content-type: application/json",
                f"content-length: {len(body)}", "connection: close",
                *(f"{name}: {value}" for name, value in (headers or {}).items())]
        self.transport.write("\r\n".join(head).encode() + b"\r\n\r\n" + body)
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict:
    """What `serve` hands uvicorn.run: the bounded protocol, the keep-alive timeout and the proxies trusted (uvicorn
    would trust loopback's X-Forwarded-For: anyone on the host could then be any address to the limits)."""
    return {
        "http": BoundedConnection,
        "timeout_keep_alive": settings.KEEP_ALIVE_SECONDS,
        "proxy_headers": bool(settings.FORWARDED_ALLOW_IPS.strip()),
        "forwarded_allow_ips": settings.FORWARDED_ALLOW_IPS.strip() or None,
    }


def allow_open_files(settings: Settings) -> None:
    """Raise this process's open-file limit to fit FITSERVE_MAX_CONNECTIONS, as far as the hard limit allows: past
    it, accept() fails and the connection waits unanswered instead of being refused."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = settings.MAX_CONNECTIONS + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        if raised < wanted:
            log.warning(
                "open files are limited to %d: FITSERVE_MAX_CONNECTIONS (%d) cannot all be answered",
                raised, settings.MAX_CONNECTIONS,
            )
