"""DKIM signing end to end: `lazaret dkim generate` makes a key (file 0600) and prints
the DNS record; mail a user submits from that domain reaches a real SMTP peer
(aiosmtpd) signed, and an independent verifier (dkimpy, Python's DKIM library) checks
the signature against that record — RSA and Ed25519; rotate switches the selector,
remove stops signing; mail from a domain without a key goes out unsigned."""

import email.message
import os
import stat

import dkim
import pytest

from peer import Peer
from test_outbound import relay_config, wait_for


@pytest.fixture
def relay(make_server):
    peer = Peer()
    peer.start()
    server = make_server(relay_config(peer))
    server.add_user("alice@localhost")
    yield server, peer
    peer.stop()


def submit(server, subject, sender="alice@localhost"):
    m = email.message.EmailMessage()
    m["From"] = f"Alice <{sender}>"
    m["To"] = "bob@far.test"
    m["Subject"] = subject
    m["Message-ID"] = f"<{subject.replace(' ', '.')}@localhost>"
    m.set_content("The quarterly numbers.\n\n-- \nAlice\n")
    with server.submission() as s:
        s.login(sender, "secret")
        assert s.sendmail(sender, ["bob@far.test"], m.as_bytes().replace(b"\n", b"\r\n")) == {}


def records(server):
    """The DNS the test stands in for: every key's TXT record by name."""
    return {k["dns_name"] + ".": k["dns_txt"].encode() for k in server.cli_json("dkim", "list")}


def verify(server, raw):
    dns = records(server)
    return dkim.verify(raw, dnsfunc=lambda name, timeout=5: dns.get(name.decode() if isinstance(name, bytes) else name))


def received(peer, n):
    wait_for(lambda: len(peer.messages) >= n, what=f"message {n} at the peer")
    return peer.messages[n - 1]["content"]


def test_submitted_mail_is_signed_and_verifies_independently(relay):
    server, peer = relay
    key = server.cli_json("dkim", "generate", "localhost", "--selector", "s1")
    assert key["algorithm"] == "rsa2048" and key["active"] is True
    assert key["dns_name"] == "s1._domainkey.localhost"
    assert key["dns_txt"].startswith("v=DKIM1; k=rsa; p=MII")
    path = server.data_dir / "dkim" / "localhost" / "s1.der"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # The human output is a zone-file line to paste.
    out = server.cli("dkim", "generate", "example.test", "--algorithm", "ed25519").stdout
    assert "._domainkey.example.test. IN TXT (" in out and "k=ed25519" in out

    submit(server, "numbers one")
    raw = received(peer, 1)
    assert raw.startswith(b"Received: ") and b"\r\nDKIM-Signature: v=1; a=rsa-sha256;" in raw
    sig = raw.split(b"DKIM-Signature:", 1)[1].split(b"\r\n", 1)[0]
    assert b"s=s1" in sig and b"d=localhost" in sig and b"c=relaxed/relaxed" in sig
    assert verify(server, raw), "dkimpy verifies Lazaret's RSA signature"
    # A changed body no longer verifies: the signature covers it.
    assert not verify(server, raw.replace(b"quarterly", b"QUARTERLY"))

    status = server.cli_json("status")
    assert {"domain": "localhost", "selector": "s1"} in status["dkim"]


def test_ed25519_rotate_and_remove(relay):
    server, peer = relay
    server.cli_json("dkim", "generate", "localhost", "--selector", "ed1", "--algorithm", "ed25519")
    submit(server, "ed one")
    raw = received(peer, 1)
    assert b"a=ed25519-sha256" in raw and verify(server, raw), "dkimpy verifies the Ed25519 signature"

    # Rotation: a new selector signs at once (no restart); the old key stays listed.
    new = server.cli_json("dkim", "rotate", "localhost", "--selector", "ed2")
    assert new["algorithm"] == "ed25519"
    keys = {k["selector"]: k for k in server.cli_json("dkim", "list")}
    assert keys["ed2"]["active"] and not keys["ed1"]["active"]
    submit(server, "ed two")
    raw = received(peer, 2)
    assert b"s=ed2" in raw and verify(server, raw)

    # The careful way: a standby key first (its record published), then rotate onto it.
    standby = server.cli_json("dkim", "generate", "localhost", "--selector", "ed3", "--algorithm", "ed25519")
    assert standby["active"] is False
    out = server.cli("dkim", "generate", "localhost", "--selector", "ed4", "--algorithm", "ed25519").stdout
    assert "standby" in out and "lazaret dkim rotate localhost" in out
    submit(server, "ed still two")
    assert b"s=ed2" in received(peer, 3), "a standby key does not sign"
    assert server.cli_json("dkim", "rotate", "localhost")["selector"] == "ed4"
    submit(server, "ed four")
    raw = received(peer, 4)
    assert b"s=ed4" in raw and verify(server, raw)

    server.cli("dkim", "remove", "localhost")
    assert server.cli_json("dkim", "list") == []
    submit(server, "unsigned now")
    assert b"DKIM-Signature" not in received(peer, 5)
    audit = server.cli("audit").stdout
    assert "dkim generate" in audit and "dkim rotate" in audit and "dkim remove" in audit


def test_mail_from_a_domain_without_a_key_is_unsigned(relay):
    server, peer = relay
    server.cli_json("dkim", "generate", "example.test", "--algorithm", "ed25519")
    submit(server, "plain")
    assert b"DKIM-Signature" not in received(peer, 1)


def test_bad_requests_say_what_is_wrong(server):
    r = server.cli("dkim", "generate", "not a domain", check=False)
    assert r.returncode != 0 and "not a domain name" in r.stderr
    server.cli("dkim", "generate", "localhost", "--selector", "a", "--algorithm", "ed25519")
    r = server.cli("dkim", "generate", "localhost", "--selector", "a", "--algorithm", "ed25519", check=False)
    assert r.returncode != 0 and "already has a key" in r.stderr
    r = server.cli("dkim", "remove", "nowhere.test", check=False)
    assert r.returncode != 0 and "no DKIM key for nowhere.test" in r.stderr
    r = server.cli("dkim", "rotate", "nowhere.test", check=False)
    assert r.returncode != 0 and "no DKIM key to rotate" in r.stderr
