"""`[store] blobs = "s3"`: message bodies as objects in an S3-compatible bucket (moto's
server on loopback), the database staying in data_dir. Written before the rows that
name them commit, read back over IMAP and POP3, deleted once nothing holds them, and a
bucket that goes away turns into `451` with nothing acknowledged lost."""

import os
import shutil
import socket
import threading
import time

import pytest

from conftest import Server

if not shutil.which("moto_server"):
    if "s3" in os.environ.get("LAZARET_TESTS_REQUIRE", ""):
        raise RuntimeError("moto_server (PyPI moto[server]) is required (LAZARET_TESTS_REQUIRE) but not installed")
    pytest.skip("no S3 peer: pip install 'moto[server]'", allow_module_level=True)

import s3_peer  # noqa: E402 (needs boto3, which moto brings)

PREFIX = "site-a/"


class Gate:
    """A TCP relay between the server and the object store that can be shut, as a
    network cut or a stopped service would (connections refused), and opened again."""

    def __init__(self, port):
        self.target = port
        self.listener = None
        self.port = None
        self.open()

    def open(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port or 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(64)
        self.conns = []
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def shut(self):
        # shutdown, not only close: a close leaves a socket another thread waits on
        # (accept, recv) open, and new or pooled connections would pass the cut.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def bucketed(tmp_path):
    peer = s3_peer.peer()
    bucket = peer.new_bucket()
    gate = Gate(peer.port)
    workdir = tmp_path / "s0"
    workdir.mkdir()
    keys = peer.store_config(workdir, bucket, PREFIX).replace(peer.endpoint, f"http://127.0.0.1:{gate.port}")
    s = Server(workdir, "[store]\n" + keys)
    s.add_user("alice@localhost")
    s.bucket, s.peer, s.gate = bucket, peer, gate
    yield s
    s.stop()
    gate.shut()


def objects(s):
    return s.peer.keys(s.bucket, PREFIX + "messages/")


def pack_bytes(s):
    packs = s.data_dir / "blobs" / "packs"
    return sum(p.stat().st_size for p in packs.iterdir()) if packs.exists() else 0


def test_bodies_live_in_the_bucket_and_read_back(bucketed):
    s = bucketed
    bodies = [f"Subject: note {i}\r\nFrom: a@far.test\r\n\r\nbody {i} " + "x" * (1000 * i) + "\r\n" for i in range(3)]
    with s.smtp() as c:
        for body in bodies:
            assert c.sendmail("a@far.test", ["alice@localhost"], body) == {}
    s.wait_delivered("alice@localhost", 3)
    keys = objects(s)
    assert len(keys) == 3, keys
    # Nothing of the messages went to packs on disk.
    assert pack_bytes(s) == 0
    stored = sorted(s.peer.get(s.bucket, k) for k in keys)
    assert all(any(b.encode() in x for b in bodies) for x in stored)

    def fetched():
        m = s.imap("alice@localhost")
        m.select("INBOX")
        _, data = m.fetch("1:*", "(BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        m.logout()
        return [part[1] for part in data if isinstance(part, tuple)]

    got = fetched()
    whole = [x for x in got if b"\r\n\r\nbody" in x]
    heads = [x.strip() for x in got if x not in whole]
    # Each message whole (the Received line added on top), and each header field alone.
    assert sorted(b.encode() for b in bodies) == sorted(x[x.index(b"Subject:"):] for x in whole)
    assert sorted(heads) == sorted(b.split("\r\n")[0].encode() for b in bodies)
    # POP3 reads the same bytes.
    p = s.pop3("alice@localhost")
    count, _ = p.stat()
    assert count == 3
    assert any(b"body 2 " in b"\r\n".join(p.retr(i)[1]) for i in range(1, 4))
    p.quit()

    # After a restart the store finds its messages in the bucket again.
    s.stop()
    s.start()
    assert len(fetched()) == 6
    assert s.cli("check", "--deep").returncode == 0
    status = s.cli_json("status")
    assert status["store"]["messages"] == 3
    assert status["blobs"] == {
        "backend": "s3",
        "bucket": s.bucket,
        "prefix": PREFIX,
        "endpoint": status["blobs"]["endpoint"],
    }
    assert f"Message bodies: s3://{s.bucket}/{PREFIX} at http://127.0.0.1:" in s.cli("status").stdout


def test_deleted_mail_leaves_the_bucket(bucketed):
    s = bucketed
    for i in range(4):
        s.send("alice@localhost", f"to go {i}")
    s.wait_delivered("alice@localhost", 4)
    assert len(objects(s)) == 4
    ids = s.cli("find", "--in", "mailboxes", "--subject", "to go", "--ids-only").stdout
    assert len(ids.split()) == 4
    s.cli("delete", "--no-ndr", "--ids", "-", input=ids)
    deadline = time.time() + 30
    while objects(s) and time.time() < deadline:
        time.sleep(0.2)
    assert objects(s) == []
    assert s.cli("check").returncode == 0


def test_check_names_a_missing_object(bucketed):
    s = bucketed
    s.send("alice@localhost", "lost")
    s.wait_delivered("alice@localhost", 1)
    [key] = objects(s)
    s.peer.delete(s.bucket, key)
    r = s.cli("check", "--deep", check=False)
    assert r.returncode == 1
    assert key.rsplit("/", 1)[1] in r.stdout + r.stderr


def test_bucket_away_means_451_and_nothing_acknowledged_lost(bucketed):
    s = bucketed
    acknowledged = []
    with s.smtp() as c:
        c.sendmail("a@far.test", ["alice@localhost"], "Subject: before\r\n\r\nbefore\r\n")
        acknowledged.append("before")
    s.gate.shut()
    with s.smtp() as c:
        c.ehlo()
        code, text = c.docmd("MAIL FROM:<a@far.test>")
        assert code == 250
        assert c.docmd("RCPT TO:<alice@localhost>")[0] == 250
        assert c.docmd("DATA")[0] == 354
        c.send(b"Subject: during\r\n\r\nduring\r\n.\r\n")
        code, text = c.getreply()
        assert 400 <= code < 500, (code, text)
    s.gate.open()
    with s.smtp() as c:
        c.sendmail("a@far.test", ["alice@localhost"], "Subject: after\r\n\r\nafter\r\n")
        acknowledged.append("after")
    msgs = s.wait_delivered("alice@localhost", 2)
    assert sorted(m["subject"] for m in msgs) == sorted(acknowledged)
    assert len(objects(s)) == 2
    assert s.cli("check", "--deep").returncode == 0


def test_store_keeps_to_its_bucket(bucketed, tmp_path):
    s = bucketed
    s.send("alice@localhost", "kept")
    s.wait_delivered("alice@localhost", 1)
    s.stop()
    text = s.config.read_text()
    # Without the bucket the store would read its messages as missing: refused.
    s.config.write_text(text.replace('blobs = "s3"', 'blobs = "fs"'))
    with pytest.raises(RuntimeError):
        s.start()
    assert "keeps messages in s3://" in (s.workdir / "server.log").read_text()
    # A credentials file others can read is refused, naming the fix.
    creds = s.workdir / "s3-credentials.toml"
    s.config.write_text(text)
    os.chmod(creds, 0o644)
    with pytest.raises(RuntimeError):
        s.start()
    log = (s.workdir / "server.log").read_text()
    assert "chmod 600" in log
    assert s3_peer.SECRET_KEY not in log
    os.chmod(creds, 0o600)
    s.start()
    assert len(s.inbox("alice@localhost")) == 1
