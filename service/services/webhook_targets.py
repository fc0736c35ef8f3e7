"""Where a webhook may go: its url's host resolved, and each address checked against FITSERVE_WEBHOOK_ALLOW_HOSTS.

Against server-side request forgery, a host that resolves to a loopback, private, link-local, multicast, reserved
or otherwise non-public address is refused, unless the setting names the host or a network holding the address.
The check runs at submit (a 422) and again before each attempt, which connects to the address it checked: a name
that resolves elsewhere since (DNS rebinding) meets the check again, and cannot slip past it between the two.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ResolveTimeout
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from service.errors import InvalidField
from service.schemas.webhooks import Notify, url_parts
from service.settings import Settings

RESOLVE_SECONDS = 3.0  # a submit waits this long at most for its url's host to resolve
# lookups run here so a slow resolver costs its caller RESOLVE_SECONDS, not the resolver's own minutes; four at once
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fitserve-resolve")


class TargetRefused(ValueError):
    """A url no webhook may be sent to; the message says why."""


@dataclass(frozen=True)
class Target:
    host: str  # as the url names it (lower case; an IPv6 address without brackets)
    port: int
    address: str  # the checked address to connect to


@dataclass(frozen=True)
class AllowList:
    names: frozenset[str]
    networks: tuple

    @classmethod
    def parse(cls, setting: str) -> AllowList:
        """`host, 10.0.0.0/8, 127.0.0.1, ::1`: names and networks (an address is a network of one)."""
        names, networks = set(), []
        for entry in (part.strip().strip("[]").lower() for part in setting.split(",")):
            if not entry:
                continue
            try:
                networks.append(ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def allows(self, host: str, address: IPv4Address | IPv6Address) -> bool:
        return host in self.names or any(address in network for network in self.networks)


def address_kind(address: IPv4Address | IPv6Address) -> str | None:
    """What makes an address non-public, or None for a public one (multicast counts as public to `is_global`)."""
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"


def resolve(host: str, port: int, timeout: float) -> list[IPv4Address | IPv6Address]:
    """The host's addresses (an address as given is its own), in the resolver's order; TargetRefused if none
    within `timeout`."""
    try:
        return [ip_address(host)]
    except ValueError:
        pass
    lookup = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = lookup.result(timeout)
    except ResolveTimeout:
        raise TargetRefused(f"host {host!r} did not resolve within {timeout:g} s") from None
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"host {host!r} does not resolve ({getattr(exc, 'strerror', None) or exc})") from None
    found = [ip_address(info[4][0].split("%")[0]) for info in infos]
    return list(dict.fromkeys(found))


def check_target(url: str, allow: AllowList, timeout: float = RESOLVE_SECONDS) -> Target:
    """The address to send `url`'s webhook to: every address its host resolves to must be public, or allowed."""
    try:
        parts = url_parts(url)
    except ValueError as exc:
        raise TargetRefused(str(exc)) from None
    host = parts.hostname.rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port, timeout)
    if not addresses:
        raise TargetRefused(f"host {host!r} resolves to no address")
    for address in addresses:
        plain = (address.ipv4_mapped or address) if isinstance(address, IPv6Address) else address
        kind = address_kind(plain)
        if kind is not None and not allow.allows(host, plain):
            raise TargetRefused(f"host {host!r} resolves to {plain}, a {kind} address: webhooks go to public "
                                "addresses unless FITSERVE_WEBHOOK_ALLOW_HOSTS names the host or its network")
    return Target(host, port, str(addresses[0]))


def check_notify(notify: Notify | None, loc: tuple[str, ...], settings: Settings) -> None:
    """422 naming `loc`.url when its host may not be called (or does not resolve). It may wait for a resolver:
    call it before a request's first statement, so SQLite's write lock is not held meanwhile."""
    if notify is None:
        return
    try:
        check_target(notify.url, AllowList.parse(settings.WEBHOOK_ALLOW_HOSTS))
    except TargetRefused as exc:
        raise InvalidField((*loc, "url"), str(exc)) from None
