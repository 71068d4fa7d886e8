"""A full disk (issue #20), on a small tmpfs the test mounts: SMTP answers `452 4.3.1`
instead of taking what it cannot store, IMAP APPEND answers `NO [OVERQUOTA]`, the
server and its writer live on, nothing stored is damaged, admin actions work in the
reserve (`[store] min_free`), and mail flows again once space returns."""

import concurrent.futures
import os
import shutil
import smtplib
import subprocess
import tempfile
import pathlib

import pytest

from conftest import Server, embedded_only
from test_outbound import wait_for

# On a PostgreSQL store the database's disk is PostgreSQL's: a full one answers 451
# (docs/SCALE-OUT.md); these tests fill the data directory's own disk.
pytestmark = embedded_only

MB = 1 << 20
REQUIRED = "diskfull" in os.environ.get("LAZARET_TESTS_REQUIRE", "")


@pytest.fixture
def small_fs():
    """A 64 MB tmpfs of its own (needs root: CI runs as root)."""
    mount = pathlib.Path(tempfile.mkdtemp(prefix="lazaret-full-"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        if REQUIRED:
            pytest.fail(f"cannot mount a tmpfs: {r.stderr.decode()}")
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])
    shutil.rmtree(mount, ignore_errors=True)


def fill(fs: pathlib.Path, leave: int) -> pathlib.Path:
    """A filler file that leaves about `leave` bytes free."""
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    filler = fs / "filler"
    with open(filler, "ab") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def quiet(s: Server) -> bool:
    store = s.cli_json("status")["store"]
    return not store.get("text_index_behind") and not store.get("clusters_behind")


def message(subject, size):
    line = "x" * 998 + "\r\n"
    return f"Subject: {subject}\r\n\r\n" + line * (size // len(line))


def send(s: Server, subject, size=MB):
    """(code, text) of the server's verdict on one message."""
    try:
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=30) as c:
            c.sendmail("x@far.test", ["alice@localhost"], message(subject, size))
            return 250, ""
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["alice@localhost"]
        return code, text.decode()
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode()


def server_on(fs: pathlib.Path, min_free: str) -> Server:
    workdir = fs / "w"
    workdir.mkdir()
    s = Server(workdir, f'[store]\nmin_free = "{min_free}"\n')
    s.add_user("alice@localhost")
    return s


def test_the_reserve_refuses_new_mail_and_admin_actions_still_work(small_fs):
    s = server_on(small_fs, "24MB")
    try:
        assert send(s, "before") == (250, "")
        filler = fill(small_fs, 30 * MB)
        verdicts = [send(s, f"flood {i}") for i in range(12)]
        codes = [c for c, _ in verdicts]
        assert 250 in codes and 452 in codes, verdicts
        assert all(c in (250, 452) for c in codes), verdicts
        refused = next(t for c, t in verdicts if c == 452)
        assert "4.3.1" in refused and "storage" in refused
        # A message that would eat into the reserve is refused after its data...
        assert codes[codes.index(452) :] == [452] * (len(codes) - codes.index(452)), codes
        accepted = codes.count(250)

        # ... and below the reserve, every message at its first recipient (before the
        # client sends the data), status says so.
        fill(small_fs, 20 * MB)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=30) as c:
                c.sendmail("x@far.test", ["alice@localhost"], "Subject: small\r\n\r\nhi\r\n")
        code, text = e.value.recipients["alice@localhost"]
        assert code == 452 and text.startswith(b"4.3.1"), (code, text)
        status = s.cli_json("status")
        assert status["disk"]["refusing_mail"] is True
        assert "REFUSING NEW MAIL" in s.cli("status").stdout

        m = s.imap("alice@localhost")
        typ, data = m.append("INBOX", None, None, message("append", 64 * 1024).encode())
        assert typ == "NO" and b"[OVERQUOTA]" in data[0], (typ, data)
        m.logout()

        # Admin actions take a few rows each: they go on in the reserve.
        s.wait_delivered("alice@localhost", 1 + accepted)
        r = s.cli("quarantine", "--subject", "flood", "--reason", "disk test", "--yes")
        assert f"quarantined {accepted} message(s)" in r.stdout, r.stdout
        r = s.cli("quarantine", "restore", *[h["id"] for h in s.cli_json("quarantine", "list")])
        assert f"restored {accepted}" in r.stdout
        assert s.cli("check", "--deep").returncode == 0

        # Space returns: mail flows again.
        filler.unlink()
        assert send(s, "after") == (250, "")
        assert s.cli_json("status")["disk"]["refusing_mail"] is False
        s.wait_delivered("alice@localhost", 2 + accepted)
    finally:
        s.stop()


def test_a_truly_full_disk_answers_452_and_the_server_lives_on(small_fs):
    # No reserve: writes do fail with ENOSPC.
    s = server_on(small_fs, "0")
    try:
        assert send(s, "before") == (250, "")
        s.wait_delivered("alice@localhost", 1)
        # Leave exactly as many pages free as the message has bytes: it passes the
        # free-space check, and its Received: line, its record header in the pack or
        # the database's pages then find no room.
        size = 64 * 4096
        codes, failed = [], False
        for attempt in range(20):
            # The server's background work (text index, clusters) writes too: once it is
            # done, the bytes left are the message's alone (else every try met 452).
            wait_for(lambda: quiet(s), what="the server's background work")
            filler = fill(small_fs, size)
            code, text = send(s, f"tight {attempt}", size)
            codes.append(code)
            log = (s.workdir / "server.log").read_text()
            assert code in (250, 452), (code, text, log[-1500:])
            assert s.proc.poll() is None, "the server is alive"
            if "No space left on device" in log or "database or disk is full" in log:
                failed = True
                break
        assert failed, f"no write failed for want of space in {len(codes)} tries: {codes}"
        assert codes[-1] == 452, "the message that found no room was refused with 452"

        m = s.imap("alice@localhost")
        typ, data = m.append("INBOX", None, None, message("append", 4 * MB).encode())
        assert typ == "NO" and b"[OVERQUOTA]" in data[0], (typ, data)
        m.logout()

        filler.unlink()
        # The writer did not die: new mail is stored and delivered, and every message
        # acknowledged before is whole.
        assert send(s, "after") == (250, "")
        accepted = codes.count(250)
        inbox = s.wait_delivered("alice@localhost", 2 + accepted)
        assert {m["subject"] for m in inbox} >= {"before", "after"}
        r = s.cli("check", "--deep", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        # And after a restart too.
        s.stop()
        s.start()
        assert s.cli("check", "--deep", check=False).returncode == 0
        assert len(s.inbox("alice@localhost")) == 2 + accepted
    finally:
        s.stop()
