"""Which Host headers ``personsearch serve`` accepts: on a loopback address only local names (against DNS
rebinding), elsewhere any. No FastAPI import."""

from __future__ import annotations

import ipaddress

#: The names of this machine a browser may send as the Host header.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IPv4/IPv6 address, possibly in brackets) is this machine only."""
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str] | None:
    """The Host headers to accept when listening on ``host``: the local names and ``host`` itself for a
    loopback address, None (any) otherwise."""
    return [*LOCAL_NAMES, host] if is_loopback(host) else None


def url_host(host: str) -> str:
    """``host`` as it stands in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host
