"""End-to-end fixtures: start the real `lazaret` binary on port 0 in a temporary data
directory and talk to it over loopback with real clients (smtplib, curl, the CLI)."""

import imaplib
import json
import os
import poplib
import pathlib
import signal
import smtplib
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = os.environ.get("LAZARET_BIN", str(ROOT / "target" / "release" / "lazaret"))
# LAZARET_TEST_BLOBS=s3: every server keeps its message bodies in a bucket of its own
# on a local S3 peer (tests/s3_peer.py) rather than in packs; `.ci/run` runs the
# protocol and admin suites once more that way.
TEST_BLOBS = os.environ.get("LAZARET_TEST_BLOBS", "fs")
# LAZARET_TEST_STORE=postgres: every server keeps its metadata in a database of its own
# on the PostgreSQL server LAZARET_TEST_POSTGRES names (scripts/test starts one), and its
# bodies in a bucket of its own, as a node of a cluster does (docs/SCALE-OUT.md).
TEST_STORE = os.environ.get("LAZARET_TEST_STORE", "embedded")
# For tests of what only the embedded store has: its files (backups copy them), its
# upgrades from older layouts.
embedded_only = pytest.mark.skipif(
    TEST_STORE == "postgres", reason="about the embedded store's own files"
)


def new_test_database() -> str:
    """A new empty database on LAZARET_TEST_POSTGRES; returns its URL."""
    import uuid

    url = os.environ.get("LAZARET_TEST_POSTGRES", "")
    if not url:
        pytest.fail("LAZARET_TEST_STORE=postgres needs LAZARET_TEST_POSTGRES (scripts/test sets it)")
    name = "lzt_" + uuid.uuid4().hex[:16]
    subprocess.run(["psql", "-q", url, "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return url.rsplit("/", 1)[0] + "/" + name


def with_test_blobs(workdir, extra_config: str) -> str:
    """Adds the `[store]` keys of LAZARET_TEST_BLOBS and LAZARET_TEST_STORE to a
    server's config."""
    on_postgres = TEST_STORE == "postgres" and "backend =" not in extra_config
    if (TEST_BLOBS != "s3" and not on_postgres) or "blobs =" in extra_config:
        return extra_config
    import s3_peer

    peer = s3_peer.peer()
    keys = peer.store_config(workdir, peer.new_bucket())
    if on_postgres:
        keys = f'backend = "postgres"\nurl = "{new_test_database()}"\nnode = "test"\n' + keys
    if "[store]\n" in extra_config:
        return extra_config.replace("[store]\n", "[store]\n" + keys, 1)
    return extra_config + "\n[store]\n" + keys


class Server:
    """One running Lazaret server, restartable on the same data directory."""

    def __init__(self, workdir: pathlib.Path, extra_config: str = ""):
        self.workdir = workdir
        extra_config = with_test_blobs(workdir, extra_config)
        self.extra_config = extra_config
        self.data_dir = workdir / "data"
        self.config = workdir / "lazaret.toml"
        self.config.write_text(
            f'data_dir = "{self.data_dir}"\n'
            'hostname = "mx.lazaret.test"\n'
            + extra_config
            + ("" if "[smtp]" in extra_config else '\n[smtp]\nlisten = ["127.0.0.1:0"]\n')
            + ("" if "[pop3]" in extra_config else '\n[pop3]\nlisten = ["127.0.0.1:0"]\n')
            + ("" if "[imap]" in extra_config else '\n[imap]\nlisten = ["127.0.0.1:0"]\n')
            + ("" if "[submission]" in extra_config else '\n[submission]\nlisten = ["127.0.0.1:0"]\n')
            + ("" if "[admin]" in extra_config else '\n[admin]\nlisten = "127.0.0.1:0"\n')
            + ("" if "[delivery]" in extra_config else '\n[delivery]\npoll_interval = "1s"\n')
            + '\n[auth]\nfailure_delay = "1s"\nmax_failures = 3\n'
            # Started as root (CI), the server refuses to stay root unless told to;
            # test_privileges.py tests the switch to an unprivileged account.
            + ('\n[server]\nuser = "root"\n' if os.geteuid() == 0 and "[server]" not in extra_config else "")
        )
        self.give_secrets_to_account()
        self.proc = None
        self.start()

    def give_secrets_to_account(self):
        """A server that drops root to `[server] user` reads the bucket's key file as
        that account, as an admin would have it (`chown`, mode 0600 kept)."""
        import re
        import pwd

        m = re.search(r'^user = "([^"]+)"', self.extra_config, re.M)
        creds = self.workdir / "s3-credentials.toml"
        if m and m.group(1) != "root" and creds.exists() and os.geteuid() == 0:
            account = pwd.getpwnam(m.group(1))
            os.chown(creds, account.pw_uid, account.pw_gid)

    def start(self):
        listeners = self.data_dir / "listeners.json"
        if listeners.exists():
            listeners.unlink()
        self.log = open(self.workdir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [BIN, "serve", "-c", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=self.workdir,
        )
        deadline = time.time() + 20
        while not listeners.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.workdir}/server.log")
            if time.time() > deadline:
                raise RuntimeError("server did not write listeners.json in 20s")
            time.sleep(0.02)
        info = json.loads(listeners.read_text())
        self.smtp_host, port = info["smtp"][0].rsplit(":", 1)
        self.smtp_port = int(port)
        self.admin = info["admin"]
        self.admin_tls = info.get("admin_tls", [])
        self.pop3_host, port = info["pop3"][0].rsplit(":", 1)
        self.pop3_port = int(port)
        self.imap_host, port = info["imap"][0].rsplit(":", 1)
        self.imap_port = int(port)
        self.submission_host, port = info["submission"][0].rsplit(":", 1)
        self.submission_port = int(port)
        self.submissions_port = int(info["submissions"][0].rsplit(":", 1)[1]) if info.get("submissions") else None
        self.token = (self.data_dir / "admin.token").read_text().strip()

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self):
        self.stop(signal.SIGKILL)

    # -- clients ---------------------------------------------------------------

    def cli(self, *args, input=None, check=True):
        """Runs a `lazaret` admin command against this server."""
        r = subprocess.run(
            [BIN, "-c", str(self.config), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"lazaret {' '.join(args)} exited {r.returncode}: {r.stderr}")
        return r

    def cli_json(self, *args):
        return json.loads(self.cli(*args, "--json").stdout)

    @property
    def store_url(self):
        """The PostgreSQL database of a server on `backend = "postgres"`, else None."""
        import re

        m = re.search(r'^url = "(postgres[^"]*)"', self.extra_config, re.M)
        return m.group(1) if m else None

    def sql(self, query):
        """The rows a read-only query gives on the server's metadata: its SQLite file,
        or its PostgreSQL database (values as text there)."""
        if self.store_url:
            r = subprocess.run(
                ["psql", "-q", "-At", "-F", "\t", self.store_url, "-c", query],
                capture_output=True, text=True, check=True,
            )
            return [tuple(line.split("\t")) for line in r.stdout.splitlines()]
        import sqlite3

        with sqlite3.connect(f"file:{self.data_dir / 'lazaret.db'}?mode=ro", uri=True) as db:
            return db.execute(query).fetchall()

    def add_user(self, address, password="secret"):
        self.cli("user", "add", address, "--password-stdin", input=password + "\n")

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=30)

    def pop3(self, user=None, password="secret") -> poplib.POP3:
        p = poplib.POP3(self.pop3_host, self.pop3_port, timeout=30)
        if user:
            p.user(user)
            p.pass_(password)
        return p

    def imap(self, user=None, password="secret") -> imaplib.IMAP4:
        m = imaplib.IMAP4(self.imap_host, self.imap_port, timeout=30)
        if user:
            m.login(user, password)
        return m

    def submission(self) -> smtplib.SMTP:
        return smtplib.SMTP(self.submission_host, self.submission_port, timeout=30)

    def send(self, to, subject, body="hello\r\n"):
        with self.smtp() as s:
            assert s.sendmail("sender@far.test", [to], f"Subject: {subject}\r\n\r\n{body}") == {}

    def raw(self) -> "RawSmtp":
        return RawSmtp(self.smtp_host, self.smtp_port)

    def curl(self, path, *args):
        """curl against the admin API; returns (status, body)."""
        r = subprocess.run(
            ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *args, f"http://{self.admin}{path}"],
            capture_output=True,
            timeout=30,
        )
        # Bytes, so CRLF line ends reach the test as the server sent them.
        body, _, code = r.stdout.decode("utf-8", "replace").rpartition("\n")
        return int(code), body

    def inbox(self, user, folder="INBOX"):
        return self.cli_json("mailbox", "show", user, folder)

    def wait_delivered(self, user, count, timeout=20):
        deadline = time.time() + timeout
        while True:
            messages = self.inbox(user)
            if len(messages) >= count:
                return messages
            if time.time() > deadline:
                raise AssertionError(f"{user} has {len(messages)} messages, expected {count}")
            time.sleep(0.1)

    def queues(self):
        return {q["name"]: q for q in self.cli_json("queue", "list")}


class RawSmtp:
    """A bare socket for what smtplib will not send: pipelined batches, garbage,
    over-long lines."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def reply(self) -> str:
        """Reads one complete (possibly multi-line) reply."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed: " + repr(lines))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def code(self) -> int:
        return int(self.reply()[:3])

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self):
        self.sock.close()


@pytest.fixture
def make_server(tmp_path):
    """Starts servers with extra config text; stops them all after the test."""
    servers = []

    def make(extra_config=""):
        workdir = tmp_path / f"s{len(servers)}"
        workdir.mkdir()
        s = Server(workdir, extra_config)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(make_server):
    s = make_server()
    s.add_user("alice@localhost")
    s.add_user("bob@localhost")
    return s
