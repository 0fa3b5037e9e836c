"""Server addresses as users write them: ``ADDR``, ``ADDR:PORT``, ``[V6]:PORT``."""

from __future__ import annotations

import ipaddress

from rollover.errors import InputError


def parse_server(text: str, default_port: int = 53) -> tuple[str, int]:
    """``ADDR``, ``ADDR:PORT``, ``[V6]:PORT`` or a bare IPv6 address -> (address, port)."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(text, rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(text, port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InputError(
            f"server {text!r}: not an IP address (ADDR, ADDR:PORT, [V6]:PORT)"
        ) from None
    return host, port


def _port(text: str, port_text: str) -> int:
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise InputError(f"server {text!r}: bad port {port_text!r}")
    return int(port_text)


def format_server(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
