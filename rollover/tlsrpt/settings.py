"""The ``imap:`` section of the configuration: where `rollover tlsrpt ingest --imap` reads
RFC 8460 reports (section 5.3: reports sent by mail to a ``mailto:`` ``rua``).

::

    imap:
      host: imap.example.net
      port: 993                 # default 993 (implicit TLS), 143 is usual for starttls
      tls: implicit             # implicit (RFC 8314) or starttls; there is no plaintext
      user: tlsrpt@example.net
      password_file: /etc/rollover/imap.password   # 0600; never in the configuration
      folder: INBOX
      done_folder: TLSRPT/done  # optional: processed messages moved there
      flag: rollover-ingested   # the keyword (or \\Seen) that marks a message processed
      ca_file: /etc/ssl/private-ca.pem  # optional: instead of the system trust store
      timeout: 30
"""

from __future__ import annotations

import os

from rollover.config import Section, check_secret_file
from rollover.tlsrpt.imap import _KEYWORD, DEFAULT_KEYWORD, SEEN, TLS_MODES, ImapSettings

DEFAULT_PORT = 993


def parse_imap(section: Section, warnings: list[str]) -> ImapSettings:
    """Validate the ``imap:`` section; errors name the key path (``imap.tls``)."""
    host = section.text("host", required=True)
    port = section.integer("port", DEFAULT_PORT, low=1, high=65535)
    tls = section.text("tls", "implicit")
    if tls not in TLS_MODES:
        raise section.fail("tls", f"{tls!r}: TLS is required: use {' or '.join(TLS_MODES)}")
    user = section.text("user", required=True)
    password_file = section.text("password_file", required=True)
    check_secret_file(password_file, section.key("password_file"), section.source, warnings)
    folder = section.text("folder", "INBOX")
    done_folder = section.text("done_folder")
    if done_folder is not None and done_folder == folder:
        raise section.fail("done_folder", "is the folder read: processed messages must leave it")
    flag = section.text("flag", DEFAULT_KEYWORD)
    if flag != SEEN and (flag.startswith("\\") or not _KEYWORD.fullmatch(flag)):
        raise section.fail(
            "flag", f"{flag!r}: use \\Seen or a keyword (letters, digits, - _ . and no spaces)"
        )
    ca_file = section.text("ca_file")
    if ca_file is not None and not os.path.isfile(ca_file):
        raise section.fail("ca_file", f"{ca_file}: no such file")
    timeout = section.number("timeout", 30.0, low=1.0)
    section.finish()
    return ImapSettings(
        host=host,
        port=port,
        tls=tls,
        user=user,
        password_file=password_file,
        folder=folder,
        done_folder=done_folder,
        flag=flag,
        ca_file=ca_file,
        timeout=timeout,
    )
