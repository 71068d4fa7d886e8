"""Inbound SPF, DKIM and DMARC (`[auth_checks]`) against a DNS server the test runs
(dnslib on loopback, through `[delivery] dns_servers`): a message signed by an
independent signer (dkimpy) from an SPF-authorised address gets
`Authentication-Results: … dkim=pass … spf=pass … dmarc=pass`; a forged sender of a
domain publishing p=reject is refused with 550 5.7.1, or accepted and marked
dmarc=fail when `dmarc_reject = false`."""

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
    })

    def make(extra=""):
        server = make_server(
            f'[delivery]\npoll_interval = "1s"\ndns_servers = ["127.0.0.1:{zone.port}"]\n'
            "\n[auth_checks]\nenabled = true\n" + extra
        )
        server.add_user("bob@localhost")
        return server

    yield make, key
    zone.stop()


def message(sender, subject):
    return (
        f"From: {sender}\r\nTo: bob@localhost\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@far.test>\r\n\r\nHello Bob.\r\n"
    ).encode()


def send(server, mail_from, raw):
    with smtplib.SMTP(server.smtp_host, server.smtp_port, timeout=30) as s:
        s.ehlo("mail.far.test")
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


def test_without_dmarc_reject_the_failure_is_marked_not_refused(world):
    make, _ = world
    server = make("dmarc_reject = false\n")
    code, _ = send(server, "ceo@evil.test", message("ceo@evil.test", "wire the money"))
    assert code == 250
    text = stored(server, 1)
    assert "spf=fail" in text and "dmarc=fail" in text
