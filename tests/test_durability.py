"""Promise 1: a message that got 250 after DATA survives kill -9 at any moment.

Concurrent clients send uniquely tagged messages while the server is SIGKILLed at
random moments and restarted. Afterwards every acknowledged message must be in the
mailbox, byte-for-byte intact, and nothing half-written may be visible."""

import hashlib
import random
import smtplib
import threading
import time

CLIENTS = 8
CYCLES = 4


def sender(srv, tag, acked, stop):
    n = 0
    while not stop.is_set():
        n += 1
        body = "".join(random.choice("0123456789abcdef") for _ in range(random.randint(100, 20000)))
        body = "\r\n".join(body[i : i + 76] for i in range(0, len(body), 76)) + "\r\n"
        subject = f"dur-{tag}-{n}"
        msg = f"Subject: {subject}\r\nX-Test-Sum: {hashlib.sha256(body.encode()).hexdigest()}\r\n\r\n{body}"
        try:
            with smtplib.SMTP(srv.smtp_host, srv.smtp_port, timeout=5) as s:
                if s.sendmail("load@far.test", ["alice@localhost"], msg) == {}:
                    acked.append(subject)
        except (OSError, smtplib.SMTPException):
            time.sleep(0.01)


def parse(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = dict(
        line.split(b": ", 1) for line in head.split(b"\r\n") if b": " in line and not line.startswith(b"\t")
    )
    return headers, body


def test_sigkill_under_load_loses_nothing(server):
    acked = []
    rng = random.Random(1234)
    for cycle in range(CYCLES):
        stop = threading.Event()
        threads = [
            threading.Thread(target=sender, args=(server, f"{cycle}.{i}", acked, stop)) for i in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 2.0))
        server.kill9()
        stop.set()
        for t in threads:
            t.join()
        server.start()
    assert len(acked) > 50, f"too little load to prove anything: {len(acked)}"

    # Let the queue runner finish what was queued at each kill.
    deadline = time.time() + 60
    while any(q["messages"] for q in server.queues().values()):
        assert time.time() < deadline, server.queues()
        time.sleep(0.2)

    inbox = server.inbox("alice@localhost")
    by_subject = {}
    for m in inbox:
        by_subject.setdefault(m["subject"], m)
    missing = [s for s in acked if s not in by_subject]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"

    uids = [m["uid"] for m in inbox]
    assert len(uids) == len(set(uids)), "UIDs are unique"
    # Every visible message (acknowledged or not) is whole: its checksum matches.
    for m in inbox:
        status, raw = server.curl(f"/api/messages/{m['id']}/raw", "-H", f"Authorization: Bearer {server.token}")
        assert status == 200
        headers, body = parse(raw.encode())
        want = headers[b"X-Test-Sum"].decode()
        assert hashlib.sha256(body).hexdigest() == want, f"{m['subject']} is damaged"
    print(f"{len(acked)} acknowledged, {len(inbox)} stored, over {CYCLES} kill -9 cycles")


def test_check_is_clean_while_mail_streams_in(server):
    """`lazaret check` reads the main database and lookups.db, two files committed one
    after the other: its view of them must be one moment of both, or a message
    committed between its two reads shows as a fault that is not there."""
    acked = []
    stop = threading.Event()
    threads = [threading.Thread(target=sender, args=(server, f"chk.{i}", acked, stop)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        reports = []
        for _ in range(100):
            r = server.cli("check", check=False)
            reports.append(r)
            assert r.returncode == 0, f"check under load:\n{r.stdout}\n{r.stderr}"
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(acked) > 50, f"too little load to prove anything: {len(acked)}"
