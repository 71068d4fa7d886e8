"""Inbound SPF, DKIM, DMARC and ARC (`[auth_checks]`) against a DNS server the test
runs (dnslib on loopback, through `[delivery] dns_servers`): a message signed by an
independent signer (dkimpy) from an SPF-authorised address gets
`Authentication-Results: … dkim=pass … spf=pass … dmarc=pass`; a forged sender of a
domain publishing p=reject is refused with 550 5.7.1, or accepted and marked
dmarc=fail when `dmarc_reject = false`; p=quarantine and a forged sender of our own
domain go to Lazaret's quarantine (and come back with `quarantine restore`); `find
--auth` finds by result; an ARC chain sealed by a forwarder (dkimpy) verifies."""

import base64
import smtplib
import subprocess

import dkim
import pytest

from dns_zone import Zone


@pytest.fixture
def world(make_server, tmp_path):
    key = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, check=True).stdout
    public = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=key,
                            capture_output=True, check=True).stdout
    zone = Zone(txt={
        "far.test": "v=spf1 ip4:127.0.0.1 -all",
        "sel._domainkey.far.test": "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode(),
        "_dmarc.far.test": "v=DMARC1; p=reject",
        "evil.test": "v=spf1 -all",
        "_dmarc.evil.test": "v=DMARC1; p=reject",
        "shady.test": "v=spf1 -all",
        "_dmarc.shady.test": "v=DMARC1; p=quarantine",
        # Our own domain: its own outbound servers are 192.0.2.0/24, not the test's
        # client; no DMARC record (the forgery is caught without one).
        "corp.test": "v=spf1 ip4:192.0.2.0/24 -all",
        # The forwarder that seals an ARC chain.
        "arc._domainkey.fwd.test": "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode(),
    })

    def make(extra=""):
        server = make_server(
            f'[delivery]\npoll_interval = "1s"\ndns_servers = ["127.0.0.1:{zone.port}"]\n'
            "\n[auth_checks]\nenabled = true\n" + extra
        )
        server.add_user("bob@localhost")
        server.cli("domain", "add", "corp.test")
        return server

    yield make, key
    zone.stop()


def message(sender, subject):
    return (
        f"From: {sender}\r\nTo: bob@localhost\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@far.test>\r\n\r\nHello Bob.\r\n"
    ).encode()


def send(server, mail_from, raw, helo="mail.far.test"):
    with smtplib.SMTP(server.smtp_host, server.smtp_port, timeout=30) as s:
        s.ehlo(helo)
        s.mail(mail_from)
        s.rcpt("bob@localhost")
        return s.data(raw)


def stored(server, n):
    inbox = server.wait_delivered("bob@localhost", n)
    status, raw = server.curl(f"/api/messages/{inbox[-1]['id']}/raw", "-H", f"Authorization: Bearer {server.token}")
    assert status == 200
    return raw


def test_signed_mail_from_an_authorised_address_passes(world):
    make, key = world
    server = make()
    raw = message("alice@far.test", "signed")
    signature = dkim.sign(raw, b"sel", b"far.test", key, include_headers=[b"From", b"To", b"Subject", b"Message-ID"])
    code, _ = send(server, "alice@far.test", signature + raw)
    assert code == 250
    text = stored(server, 1)
    results = text.split("Authentication-Results: ", 1)[1].split("\r\n\r\n", 1)[0]
    assert results.startswith("mx.lazaret.test")
    assert "dkim=pass" in results and "header.i=@far.test" in results
    assert "spf=pass" in results and "smtp.mailfrom=alice@far.test" in results
    assert "dmarc=pass" in results
    # Above the message's own headers, below our Received.
    assert text.index("Received: ") < text.index("Authentication-Results: ") < text.index("DKIM-Signature: ")
    status = server.cli("status").stdout
    assert ("Checking senders: SPF, DKIM, DMARC, ARC (DMARC p=reject refused, p=quarantine "
            "quarantined, forged own-domain senders quarantined)") in status, status
    assert server.cli_json("status")["auth_checks"]["own_domain_quarantine"] is True


def test_a_forged_sender_of_a_reject_domain_is_refused(world):
    make, key = world
    server = make()
    code, reply = send(server, "ceo@evil.test", message("ceo@evil.test", "wire the money"))
    assert code == 550 and b"5.7.1" in reply and b"DMARC" in reply
    # A bad signature in a domain's name fails as well.
    raw = message("alice@far.test", "tampered")
    signature = dkim.sign(raw, b"sel", b"far.test", key, include_headers=[b"From", b"Subject"])
    code, _ = send(server, "x@evil.test", signature + raw.replace(b"Hello", b"Pay now"))
    assert code == 550
    assert server.inbox("bob@localhost") == []


def test_without_dmarc_reject_the_failure_is_quarantined_or_marked(world):
    make, _ = world
    # Not refused: held in quarantine, as the domain's p=reject asks at the least.
    server = make("dmarc_reject = false\n")
    code, _ = send(server, "ceo@evil.test", message("ceo@evil.test", "wire the money"))
    assert code == 250
    [held] = server.cli_json("quarantine", "list")
    assert "fails DMARC for evil.test" in server.cli_json("quarantine", "show", held["id"])["reason"]
    # Neither refused nor held: delivered, and the header tells.
    server = make("dmarc_reject = false\ndmarc_quarantine = false\n")
    code, _ = send(server, "ceo@evil.test", message("ceo@evil.test", "wire the money"))
    assert code == 250
    text = stored(server, 1)
    assert "spf=fail" in text and "dmarc=fail" in text


def found(server, *filters):
    r = server.cli("find", "--in", "all", "--ids-only", *filters)
    return r.stdout.split()


def test_a_domain_asking_for_quarantine_gets_it_and_the_message_can_come_back(world):
    make, _ = world
    server = make()
    code, _ = send(server, "ceo@shady.test", message("ceo@shady.test", "invoice attached"))
    assert code == 250  # the sender is not told: a forger would learn what we catch
    held = server.cli_json("quarantine", "list")
    assert len(held) == 1, held
    detail = server.cli_json("quarantine", "show", held[0]["id"])
    assert detail["origin"] == "queue:inbound"
    assert "fails DMARC for shady.test" in detail["reason"]
    assert "Authentication-Results: " in detail["headers"] and "dmarc=fail" in detail["headers"]
    assert server.inbox("bob@localhost") == []
    assert found(server, "--auth", "dmarc=fail") == [held[0]["id"]]
    # A false positive goes back where it was going: bob's inbox.
    server.cli("quarantine", "restore", held[0]["id"])
    assert [m["subject"] for m in server.wait_delivered("bob@localhost", 1)] == ["invoice attached"]
    trace = server.cli("trace", "--message-id", "invoice.attached@far.test").stdout
    assert "auth spf=fail dkim=none dmarc=fail arc=none" in trace, trace
    assert "quarantined" in trace and "auth-checks" in trace, trace

    # With dmarc_quarantine off the message is only marked.
    other = make("dmarc_quarantine = false\n")
    code, _ = send(other, "ceo@shady.test", message("ceo@shady.test", "invoice again"))
    assert code == 250
    assert "dmarc=fail" in stored(other, 1)
    assert other.cli_json("quarantine", "list") == []


def test_a_forged_sender_of_our_own_domain_is_quarantined(world):
    make, _ = world
    server = make()
    # The worm's trick: the boss's address, sent from a machine that is not ours.
    code, _ = send(server, "boss@corp.test", message("boss@corp.test", "urgent please open"))
    assert code == 250
    [held] = server.cli_json("quarantine", "list")
    detail = server.cli_json("quarantine", "show", held["id"])
    assert "claims to be from our own domain corp.test" in detail["reason"], detail["reason"]
    assert "spf=fail" in detail["reason"]
    assert server.inbox("bob@localhost") == []
    # Other domains without DMARC records are not ours to judge: delivered.
    code, _ = send(server, "someone@nowhere.test", message("someone@nowhere.test", "hello there"))
    assert code == 250
    assert [m["subject"] for m in server.wait_delivered("bob@localhost", 1)] == ["hello there"]
    # Found by what failed, and each result is a filter of its own.
    assert found(server, "--auth", "spf=fail,dmarc=none") == [held["id"]]
    assert len(found(server, "--auth", "spf=none")) == 1
    r = server.cli("find", "--auth", "dmarc=maybe", check=False)
    assert r.returncode != 0 and "no result \"maybe\"" in r.stderr, r.stderr
    r = server.cli("find", "--auth", "spam", check=False)
    assert r.returncode != 0 and "METHOD=RESULT" in r.stderr, r.stderr

    # Turned off, the forgery is delivered and marked.
    other = make("own_domain_quarantine = false\n")
    code, _ = send(other, "boss@corp.test", message("boss@corp.test", "urgent again"))
    assert code == 250
    assert "spf=fail" in stored(other, 1)


def test_an_arc_chain_from_a_forwarder_verifies(world):
    make, key = world
    server = make("dmarc_reject = false\ndmarc_quarantine = false\n")
    # alice@far.test signs; a mailing list at fwd.test checks it, adds a footer (which
    # breaks her signature) and seals what it saw in an ARC set.
    raw = message("alice@far.test", "list post")
    signed = dkim.sign(raw, b"sel", b"far.test", key, include_headers=[b"From", b"To", b"Subject", b"Message-ID"]) + raw
    forwarded = (b"Authentication-Results: fwd.test; dkim=pass header.d=far.test; spf=pass smtp.mailfrom=alice@far.test\r\n"
                 + signed + b"-- \r\nThe list footer\r\n")
    seal = dkim.arc_sign(forwarded, b"arc", b"fwd.test", key, b"fwd.test",
                         include_headers=[b"From", b"To", b"Subject", b"Message-ID"])
    code, _ = send(server, "list-bounces@fwd.test", b"".join(seal) + forwarded, helo="lists.fwd.test")
    assert code == 250
    text = stored(server, 1)
    results = text.split("Authentication-Results: mx.lazaret.test", 1)[1].split("\r\n\r\n", 1)[0]
    assert "arc=pass" in results, results
    # The footer broke the author's signature (its body hash); the seal vouches for it.
    assert "dkim=neutral (body hash did not verify)" in results, results
    assert len(found(server, "--auth", "arc=pass,dkim=neutral")) == 1
    # A chain whose seal was tampered with fails.
    broken = [line.replace(b"b=", b"b=AAAA", 1) if line.startswith(b"ARC-Seal") else line for line in seal]
    code, _ = send(server, "list-bounces@fwd.test", b"".join(broken) + forwarded, helo="lists.fwd.test")
    assert code == 250
    assert len(found(server, "--auth", "arc=fail")) == 1
