"""Message tracking end to end: `lazaret trace` shows the whole path of a message
delivered to a real SMTP peer (aiosmtpd), of one bounced by it, and of one quarantined;
the structured log has one line per message event (text and JSON); `lazaret exposure`
lists exactly the users who opened a worm copy over IMAP or POP3, who forwarded it on
through submission, and who deleted it — by filters and by outbreak cluster; the event
log is pruned after `[log] event_retention`."""

import csv
import email.message
import io
import json
import smtplib
import time

import pytest

from peer import Peer
from test_outbound import relay_config, wait_for

PAYLOAD = b"MZ\x90\x00 worm payload that every copy carries \x00\x01\x02" * 20


def worm(to, subject, sender="friend@far.test"):
    m = email.message.EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = f"<{subject.replace(' ', '-')}@far.test>"
    m.set_content("Please open the attached invoice today.\n")
    m.add_attachment(PAYLOAD, maintype="application", subtype="octet-stream", filename="invoice.exe")
    return m.as_bytes().replace(b"\n", b"\r\n")


def send(server, sender, to, raw, port=None):
    """Sends over SMTP; returns the store id from the `250 ... queued as ID` reply."""
    with smtplib.SMTP(server.smtp_host, port or server.smtp_port, timeout=30) as s:
        s.ehlo()
        s.mail(sender)
        assert s.rcpt(to)[0] == 250
        code, reply = s.data(raw)
        assert code == 250
        return reply.decode().rsplit(" ", 1)[-1]


def submit(server, user, rcpts, raw):
    with server.submission() as s:
        s.login(user, "secret")
        s.ehlo()
        s.mail(user)
        for r in rcpts:
            assert s.rcpt(r)[0] == 250
        code, reply = s.data(raw)
        assert code == 250
        return reply.decode().rsplit(" ", 1)[-1]


def trace(server, *args):
    [t] = server.cli_json("trace", *args)
    return t


def events(t):
    return [(e["event"], e["who"]) for e in t["events"]]


@pytest.fixture
def relay(make_server):
    peer = Peer(reject={"nobody@far.test": "550 5.1.1 no such user here"})
    peer.start()
    server = make_server(relay_config(peer) + '\n[log]\nformat = "json"\n')
    server.add_user("alice@localhost")
    yield server, peer
    peer.stop()


def test_trace_shows_delivered_bounced_and_quarantined_paths(relay):
    server, peer = relay
    # Delivered: submitted by alice, sent on to the peer.
    out = email.message.EmailMessage()
    out["From"], out["To"], out["Subject"] = "alice@localhost", "ok@far.test", "report"
    out["Message-ID"] = "<report-1@localhost>"
    out.set_content("numbers\n")
    delivered = submit(server, "alice@localhost", ["ok@far.test"], out.as_bytes().replace(b"\n", b"\r\n"))
    wait_for(lambda: peer.messages, what="delivery to the peer")
    # Bounced: the peer refuses the recipient for good; alice gets a DSN.
    bounced = submit(server, "alice@localhost", ["nobody@far.test"],
                     b"From: alice@localhost\r\nSubject: typo\r\n\r\nhi\r\n")
    [dsn] = server.wait_delivered("alice@localhost", 1)
    # Quarantined: a message in alice's INBOX, moved out by the admin.
    kept = send(server, "friend@far.test", "alice@localhost", worm("alice@localhost", "invoice 1"))
    server.wait_delivered("alice@localhost", 2)
    server.cli("quarantine", "--subject", "invoice 1", "--yes")

    # Delivered mail is no longer stored; the log still knows its path, found by
    # its store id and by its Message-ID alike.
    def delivered_path():
        t = trace(server, delivered)
        return t if ("delivered", "ok@far.test") in events(t) else None
    wait_for(delivered_path, what="the delivered event")
    t = delivered_path()
    assert t["id"] == delivered and t["message_id"] == "report-1@localhost"
    kinds = [e["event"] for e in t["events"]]
    assert kinds[0] == "submitted" and t["events"][0]["who"] == "alice@localhost"
    assert kinds.index("queued") < kinds.index("delivered") < kinds.index("gone")
    [d] = [e for e in t["events"] if e["event"] == "delivered"]
    assert d["detail"] == f"to {peer.address}" or peer.address.split(":")[-1] in d["detail"]
    assert t["now"] == [] and t["exists"] is False
    assert trace(server, "--message-id", "<report-1@localhost>")["id"] == delivered
    # The table a person reads.
    text = server.cli("trace", delivered).stdout
    assert "submitted" in text and "delivered" in text and "ok@far.test" in text

    t = trace(server, bounced)
    [b] = [e for e in t["events"] if e["event"] == "bounced"]
    assert b["who"] == "nobody@far.test" and "550 5.1.1" in b["detail"]
    assert f"DSN {dsn['message']}" in b["detail"], b
    d = trace(server, dsn["message"])
    assert events(d)[0] == ("accepted", "") and "via dsn" in d["events"][0]["detail"]
    assert ("delivered", "alice@localhost") in events(d)

    t = trace(server, kept)
    path = events(t)
    assert path[0] == ("accepted", "friend@far.test")
    assert ("delivered", "alice@localhost") in path
    [q] = [e for e in t["events"] if e["event"] == "quarantined"]
    assert q["who"] == "alice@localhost" and "mailbox:alice@localhost/INBOX" in q["detail"]
    assert len(t["now"]) == 1 and t["now"][0].startswith("quarantine:x")

    # An unknown id is a clear error, not an empty answer.
    r = server.cli("trace", "ffffffffffffffff", check=False)
    assert r.returncode != 0 and "no message ffffffffffffffff" in r.stderr

    # One JSON log line per message event, with the store id.
    lines = [json.loads(l) for l in (server.workdir / "server.log").read_text().splitlines() if l.startswith("{")]
    mine = [l for l in lines if l.get("target") == "lazaret::message" and l.get("id") == delivered]
    assert [l["message"] for l in mine][:1] == ["submitted"]
    assert any(l["message"] == "delivered" and l.get("who") == "ok@far.test" for l in mine), mine


def test_text_log_has_one_line_per_message_event(server):
    stored = send(server, "friend@far.test", "bob@localhost", b"Subject: hi\r\n\r\nhello\r\n")
    server.wait_delivered("bob@localhost", 1)
    wait_for(lambda: "delivered" in (server.workdir / "server.log").read_text(), what="the log line")
    lines = [l for l in (server.workdir / "server.log").read_text().splitlines() if f"id={stored}" in l]
    assert any("lazaret::message: accepted" in l and "who=friend@far.test" in l for l in lines), lines
    assert any("lazaret::message: delivered" in l and "who=bob@localhost" in l for l in lines), lines


@pytest.fixture
def outbreak(server):
    """A worm reaches four users, one copy each with its own subject: alice opens hers
    over IMAP and forwards it on, bob retrieves his over POP3, carol's client fetches
    only the headers, dave reads his and deletes it. Then the admin quarantines every
    copy that is left."""
    for u in ("carol@localhost", "dave@localhost"):
        server.add_user(u)
    ids = {}
    for n, user in enumerate(("alice", "bob", "carol", "dave")):
        ids[user] = send(server, "friend@far.test", f"{user}@localhost", worm(f"{user}@localhost", f"invoice {n}"))
    for user in ("alice", "bob", "carol", "dave"):
        server.wait_delivered(f"{user}@localhost", 1)

    m = server.imap("alice@localhost")
    m.select("INBOX")
    typ, _ = m.fetch("1", "(BODY[])")  # sets \Seen, downloads
    assert typ == "OK"
    m.logout()
    forward = worm("erin@localhost", "fwd invoice", sender="alice@localhost")
    server.add_user("erin@localhost")
    ids["forward"] = submit(server, "alice@localhost", ["erin@localhost"], forward)
    server.wait_delivered("erin@localhost", 1)

    p = server.pop3("bob@localhost")
    p.retr(1)
    p.quit()

    m = server.imap("carol@localhost")
    m.select("INBOX")
    assert m.fetch("1", "(BODY.PEEK[HEADER] FLAGS)")[0] == "OK"
    m.logout()

    m = server.imap("dave@localhost")
    m.select("INBOX")
    assert m.fetch("1", "(RFC822)")[0] == "OK"
    m.store("1", "+FLAGS", "\\Deleted")
    m.expunge()
    m.logout()

    for _ in range(300):
        if server.cli_json("status")["store"]["clusters_behind"] == 0:
            break
        time.sleep(0.1)
    server.cli("quarantine", "--attachment", "invoice.exe", "--yes")
    return ids


def by_recipient(copies):
    return {c["recipient"]: c for c in copies}


def test_exposure_names_exactly_who_opened_the_worm(server, outbreak):
    r = server.cli_json("exposure", "--attachment", "invoice.exe")
    copies = by_recipient(r["copies"])
    # Dave's copy is gone from the store (he deleted it): filters cannot find it.
    assert set(copies) == {"alice@localhost", "bob@localhost", "carol@localhost", "erin@localhost"}
    alice, bob, carol = copies["alice@localhost"], copies["bob@localhost"], copies["carol@localhost"]
    assert alice["read"] and alice["downloaded"] and alice["forwarded"], alice
    assert bob["read"] and bob["downloaded"] and not bob["forwarded"], bob
    assert not carol["read"] and not carol["downloaded"] and not carol["seen"], carol
    assert not copies["erin@localhost"]["read"]
    for c in copies.values():
        assert c["now"].startswith("quarantine:x"), c
        assert c["delivered"]
    # Opened copies first: those machines are checked first.
    assert [c["recipient"] for c in r["copies"][:2]] in (
        ["alice@localhost", "bob@localhost"], ["bob@localhost", "alice@localhost"])
    assert r["summary"]["read"] == 2 and r["summary"]["downloaded"] == 2
    assert r["summary"]["forwarded"] == 1

    # The cluster remembers copies deleted since: dave read his, then deleted it.
    [cluster] = [c for c in server.cli_json("clusters", "--min", "2") if c["messages"] >= 2]
    r = server.cli_json("exposure", "--cluster", str(cluster["id"]))
    copies = by_recipient(r["copies"])
    assert "dave@localhost" in copies, copies
    dave = copies["dave@localhost"]
    assert dave["read"] and dave["downloaded"] and dave["now"] == "deleted by the user", dave
    assert copies["alice@localhost"]["forwarded"]
    assert not copies["carol@localhost"]["downloaded"]

    # The table and the CSV say the same.
    table = server.cli("exposure", "--cluster", str(cluster["id"])).stdout
    assert "deleted by the user" in table and "forwarded on" in table
    rows = list(csv.DictReader(io.StringIO(server.cli("exposure", "--cluster", str(cluster["id"]), "--csv").stdout)))
    assert {r["recipient"] for r in rows} == set(copies)
    assert [r for r in rows if r["recipient"] == "carol@localhost"][0]["downloaded"] == ""


def test_exposure_needs_a_selection(server):
    r = server.cli("exposure", check=False)
    assert r.returncode == 2 and "--cluster" in r.stderr


def test_events_are_pruned_after_the_retention(server):
    stored = send(server, "friend@far.test", "bob@localhost", b"Subject: old\r\n\r\nhello\r\n")
    server.wait_delivered("bob@localhost", 1)
    assert len(trace(server, stored)["events"]) >= 2
    time.sleep(2)
    server.stop()
    server.config.write_text(server.config.read_text() + '\n[log]\nevent_retention = "1s"\n')
    server.start()
    wait_for(lambda: trace(server, stored)["events"] == [], what="the prune at start-up")
    # The message itself is untouched: still in bob's INBOX.
    assert trace(server, stored)["now"] == ["mailbox:bob@localhost/INBOX"]
