"""Automatic hold ([outbreak] hold_growth) end to end over SMTP: a worm family arriving
with a new sender and subject on every copy grows its cluster past the rule; from then
on its new copies stay frozen in `inbound` (never delivered, never bounced) and
`status`, `clusters`, the audit log and a notice to [outbreak] notify say so.
`thaw --cluster` lets the held copies go (new ones are still held), `quarantine
--cluster` takes them; one sender's mailing is never held, and a cluster the admin
allows is let go at once and never held again."""

import email
import smtplib
import time

import pytest

from worm_corpus import Corpus

HOLD = """
[outbreak]
hold_growth = "6/10m"
hold_senders = 3
notify = "postmaster@localhost"
"""


@pytest.fixture
def held(make_server):
    s = make_server(HOLD)
    corpus = Corpus(seed=5, users=6)
    s.cli("domain", "add", "corp.test")
    for u in corpus.users:
        s.add_user(u)
    s.add_user("postmaster@localhost")
    return s, corpus


def send(server, mail, sender=None):
    """Sends raw messages in one session, each from its From (or `sender`) to its To."""
    with smtplib.SMTP(server.smtp_host, server.smtp_port, timeout=30) as s:
        for raw in mail:
            msg = email.message_from_bytes(raw)
            assert s.sendmail(sender or msg["From"], [msg["To"]], raw) == {}


def wait(predicate, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def store(server):
    return server.cli_json("status")["store"]


def worm_cluster(server):
    clusters = server.cli_json("clusters", "--min", "2")
    assert clusters, "the worm is a cluster"
    return clusters[0]


def count(server, cluster, where, *extra):
    return len(server.cli_json("find", "--cluster", str(cluster), "--in", where, "--limit", "0", *extra))


def test_worm_is_held_reported_thawed_and_quarantined(held):
    server, corpus = held
    send(server, [raw for _, _, raw in corpus.worms(1, 20)])
    # Every copy is either delivered (before the hold) or frozen in inbound.
    st = wait(lambda: (lambda s: s if s["held_copies"] >= 10 and s["queued"] == s["held_copies"] else None)(store(server)),
              "the copies after the hold to be frozen")
    assert st["clusters_held"] == 1
    cluster = worm_cluster(server)
    c = cluster["id"]
    assert cluster["held_since"] is not None and cluster["held_copies"] == st["held_copies"]
    delivered = count(server, c, "mailboxes")
    assert delivered < 10, "the hold starts at the sixth new member"
    assert delivered + st["held_copies"] >= 19, "(near-duplicate matching may miss a copy)"
    frozen = server.cli_json("find", "--cluster", str(c), "--in", "queues", "--state", "frozen", "--limit", "0")
    assert len(frozen) == st["held_copies"]
    assert {m["location"] for m in frozen} == {"queue:inbound"}
    # status says so in words, the audit log once, and the notice reached postmaster.
    assert "OUTBREAK HOLD: 1 cluster(s) held" in server.cli("status").stdout
    holds = [a for a in server.cli_json("audit") if a["action"] == "cluster hold"]
    assert len(holds) == 1 and holds[0]["actor"] == "outbreak" and holds[0]["query"] == f"cluster {c}"
    notice = server.wait_delivered("postmaster@localhost", 1)[0]
    assert notice["subject"].startswith(f"[Lazaret] outbreak cluster {c} held")
    assert "HELD" in server.cli("clusters").stdout
    # No bounce went anywhere: nothing but the held copies is queued.
    assert store(server)["queued"] == st["held_copies"]

    # The admin lets these copies go: they are delivered; the hold stays for new ones.
    server.cli("thaw", "--cluster", str(c), "--yes")
    wait(lambda: count(server, c, "mailboxes") == delivered + st["held_copies"], "thawed copies delivered")
    assert store(server)["held_copies"] == 0
    send(server, [corpus.worm_copy(corpus.family(0)) for _ in range(3)])
    wait(lambda: store(server)["held_copies"] == 3, "new copies held again")
    assert server.cli_json("clusters", "show", str(c))["held_copies"] == 3

    # Quarantine takes the cluster everywhere, the held copies included.
    server.cli("quarantine", "--cluster", str(c), "--yes")
    assert store(server)["held_copies"] == 0
    assert count(server, c, "queues") == 0 and count(server, c, "mailboxes") == 0
    assert count(server, c, "quarantine") == delivered + st["held_copies"] + 3


def test_a_mailing_is_not_held_and_an_allowed_cluster_is_let_go(held):
    server, corpus = held
    # One newsletter from one list server: a mailing, never held.
    letters = [corpus.newsletter(0) for _ in range(12)]
    send(server, letters)
    wait(lambda: store(server)["in_mailboxes"] == 12, "the mailing delivered")
    assert store(server)["clusters_held"] == 0
    # Another newsletter sent through several list servers looks like a worm at first.
    letters = [corpus.newsletter(1) for _ in range(12)]
    for i, raw in enumerate(letters):
        send(server, [raw], sender=f"bounce{i % 4}@list{i % 4}.example")
    st = wait(lambda: (lambda s: s if s["held_copies"] >= 4 and s["queued"] == s["held_copies"] else None)(store(server)),
              "the newsletter held")
    news = [c for c in server.cli_json("clusters", "--min", "2") if c["held_since"] is not None]
    assert len(news) == 1
    n = news[0]["id"]
    out = server.cli("clusters", "allow", str(n)).stdout
    assert f"{st['held_copies']} held cop(ies) let go" in out
    wait(lambda: count(server, n, "mailboxes") == 12, "the held copies delivered")
    shown = server.cli_json("clusters", "show", str(n))
    assert shown["allowed"] is True and shown["held_since"] is None
    # Allowed: never held again, however fast it grows.
    for i, raw in enumerate(corpus.newsletter(1) for _ in range(8)):
        send(server, [raw], sender=f"bounce{i % 4}@list{i % 4}.example")
    wait(lambda: count(server, n, "mailboxes") == 20, "new copies delivered")
    assert store(server)["held_copies"] == 0
    allow = [a for a in server.cli_json("audit") if a["action"] == "clusters allow"]
    assert allow and allow[0]["count"] == st["held_copies"]
