"""Fetch a domain's MTA-STS policy the way RFC 8461 section 3.3 tells senders to.

``https://mta-sts.<domain>/.well-known/mta-sts.txt`` over HTTPS with SNI, the certificate
validated for that name against the system trust store (or a CA file: tests, private PKIs);
no redirect followed (a 3xx is a failure), status 200 only, media type ``text/plain``, at most
64 KiB, and one deadline for the whole fetch (the RFC suggests bounds of this kind). The caller
gives the addresses (resolved through its resolver) and may override the port; the name is
validated all the same. Every failure is one line.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rollover.core.addresses import format_server

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024


@dataclass(frozen=True)
class PolicyFetch:
    url: str
    text: str | None = None
    address: str | None = None
    error: str | None = None


class _FetchError(Exception):
    """One line saying why this fetch failed."""


def policy_host(domain: str) -> str:
    return f"mta-sts.{domain.rstrip('.').lower()}"


def policy_url(domain: str) -> str:
    return f"https://{policy_host(domain)}{POLICY_PATH}"


def fetch_policy(
    domain: str,
    addresses: Sequence[str],
    *,
    port: int = 443,
    ca_file: str | None = None,
    timeout: float = 10.0,
    max_bytes: int = MAX_POLICY_BYTES,
) -> PolicyFetch:
    """The policy text from the first address that accepts a connection, or why not.

    Connection failures move on to the next address; once a server answered, its answer
    (good or bad) is the result, as a sender would take it."""
    host, url = policy_host(domain), policy_url(domain)
    if not addresses:
        return PolicyFetch(url, error=f"{host}: no address")
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        return PolicyFetch(url, error=f"CA file {ca_file}: {exc}")
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    deadline = time.monotonic() + timeout
    errors = []
    for address in addresses:
        endpoint = format_server(address, port)
        try:
            sock = socket.create_connection((address, port), timeout=_left(deadline, timeout))
        except _FetchError as exc:
            errors.append(f"{endpoint}: {exc}")
            break
        except TimeoutError:
            errors.append(f"{endpoint}: connection timed out after {timeout:g} s")
            continue
        except OSError as exc:
            errors.append(f"{endpoint}: {exc.strerror or exc}")
            continue
        try:
            text = _get(
                sock,
                context=context,
                host=host,
                deadline=deadline,
                timeout=timeout,
                max_bytes=max_bytes,
            )
        except _FetchError as exc:
            return PolicyFetch(url, address=endpoint, error=f"{endpoint}: {exc}")
        finally:
            sock.close()
        return PolicyFetch(url, text, endpoint)
    return PolicyFetch(url, error="; ".join(errors))


def _left(deadline: float, timeout: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _FetchError(f"timed out after {timeout:g} s")
    return remaining


class _Connection(http.client.HTTPSConnection):
    """An HTTPS connection over a socket already connected and wrapped (so the address and
    port can differ from the name, which alone goes into SNI, the check and Host)."""

    def __init__(self, host: str, sock: ssl.SSLSocket) -> None:
        super().__init__(host)
        self.sock = sock

    def connect(self) -> None:  # never reconnect elsewhere
        raise http.client.NotConnected("the connection is closed")


def _get(
    sock: socket.socket,
    *,
    context: ssl.SSLContext,
    host: str,
    deadline: float,
    timeout: float,
    max_bytes: int,
) -> str:
    try:
        sock.settimeout(_left(deadline, timeout))
        tls = context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raise _FetchError(
            f"certificate not valid for {host}: {exc.verify_message or exc.reason}"
        ) from None
    except ssl.SSLError as exc:
        raise _FetchError(f"TLS handshake failed: {exc.reason or exc}") from None
    except TimeoutError:
        raise _FetchError(f"TLS handshake timed out after {timeout:g} s") from None
    except OSError as exc:
        raise _FetchError(f"TLS handshake failed: {exc.strerror or exc}") from None
    connection = _Connection(host, tls)
    try:
        # Each socket operation is bounded by what is left now; the loop below checks the
        # deadline between reads (http.client closes the socket itself once the response to a
        # "Connection: close" request is read, so it is not touched after getresponse()).
        tls.settimeout(_left(deadline, timeout))
        connection.request(
            "GET",
            POLICY_PATH,
            headers={"Accept": "text/plain", "Connection": "close", "User-Agent": "rollover"},
        )
        response = connection.getresponse()
        if 300 <= response.status < 400:
            location = response.getheader("Location") or "no Location"
            raise _FetchError(
                f"HTTP {response.status} redirect ({location}) refused: RFC 8461 section 3.3 "
                "forbids following it"
            )
        if response.status != 200:
            raise _FetchError(f"HTTP {response.status} {response.reason}".rstrip())
        media = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if media != "text/plain":
            raise _FetchError(f"media type {media or 'missing'!r}, not text/plain (RFC 8461 3.2)")
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise _FetchError(f"policy of {length} bytes is over the {max_bytes // 1024} KiB bound")
        body = bytearray()
        while True:
            _left(deadline, timeout)
            chunk = response.read(min(16384, max_bytes + 1 - len(body)) or 1)
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                raise _FetchError(f"policy larger than the {max_bytes // 1024} KiB bound")
    except TimeoutError:
        raise _FetchError(f"timed out after {timeout:g} s") from None
    except (http.client.HTTPException, ssl.SSLError) as exc:
        raise _FetchError(f"bad HTTP response: {type(exc).__name__}: {exc}".rstrip(": ")) from None
    except OSError as exc:
        raise _FetchError(f"HTTP exchange failed: {exc.strerror or exc}") from None
    finally:
        connection.close()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise _FetchError("the policy is not UTF-8 text") from None
