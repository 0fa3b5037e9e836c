"""A real Dovecot IMAP server (Debian ``dovecot-imapd``) on loopback for the TLS-RPT IMAP source.

Started from its own configuration in a temporary directory (``dovecot -F -c``: nothing of
``/etc/dovecot`` is read), with a test CA and a server certificate for ``localhost`` made by
:mod:`tests.certs`, one passwd-file account, and mail in a Maildir under the temporary directory.
Two listeners on 127.0.0.1: implicit TLS (``imaps``) and plaintext-until-STARTTLS (``imap``,
``ssl = required`` so no login happens before TLS). Stopped by the PID of the master process.

As root the mail is owned by ``nobody`` (Dovecot refuses mail access as root); as another user,
everything runs as that user with no chroot.

Settings from the Dovecot 2.3 documentation (doc.dovecot.org, "Configuration"): ``base_dir``,
``state_dir``, ``ssl``, ``ssl_cert``/``ssl_key`` (``<`` reads a file), ``passdb``/``userdb``,
``service imap-login { inet_listener ... }``.

By hand::

    .venv/bin/python -m tests.dovecot      # starts, prints the ports and account, stops on Ctrl-C
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import secrets
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.certs import key_pem, make_pki, pem
from tests.lab import Daemon, LabError, _free_port

HOST = "localhost"
ADDRESS = "127.0.0.1"


def dovecot_binary() -> str:
    for candidate in (shutil.which("dovecot"), "/usr/sbin/dovecot"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise LabError("dovecot not found: install the Debian package dovecot-imapd")


@dataclass
class Dovecot:
    """A running Dovecot. Create with :meth:`start_new` (or :func:`running_dovecot`); always
    :meth:`stop`."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rollover-imap-")))
    user: str = "tlsrpt"
    password: str = ""
    imap_port: int = 0
    imaps_port: int = 0
    daemon: Daemon | None = None
    _ports: set[int] = field(default_factory=set)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def password_file(self) -> Path:
        return self.directory / "password"

    @property
    def log(self) -> Path:
        return self.directory / "dovecot.log"

    @classmethod
    def start_new(cls) -> Dovecot:
        server = cls()
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        return server

    def start(self) -> None:
        binary = dovecot_binary()
        self.directory.chmod(0o755)  # the mail user (not root) must reach its home
        self.password = secrets.token_urlsafe(18)
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)
        self.imap_port = _free_port(ADDRESS, avoid=self._ports)
        self.imaps_port = _free_port(ADDRESS, avoid=self._ports)
        pki = make_pki(host=HOST, tag="dovecot", pkix=True)
        self.ca_file.write_bytes(pem(pki.root))
        (self.directory / "server.pem").write_bytes(pem(pki.leaf, pki.intermediate))
        key = self.directory / "server.key"
        key.write_bytes(key_pem(pki.leaf_key))
        key.chmod(0o600)
        home = self.directory / "home" / self.user
        home.mkdir(parents=True)
        uid, gid, login_user = self._accounts()
        os.chown(home, uid, gid)
        # passwd-file(5) of Dovecot: user:{scheme}password:uid:gid:gecos:home:shell:extra
        passwd = self.directory / "passwd"
        passwd.write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        passwd.chmod(0o644)
        (self.directory / "dovecot.conf").write_text(self._config(uid, gid, login_user))
        self.daemon = Daemon(
            "dovecot",
            [binary, "-F", "-c", str(self.directory / "dovecot.conf")],
            self.directory / "dovecot.pid",
            self.directory / "dovecot.stdout",
        )
        self.daemon.start()
        self._wait_ready()

    def _accounts(self) -> tuple[int, int, str | None]:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            return nobody.pw_uid, nobody.pw_gid, None
        me = pwd.getpwuid(os.geteuid())
        return me.pw_uid, me.pw_gid, me.pw_name

    def _config(self, uid: int, gid: int, login_user: str | None) -> str:
        d = self.directory
        unprivileged = ""
        if login_user is not None:
            # Everything as the one user that started it, no chroot (Dovecot's "running
            # without root" setup).
            unprivileged = f"""
default_internal_user = {login_user}
default_internal_group = {login_user}
default_login_user = {login_user}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""
        return f"""# rollover tests: a private Dovecot; see tests/dovecot.py
base_dir = {d}/run
state_dir = {d}/state
instance_name = rollover-test-{d.name}
protocols = imap
listen = {ADDRESS}
log_path = {d}/dovecot.log
ssl = required
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
# No stats process: login processes that start while the master stops would wait 5 s for it.
stats_writer_socket_path =
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {ADDRESS}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {ADDRESS}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
{unprivileged}"""

    def _wait_ready(self, seconds: float = 15.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.daemon is None or not self.daemon.alive():
                raise LabError(f"dovecot exited: {self._log_tail()}")
            try:
                # The greeting comes once the login process has its auth connection: a master
                # stopped before that waits 5 s for it.
                with socket.create_connection((ADDRESS, self.imap_port), timeout=2) as probe:
                    if probe.makefile("rb").readline().startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise LabError(f"dovecot did not listen within {seconds} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        parts = []
        for path in (self.log, self.directory / "dovecot.stdout"):
            with contextlib.suppress(OSError):
                parts.append(" | ".join(path.read_text(errors="replace").splitlines()[-8:]))
        return " || ".join(parts)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- a client for the tests' own set-up and checks -------------------------------------
    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4_SSL]:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        conn = imaplib.IMAP4_SSL(HOST, self.imaps_port, ssl_context=context, timeout=10)
        try:
            conn.login(self.user, self.password)
            yield conn
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                conn.logout()

    def create(self, folder: str) -> None:
        with self.client() as conn:
            typ, data = conn.create(folder)
            if typ != "OK":
                raise LabError(f"CREATE {folder}: {data}")

    def append(self, raw: bytes, folder: str = "INBOX", flags: str = "") -> None:
        with self.client() as conn:
            typ, data = conn.append(folder, f"({flags})" if flags else None, None, raw)
            if typ != "OK":
                raise LabError(f"APPEND to {folder}: {data}")

    def messages(self, folder: str = "INBOX") -> list[tuple[str, bytes]]:
        """``(flags, Message-ID header line)`` of each message in ``folder``, in UID order."""
        with self.client() as conn:
            typ, _ = conn.select(folder, readonly=True)
            if typ != "OK":
                raise LabError(f"SELECT {folder}: {typ}")
            typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            found = []
            for item in data:
                if isinstance(item, tuple):
                    head = item[0].decode()
                    flags = head[head.index("FLAGS (") + 7 :].split(")", 1)[0]
                    found.append((flags, item[1].strip()))
            return found


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    server = Dovecot.start_new()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    with running_dovecot() as running:
        print(f"imaps {HOST}:{running.imaps_port}  imap+STARTTLS {HOST}:{running.imap_port}")
        print(f"user {running.user}  password file {running.password_file}  CA {running.ca_file}")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
