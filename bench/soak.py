"""Soak: a steady mixed load for a long time, and whether the server stays flat.

Real clients on loopback, each at a fixed pace: SMTP sessions bringing mail in for
local users, submission sending mail out to Postfix's smtp-sink (or the aiosmtpd peer
when Postfix is not installed), IMAP clients reading, flagging and expunging, POP3
clients downloading and deleting, and an admin running finds, quarantining what a
find names and purging quarantine. Every 10 s it samples the server's resident memory,
open file descriptors, the database's write-ahead log, the store's messages, and the
p99 latency of each kind of client in that window.

At the end it fits a line through each series (after the first fifth, the warm-up) and
reports the slope per hour and the last fifth against the second: a server that leaks
memory, descriptors or log, or slows down, shows it here. With --guard it exits 1 when
a series grows beyond its bound (what CI runs for two minutes).

    python3 bench/soak.py --seconds 3600        # the long run (bench/soak.sh 1h)
    python3 bench/soak.py --seconds 120 --guard # CI's short one
"""

import argparse
import imaplib
import json
import os
import pathlib
import poplib
import random
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import Server  # noqa: E402

USERS = [f"user{i}@localhost" for i in range(8)]
SAMPLE_EVERY = 10

# --guard bounds: the last fifth against the second fifth of the run.
GUARD = {
    # At most 1.5x, or +96 MB, whichever is larger: the text of mail not yet in the
    # text index is kept in memory up to 64 MB (the indexer waits for a quiet moment
    # that a steady load never gives), which a short run sees fill.
    "rss_mb": (1.5, 96),
    "fds": (1.0, 24),
    "wal_mb": (1.0, 64),
    "smtp_p99_ms": (3.0, 50),
    "imap_p99_ms": (3.0, 50),
    "pop3_p99_ms": (3.0, 50),
    "submission_p99_ms": (3.0, 50),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """Postfix's smtp-sink when installed, else the test suite's aiosmtpd peer."""

    def __init__(self):
        self.port = free_port()
        self.proc = None
        self.peer = None
        if shutil.which("smtp-sink"):
            user = ["-u", "nobody"] if os.geteuid() == 0 else []
            self.proc = subprocess.Popen(
                ["smtp-sink", *user, f"127.0.0.1:{self.port}", "256"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
        else:
            from peer import Peer

            self.peer = Peer(port=self.port).start()

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
        if self.peer:
            self.peer.stop()


class Load:
    def __init__(self, server: Server, seed: int):
        self.server = server
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.latencies = {k: [] for k in ("smtp", "submission", "imap", "pop3", "admin")}
        self.counts = {k: 0 for k in ("smtp", "submission", "imap", "pop3", "admin", "errors")}
        self.stop = threading.Event()

    def record(self, kind, started):
        with self.lock:
            self.latencies[kind].append(time.monotonic() - started)
            self.counts[kind] += 1

    def error(self, kind, e):
        with self.lock:
            self.counts["errors"] += 1
            if self.counts["errors"] <= 5:
                print(f"{kind}: {e!r}", file=sys.stderr)

    def paced(self, interval, kind, work, rng):
        """Runs `work` every `interval` seconds (not faster when it is quick)."""
        next_at = time.monotonic() + rng.uniform(0, interval)
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            next_at += interval
            started = time.monotonic()
            try:
                work(rng)
                self.record(kind, started)
            except Exception as e:  # noqa: BLE001 - counted and reported, load goes on
                self.error(kind, e)

    def smtp(self, rng):
        body = "".join(rng.choice("abcdefghij \r\n") for _ in range(rng.choice([500, 4000, 30000])))
        rcpts = rng.sample(USERS, rng.choice([1, 1, 2]))
        with smtplib.SMTP(self.server.smtp_host, self.server.smtp_port, timeout=30) as s:
            s.sendmail("soak@far.test", rcpts, f"Subject: soak {rng.random()}\r\n\r\n{body}\r\n")

    def submission(self, rng):
        with smtplib.SMTP(self.server.submission_host, self.server.submission_port, timeout=30) as s:
            s.login(USERS[0], "secret")
            s.sendmail(USERS[0], [f"r{rng.randrange(100)}@far.test"], "Subject: out\r\n\r\nbody\r\n")

    def imap(self, rng):
        m = imaplib.IMAP4(self.server.imap_host, self.server.imap_port, timeout=30)
        try:
            m.login(rng.choice(USERS), "secret")
            m.select("INBOX")
            typ, data = m.uid("SEARCH", None, "ALL")
            uids = data[0].split()
            for uid in uids[-3:]:
                m.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
            # Keeps the last 20: mail flows through, the store stays the same size.
            if len(uids) > 20:
                m.uid("STORE", b",".join(uids[:-20]), "+FLAGS", "(\\Deleted)")
                m.expunge()
        finally:
            m.logout()

    def pop3(self, rng, user):
        p = poplib.POP3(self.server.pop3_host, self.server.pop3_port, timeout=30)
        try:
            p.user(user)
            p.pass_("secret")
            count, _ = p.stat()
            for i in range(1, min(count, 100) + 1):
                p.retr(i)
                p.dele(i)
        finally:
            p.quit()

    def admin(self, rng):
        self.server.cli("find", "--subject", f"soak 0.{rng.randrange(10)}", "--limit", "50")
        self.server.cli("quarantine", "--subject", f"soak 0.{rng.randrange(10)}{rng.randrange(10)}",
                        "--reason", "soak", "--yes")
        self.server.cli("quarantine", "purge", "--older-than", "0s", "--yes")

    def start(self):
        plan = [
            (0.1, "smtp", self.smtp, 4),  # 4 clients, 10 sessions/s each: 40/s
            (0.5, "submission", self.submission, 1),
            (0.5, "imap", self.imap, 2),
            # One POP3 client per mailbox: POP3 locks the maildrop (RFC 1939).
            (1.0, "pop3", lambda rng: self.pop3(rng, USERS[-1]), 1),
            (1.0, "pop3", lambda rng: self.pop3(rng, USERS[-2]), 1),
            (5.0, "admin", self.admin, 1),
        ]
        self.threads = []
        for interval, kind, work, clients in plan:
            for _ in range(clients):
                t = threading.Thread(
                    target=self.paced, args=(interval, kind, work, random.Random(self.rng.random())), daemon=True
                )
                t.start()
                self.threads.append(t)

    def take_latencies(self):
        with self.lock:
            taken = self.latencies
            self.latencies = {k: [] for k in taken}
        return taken


def p99(values):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] * 1000


def sample(server: Server, load: Load):
    pid = server.proc.pid
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    wal = server.data_dir / "lazaret.db-wal"
    wal_mb = wal.stat().st_size / 1e6 if wal.exists() else 0.0
    lat = load.take_latencies()
    stats = server.cli_json("status")["store"]
    return {
        "t": time.monotonic(),
        "rss_mb": rss_kb / 1024,
        "fds": fds,
        "wal_mb": wal_mb,
        "messages": stats["messages"],
        **{f"{k}_p99_ms": p99(v) for k, v in lat.items() if k != "admin"},
    }


def slope_per_hour(points):
    """Least-squares slope of (t, y), per hour."""
    pts = [(t, y) for t, y in points if y is not None]
    if len(pts) < 2:
        return 0.0
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    my = sum(y for _, y in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    if var == 0:
        return 0.0
    return sum((t - mt) * (y - my) for t, y in pts) / var * 3600


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def analyse(samples):
    start = samples[0]["t"]
    n = len(samples)
    fifth = max(1, n // 5)
    steady = samples[fifth:]
    report = {}
    for key in GUARD:
        second = mean([s[key] for s in samples[fifth : 2 * fifth]])
        last = mean([s[key] for s in samples[-fifth:]])
        report[key] = {
            "slope_per_hour": round(slope_per_hour([(s["t"] - start, s[key]) for s in steady]), 2),
            "second_fifth": None if second is None else round(second, 2),
            "last_fifth": None if last is None else round(last, 2),
        }
    return report


def guard(report):
    failures = []
    for key, (ratio, extra) in GUARD.items():
        second, last = report[key]["second_fifth"], report[key]["last_fifth"]
        if second is None or last is None:
            continue
        bound = max(second * ratio, second + extra)
        if last > bound:
            failures.append(f"{key}: {second} -> {last} (bound {bound:.1f})")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=3600)
    ap.add_argument("--guard", action="store_true", help="exit 1 when a series grows beyond its bound")
    ap.add_argument("--json", help="write the samples and the report to this file")
    args = ap.parse_args()

    sink = Sink()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="lazaret-soak-"))
    server = Server(
        workdir,
        "[[connector]]\n"
        'name = "sink"\n'
        'domains = ["far.test"]\n'
        f'smarthost = "127.0.0.1:{sink.port}"\n'
        "\n[limits.submission]\nmessages = []\nrecipients = []\n",
    )
    try:
        for user in USERS:
            server.add_user(user)
        load = Load(server, seed=7)
        load.start()
        samples = []
        ends = time.monotonic() + args.seconds
        while time.monotonic() < ends:
            time.sleep(min(SAMPLE_EVERY, max(0, ends - time.monotonic())))
            s = sample(server, load)
            samples.append(s)
            print(
                f"{s['t'] - samples[0]['t']:6.0f}s rss {s['rss_mb']:6.1f} MB, fds {s['fds']:3}, "
                f"wal {s['wal_mb']:5.1f} MB, {s['messages']:6} messages, p99 smtp "
                f"{s['smtp_p99_ms'] or 0:6.1f} ms imap {s['imap_p99_ms'] or 0:6.1f} ms "
                f"pop3 {s['pop3_p99_ms'] or 0:6.1f} ms",
                file=sys.stderr,
                flush=True,
            )
        load.stop.set()
        for t in load.threads:
            t.join(timeout=60)
        alive = server.proc.poll() is None
    finally:
        server.stop()
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    report = analyse(samples)
    result = {"seconds": args.seconds, "counts": load.counts, "server_alive": alive, "series": report}
    print(json.dumps(result, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"result": result, "samples": samples}, indent=2))
    failures = guard(report) if args.guard else []
    if not alive:
        failures.append("the server died")
    if load.counts["errors"] > max(5, sum(load.counts.values()) // 1000):
        failures.append(f"{load.counts['errors']} client errors")
    if failures:
        print("SOAK GUARD FAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
