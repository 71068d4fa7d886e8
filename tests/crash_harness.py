"""Crash consistency under load: SIGKILL the server at random moments while it works.

Real clients on loopback do everything at once: SMTP clients send tagged messages to
one or two local users, submission clients send mail out to a real SMTP peer
(aiosmtpd), IMAP clients read and expunge, and an admin quarantines and restores.
At a random moment the server is SIGKILLed and started again on the same data
directory. After every restart, before load resumes:

- `lazaret check` finds no fault (rows vs message bytes, UIDs, queue items, index);
- every acknowledged copy (message, recipient) is present exactly once, in a folder,
  a queue or quarantine (in one consistent snapshot: `find` is one SQL statement) —
  copies an IMAP client may have expunged at most once; mail sent out is queued
  (at most once) or already at the peer.

At the end, once the queues are empty: every acknowledged message sent out reached
the peer, duplicates counted (at-least-once delivery allows one per delivery in
flight at a kill), and every stored message is byte for byte what the client sent.

`tests/test_crash.py` runs 20 cycles in CI; for the long run:

    python3 tests/crash_harness.py --cycles 200
"""

import argparse
import hashlib
import http.client
import imaplib
import json
import pathlib
import random
import smtplib
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from conftest import Server  # noqa: E402
from peer import Peer  # noqa: E402

LOCAL_USERS = ["alice@localhost", "bob@localhost", "carol@localhost"]
SMTP_CLIENTS = 16
SUBMISSION_CLIENTS = 4
IMAP_CLIENTS = 2


def config(peer: Peer) -> str:
    return (
        "[[connector]]\n"
        'name = "relay"\n'
        'domains = ["far.test"]\n'
        f'smarthost = "{peer.address}"\n'
        '\n[delivery]\npoll_interval = "1s"\nretry_schedule = ["1s"]\n'
        # The harness sends far more than a person would; the per-user rate limit is
        # not what it tests.
        "\n[limits.submission]\nmessages = []\nrecipients = []\n"
    )


def message(subject: str, sender: str, rcpts, rng: random.Random) -> str:
    size = rng.choice([200, 2_000, 20_000, 150_000])
    body = "".join(rng.choice("0123456789abcdef") for _ in range(size))
    body = "\r\n".join(body[i : i + 76] for i in range(0, len(body), 76)) + "\r\n"
    digest = hashlib.sha256(body.encode()).hexdigest()
    return (
        f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
        f"X-Test-Sum: {digest}\r\n\r\n{body}"
    )


class Harness:
    def __init__(self, server: Server, peer: Peer, seed: int = 1):
        self.server = server
        self.peer = peer
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        # (subject, recipient) acknowledged with 250.
        self.local_acked = set()
        self.remote_acked = set()
        self.kills = 0
        self.checks = 0
        self.counter = 0

    def next_subject(self, kind: str) -> str:
        with self.lock:
            self.counter += 1
            return f"crash-{kind}-{self.counter}"

    # -- load --------------------------------------------------------------

    def smtp_client(self, stop, rng):
        while not stop.is_set():
            rcpts = rng.sample(LOCAL_USERS, rng.choice([1, 1, 2]))
            kind = rng.choice(["m", "m", "x", "q"])
            subject = self.next_subject(kind)
            try:
                with smtplib.SMTP(self.server.smtp_host, self.server.smtp_port, timeout=5) as s:
                    if s.sendmail("load@far.test", rcpts, message(subject, "load@far.test", rcpts, rng)) == {}:
                        with self.lock:
                            self.local_acked.update((subject, r) for r in rcpts)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)

    def submission_client(self, stop, rng):
        while not stop.is_set():
            rcpts = [f"ext{rng.randrange(50)}@far.test"]
            subject = self.next_subject("out")
            try:
                with smtplib.SMTP(self.server.submission_host, self.server.submission_port, timeout=5) as s:
                    s.login("alice@localhost", "secret")
                    if s.sendmail("alice@localhost", rcpts, message(subject, "alice@localhost", rcpts, rng)) == {}:
                        with self.lock:
                            self.remote_acked.update((subject, r) for r in rcpts)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)

    def imap_client(self, stop, rng):
        user = rng.choice(LOCAL_USERS)
        while not stop.is_set():
            try:
                m = imaplib.IMAP4(self.server.imap_host, self.server.imap_port, timeout=5)
                m.login(user, "secret")
                while not stop.is_set():
                    m.select("INBOX")
                    typ, data = m.uid("SEARCH", None, "ALL")
                    uids = data[0].split()
                    for uid in rng.sample(uids, min(3, len(uids))):
                        m.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                    typ, data = m.uid("SEARCH", None, "SUBJECT", "crash-x-")
                    doomed = data[0].split()[:5]
                    if doomed:
                        m.uid("STORE", b",".join(doomed), "+FLAGS", "(\\Deleted)")
                        m.expunge()
                    time.sleep(0.05)
            except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort):
                time.sleep(0.05)

    def admin(self, stop, rng):
        while not stop.is_set():
            try:
                self.server.cli("quarantine", "--subject", "crash-q-", "--reason", "harness", "--yes", check=False)
                r = self.server.cli("quarantine", "list", "--json", check=False)
                if r.returncode == 0:
                    ids = [h["id"] for h in json.loads(r.stdout)]
                    if ids:
                        self.server.cli("quarantine", "restore", *ids[: rng.randint(1, 50)], check=False)
            except Exception:  # noqa: BLE001 - the server may be gone mid-call
                pass
            time.sleep(rng.uniform(0.05, 0.3))

    # -- checks ------------------------------------------------------------

    def api(self, method, path, body=None):
        host, port = self.server.admin.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {"Authorization": f"Bearer {self.server.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        assert r.status == 200, (method, path, r.status, data[:500])
        return json.loads(data)

    def stored(self):
        """Every harness message, in one snapshot: (subject, recipient) -> copies."""
        found = self.api(
            "POST", "/api/find", {"filters": {"subject": "crash-"}, "in": "all", "limit": 10_000_000}
        )["messages"]
        copies = {}
        for m in found:
            location = m["location"]
            if location.startswith("mailbox:"):
                owners = [location[len("mailbox:") :].split("/", 1)[0]]
            else:
                owners = m["to"]
            for r in owners:
                copies.setdefault((m["subject"], r.lower()), []).append(m)
        return found, copies

    def at_peer(self):
        with self.peer.lock:
            seen = {}
            for msg in self.peer.messages:
                subject = next(
                    (line[9:].decode() for line in msg["content"].split(b"\r\n") if line.startswith(b"Subject: ")), ""
                )
                for r in msg["rcpt_tos"]:
                    seen[(subject, r.lower())] = seen.get((subject, r.lower()), 0) + 1
            return seen

    def verify(self):
        r = self.server.cli("check", check=False)
        assert r.returncode == 0, f"lazaret check after kill {self.kills}:\n{r.stdout}\n{r.stderr}"
        self.checks += 1
        _, copies = self.stored()
        peer = self.at_peer()
        with self.lock:
            local, remote = set(self.local_acked), set(self.remote_acked)
        lost, doubled = [], []
        for key in local:
            n = len(copies.get(key, []))
            if n > 1:
                doubled.append((key, [c["location"] for c in copies[key]]))
            elif n == 0 and not key[0].startswith("crash-x-"):
                lost.append(key)
        for key in remote:
            n = len(copies.get(key, []))
            if n > 1:
                doubled.append((key, [c["location"] for c in copies[key]]))
            elif n == 0 and peer.get(key, 0) == 0:
                lost.append(key)
        assert not lost, f"after kill {self.kills}: {len(lost)} acknowledged copies lost, e.g. {lost[:5]}"
        assert not doubled, f"after kill {self.kills}: {len(doubled)} copies stored twice, e.g. {doubled[:3]}"

    def final(self):
        deadline = time.time() + 120
        while any(q["messages"] for q in self.server.queues().values()):
            assert time.time() < deadline, self.server.queues()
            time.sleep(0.2)
        self.verify()
        peer = self.at_peer()
        with self.lock:
            remote = set(self.remote_acked)
        missing = [k for k in remote if peer.get(k, 0) == 0]
        assert not missing, f"{len(missing)} messages sent out never reached the peer, e.g. {missing[:5]}"
        duplicates = sum(n - 1 for n in peer.values() if n > 1)
        found, copies = self.stored()
        with self.lock:
            local = set(self.local_acked)
        expunged = sum(1 for k in local if k[0].startswith("crash-x-") and not copies.get(k))
        audit = json.loads(self.server.cli("audit", "--json").stdout)
        # Every stored message is byte for byte what its client sent.
        seen_ids = set()
        for m in found:
            if m["message"] in seen_ids:
                continue
            seen_ids.add(m["message"])
            raw = self.raw(m["id"])
            head, _, body = raw.partition(b"\r\n\r\n")
            want = next(line[12:] for line in head.split(b"\r\n") if line.startswith(b"X-Test-Sum: "))
            assert hashlib.sha256(body).hexdigest().encode() == want, f"{m['subject']} is damaged"
        return {
            "kills": self.kills,
            "checks": self.checks,
            "local_copies_acked": len(self.local_acked),
            "sent_out_acked": len(remote),
            "peer_deliveries": sum(peer.values()),
            "peer_duplicates": duplicates,
            "messages_byte_checked": len(seen_ids),
            "copies_expunged_over_imap": expunged,
            "copies_in_quarantine": sum(1 for m in found if m["location"] == "quarantine"),
            "quarantine_actions": sum(1 for a in audit if a["action"] == "quarantine"),
            "restore_actions": sum(1 for a in audit if a["action"] == "restore"),
        }

    def raw(self, id_):
        host, port = self.server.admin.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        c.request("GET", f"/api/messages/{id_}/raw", headers={"Authorization": f"Bearer {self.server.token}"})
        r = c.getresponse()
        data = r.read()
        c.close()
        assert r.status == 200, (id_, r.status)
        return data

    # -- the run -----------------------------------------------------------

    def cycle(self, load_seconds: float):
        stop = threading.Event()
        workers = (
            [self.smtp_client] * SMTP_CLIENTS
            + [self.submission_client] * SUBMISSION_CLIENTS
            + [self.imap_client] * IMAP_CLIENTS
            + [self.admin]
        )
        threads = [
            threading.Thread(target=w, args=(stop, random.Random(self.rng.random())), daemon=True) for w in workers
        ]
        for t in threads:
            t.start()
        time.sleep(load_seconds)
        self.server.kill9()
        self.kills += 1
        stop.set()
        for t in threads:
            t.join()
        self.server.start()
        self.verify()

    def run(self, cycles: int, progress=False):
        for i in range(cycles):
            self.cycle(self.rng.uniform(0.3, 2.0))
            if progress:
                print(
                    f"\rkill {i + 1}/{cycles}: {len(self.local_acked)} local copies and "
                    f"{len(self.remote_acked)} sent out acknowledged, all present",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        if progress:
            print(file=sys.stderr)
        return self.final()


def setup(workdir: pathlib.Path):
    peer = Peer().start()
    server = Server(workdir, config(peer))
    for user in LOCAL_USERS:
        server.add_user(user)
    return server, peer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lazaret-crash-") as tmp:
        server, peer = setup(pathlib.Path(tmp))
        started = time.time()
        try:
            result = Harness(server, peer, args.seed).run(args.cycles, progress=True)
        finally:
            server.stop()
            peer.stop()
        result["seconds"] = round(time.time() - started)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
