"""Server addresses as users write them: ``ADDR``, ``ADDR:PORT``, ``[V6]:PORT``."""

from __future__ import annotations

import ipaddress

from rollover.errors import InputError


def split_host_port(text: str, default_port: int, *, what: str = "server") -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]``, ``[V6]:PORT`` or a bare IPv6 address -> (host, port).

    The one HOST:PORT parser: a name or an address, brackets removed. ``what`` names the
    option or key in the error (``--connect``, ``server``)."""
    text = text.strip()
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise InputError(f"{what} {text!r}: expected [IPV6]:PORT")
        port = _port(text, rest[1:], what) if rest else default_port
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(text, port_text, what)
    else:
        host, port = text, default_port
    if not host:
        raise InputError(f"{what} {text!r}: no host name or address")
    return host, port


def parse_server(text: str, default_port: int = 53) -> tuple[str, int]:
    """``ADDR``, ``ADDR:PORT``, ``[V6]:PORT`` or a bare IPv6 address -> (address, port)."""
    host, port = split_host_port(text, default_port)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InputError(
            f"server {text!r}: not an IP address (ADDR, ADDR:PORT, [V6]:PORT)"
        ) from None
    return host, port


def _port(text: str, port_text: str, what: str) -> int:
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise InputError(f"{what} {text!r}: bad port {port_text!r}")
    return int(port_text)


def format_server(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
