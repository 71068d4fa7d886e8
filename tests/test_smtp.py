"""Inbound SMTP against the real server: delivery, relay refusal, limits, pipelining,
STARTTLS, malformed input, and the stop/start switch."""

import smtplib
import ssl
import time

import pytest


def test_delivers_to_inbox_with_received_header(server):
    with server.smtp() as s:
        refused = s.sendmail(
            "carol@far.test",
            ["alice@localhost", "Bob@LOCALHOST"],
            "From: carol@far.test\r\nTo: alice@localhost\r\nSubject: hello there\r\n\r\nhi\r\n",
        )
        assert refused == {}
    for user in ("alice@localhost", "bob@localhost"):
        [m] = server.wait_delivered(user, 1)
        assert m["subject"] == "hello there"
        assert m["from"] == "carol@far.test"
        assert m["location"] == f"mailbox:{user}/INBOX"
        assert m["uid"] == 1
    raw = server.cli("mailbox", "show", "alice@localhost", "--json").stdout
    assert "hello there" in raw
    status, body = server.curl(f"/api/messages/{m['id']}/raw", "-H", f"Authorization: Bearer {server.token}")
    assert status == 200
    assert body.startswith("Received: from ")
    assert "by mx.lazaret.test (Lazaret) with ESMTP id" in body
    assert body.endswith("\r\n\r\nhi\r\n")


def test_never_an_open_relay(server):
    with server.smtp() as s:
        s.ehlo("attacker.test")
        s.mail("alice@localhost")
        code, text = s.rcpt("victim@elsewhere.test")
        assert code == 550 and text.startswith(b"5.7.1"), text
        # An address-literal or odd casing does not sneak past either.
        code, _ = s.rcpt("victim@[127.0.0.1]")
        assert code >= 500
        code, _ = s.rcpt('"alice@localhost"@elsewhere.test')
        assert code == 550
        code, _ = s.docmd("DATA")
        assert code == 554, "no valid recipients: no DATA"
    assert server.queues()["inbound"]["messages"] == 0
    assert all(q["messages"] == 0 for q in server.queues().values())


# Addresses that have made other servers relay: the percent hack, source routes, bang
# paths, quoted local parts hiding an address, address literals, trailing dots,
# look-alike domains, postmaster without a domain, UTF-8, 8-bit and NUL bytes. Each is refused, or (if it names a local user after all) delivered
# to that local mailbox; none may ever reach a remote queue.
ADDRESS_TRICKS = [
    "alice%elsewhere.test@localhost",
    '"alice%elsewhere.test"@localhost',
    '"alice@elsewhere.test"@localhost',
    '"victim@elsewhere.test"',
    "elsewhere.test!alice@localhost",
    "elsewhere.test!victim",
    "@localhost:victim@elsewhere.test",
    "@localhost,@elsewhere.test:victim@elsewhere.test",
    "victim@elsewhere.test@localhost",
    "alice@localhost@elsewhere.test",
    "victim@elsewhere.test.",
    "victim@ELSEWHERE.TEST",
    "victim@localhost.elsewhere.test",
    "victim@elsewhere.test (localhost)",
    "victim@[127.0.0.1]",
    "victim@[IPv6:::1]",
    "victim@[192.0.2.1]",
    "victim%elsewhere.test@[127.0.0.1]",
    "alice@localhost.",
    "ALICE@LOCALHOST",
    "postmaster",
    "Postmaster@elsewhere.test",
    "victim@élsewhere.test",
    "vïctim@elsewhere.test",
    b"vict\xefm@elsewhere.test",
    b"victim@elsewhere.test\x00@localhost",
]


def test_address_tricks_never_relay(server):
    accepted = []
    for address in ADDRESS_TRICKS:
        # A session each: refusals count as errors, and a session ends after too many.
        with server.smtp() as s:
            s.ehlo("attacker.test")
            s.mail("spammer@elsewhere.test")
            raw = address if isinstance(address, bytes) else address.encode()
            s.send(b"RCPT TO:<" + raw + b">\r\n")
            code, text = s.getreply()
            assert code in (250, 501, 550, 553, 555), (address, code, text)
            if code == 250:
                accepted.append(address)
                assert s.docmd("DATA")[0] == 354
                s.send(f"Subject: {address!r}\r\n\r\nhi\r\n.\r\n".encode())
                assert s.getreply()[0] == 250
    # Only spellings of a local user get through, and they land in that mailbox.
    assert set(accepted) <= {"alice@localhost.", "ALICE@LOCALHOST"}, accepted
    if accepted:
        server.wait_delivered("alice@localhost", len(accepted))
    queues = server.queues()
    assert all(q["messages"] == 0 for name, q in queues.items() if name not in ("local", "inbound")), queues
    assert len(server.inbox("alice@localhost")) == len(accepted)


def test_unknown_local_user_is_550_511(server):
    with server.smtp() as s:
        s.ehlo()
        s.mail("x@far.test")
        code, text = s.rcpt("nobody@localhost")
        assert (code, text[:5]) == (550, b"5.1.1")


def test_size_limit(make_server):
    srv = make_server('[smtp]\nlisten = ["127.0.0.1:0"]\nmax_message_size = "10KB"\n')
    srv.add_user("alice@localhost")
    with srv.smtp() as s:
        s.ehlo()
        assert s.esmtp_features["size"] == "10000"
        # Declared too big: refused at MAIL.
        code, text = s.mail("x@far.test", ["SIZE=20000"])
        assert (code, text[:5]) == (552, b"5.3.4")
        # Undeclared but too big: refused at the end of DATA, session still usable.
        s.mail("x@far.test")
        s.rcpt("alice@localhost")
        code, _ = s.data("Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * 200)
        assert code == 552
        assert s.noop()[0] == 250
        assert s.sendmail("x@far.test", ["alice@localhost"], "Subject: small\r\n\r\nok\r\n") == {}
    [m] = srv.wait_delivered("alice@localhost", 1)
    assert m["subject"] == "small"


def test_recipient_limit(make_server):
    srv = make_server('[smtp]\nlisten = ["127.0.0.1:0"]\nmax_recipients = 2\n')
    srv.add_user("alice@localhost")
    srv.add_user("bob@localhost")
    srv.add_user("carol@localhost")
    with srv.smtp() as s:
        s.ehlo()
        s.mail("x@far.test")
        assert s.rcpt("alice@localhost")[0] == 250
        assert s.rcpt("bob@localhost")[0] == 250
        code, text = s.rcpt("carol@localhost")
        assert (code, text[:5]) == (452, b"4.5.3")


def test_malformed_commands_get_errors_not_crashes(server):
    c = server.raw()
    assert c.code() == 220
    for line, want in [
        (b"HELLO\r\n", 500),
        (b"MAIL FROM:<x@far.test>\r\n", 503),  # before EHLO
        (b"EHLO\r\n", 501),
        (b"EHLO client.test\r\n", 250),
        (b"RCPT TO:<alice@localhost>\r\n", 503),  # before MAIL
        (b"MAIL FROM:no-brackets\r\n", 501),
        (b"MAIL FROM:<x@far.test> BOGUS=1\r\n", 504),
        (b"MAIL FROM:<x@far.test>\r\n", 250),
        (b"MAIL FROM:<x@far.test>\r\n", 503),  # nested
        (b"DATA\r\n", 554),  # no recipients
        (b"RCPT TO:<>\r\n", 501),
        (b"\x00\xff\xfe garbage\r\n", 500),
        (b"VRFY alice\r\n", 252),
        (b"AUTH PLAIN AAAA\r\n", 502),
        (b"NOOP " + b"A" * 5000 + b"\r\n", 500),  # line too long
        (b"NOOP\r\n", 250),
    ]:
        c.send(line)
        assert c.code() == want, line[:40]
    c.send(b"QUIT\r\n")
    assert c.code() == 221
    # The server is still fine.
    with server.smtp() as s:
        assert s.noop()[0] == 250


def test_too_many_errors_closes_session(server):
    c = server.raw()
    c.reply()
    c.send(b"BOGUS\r\n" * 30)
    # 20 errors are tolerated (smtp.max_errors), the 21st is answered and then 421.
    replies = [c.reply() for _ in range(22)]
    assert all(r.startswith("500 ") for r in replies[:21])
    assert replies[-1].startswith("421 4.7.0")
    assert c.closed()


def test_pipelining(server):
    c = server.raw()
    c.reply()
    c.send(b"EHLO pipe.test\r\n")
    assert "PIPELINING" in c.reply()
    batch = b"".join(
        [
            b"MAIL FROM:<p@far.test>\r\n",
            b"RCPT TO:<alice@localhost>\r\n",
            b"RCPT TO:<nobody@localhost>\r\n",
            b"RCPT TO:<bob@localhost>\r\n",
            b"DATA\r\n",
        ]
    )
    c.send(batch)
    assert [c.code() for _ in range(5)] == [250, 250, 550, 250, 354]
    c.send(b"Subject: piped\r\n\r\n..leading dot\r\n.\r\nMAIL FROM:<p@far.test>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n")
    assert [c.code() for _ in range(4)] == [250, 250, 250, 354]
    c.send(b"Subject: second\r\n\r\nx\r\n.\r\nQUIT\r\n")
    assert [c.code() for _ in range(2)] == [250, 221]
    msgs = server.wait_delivered("alice@localhost", 2)
    assert sorted(m["subject"] for m in msgs) == ["piped", "second"]
    body = server.cli("mailbox", "show", "bob@localhost", "--json").stdout
    assert "piped" in body


def test_starttls(server):
    with server.smtp() as s:
        s.ehlo()
        assert s.has_extn("starttls")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx)
        s.ehlo()
        assert not s.has_extn("starttls"), "not offered again inside TLS"
        assert s.sendmail("x@far.test", ["alice@localhost"], "Subject: over tls\r\n\r\nsecret\r\n") == {}
    [m] = server.wait_delivered("alice@localhost", 1)
    status, body = server.curl(f"/api/messages/{m['id']}/raw", "-H", f"Authorization: Bearer {server.token}")
    assert "with ESMTPS id" in body
    # The self-signed pair was made in the data dir.
    assert (server.data_dir / "tls" / "cert.pem").exists()


def test_starttls_injection_is_discarded(server):
    """Commands pipelined after STARTTLS arrive in the clear and must be dropped."""
    c = server.raw()
    c.reply()
    c.send(b"EHLO x\r\n")
    c.reply()
    c.send(b"STARTTLS\r\nMAIL FROM:<evil@far.test>\r\n")
    assert c.code() == 220
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(c.sock, server_hostname="mx.lazaret.test")
    tls.sendall(b"RCPT TO:<alice@localhost>\r\n")
    assert tls.recv(1000).startswith(b"503"), "the injected MAIL must not have counted"


def test_session_limit_and_idle_timeout(make_server):
    srv = make_server('[smtp]\nlisten = ["127.0.0.1:0"]\nmax_sessions = 2\nidle_timeout = "2s"\n')
    a, b = srv.raw(), srv.raw()
    assert a.code() == 220 and b.code() == 220
    c = srv.raw()
    assert c.reply().startswith("421 4.3.2")
    assert c.closed()
    time.sleep(2.5)
    assert a.reply().startswith("421 4.4.2")
    assert a.closed()
    # Slots freed by the timeouts are usable again.
    time.sleep(0.2)
    d = srv.raw()
    assert d.code() == 220


def test_smtp_stop_and_start(server):
    r = server.cli("smtp", "stop")
    assert "stopped" in r.stdout
    with pytest.raises(ConnectionRefusedError):
        server.smtp()
    status = server.cli_json("status")
    assert [l["up"] for l in status["listeners"] if l["name"] == "smtp"] == [False]
    # Admin commands keep working while SMTP is stopped, and the stop survives a restart.
    server.add_user("carol@localhost")
    server.stop()
    server.start()
    with pytest.raises(ConnectionRefusedError):
        server.smtp()
    server.cli("smtp", "start")
    with server.smtp() as s:
        assert s.sendmail("x@far.test", ["carol@localhost"], "Subject: back\r\n\r\nx\r\n") == {}
    server.wait_delivered("carol@localhost", 1)
    actions = [a["action"] for a in server.cli_json("audit")]
    assert actions.count("smtp stop") == 1 and actions.count("smtp start") == 1


def test_frozen_queue_holds_mail_and_thaw_releases_it(server):
    server.cli("queue", "freeze", "local")
    with server.smtp() as s:
        s.sendmail("x@far.test", ["alice@localhost"], "Subject: held\r\n\r\nx\r\n")
    deadline = time.time() + 10
    while server.queues()["local"]["messages"] != 1:
        assert time.time() < deadline, server.queues()
        time.sleep(0.1)
    time.sleep(1.5)
    assert server.inbox("alice@localhost") == []
    assert server.queues()["local"]["state"] == "frozen"
    server.cli("queue", "thaw", "local")
    server.wait_delivered("alice@localhost", 1)
    assert server.queues()["local"]["messages"] == 0
    r = server.cli("queue", "freeze", "no-such-queue", check=False)
    assert r.returncode == 2 and "no-such-queue" in r.stderr


def test_bare_postmaster_is_accepted_for_the_postmaster_mailbox(make_server):
    # RFC 5321 4.5.1: RCPT TO:<Postmaster> with no domain must work on every server.
    s = make_server()
    with s.smtp() as c:
        c.ehlo()
        c.mail("someone@elsewhere.test")
        code, text = c.rcpt("postmaster")
        assert (code, text[:5]) == (550, b"5.1.1") and b"postmaster@DOMAIN" in text, text
    s.add_user("postmaster@localhost")
    for spelling in ["postmaster", "PostMaster"]:
        with s.smtp() as c:
            c.ehlo()
            c.mail("someone@elsewhere.test")
            assert c.rcpt(spelling)[0] == 250
            c.rcpt("postmaster@localhost")  # the same mailbox, once
            assert c.data(f"Subject: to {spelling}\r\n\r\nhello\r\n")[0] == 250
    s.wait_delivered("postmaster@localhost", 2)
    assert sorted(m["subject"] for m in s.inbox("postmaster@localhost")) == ["to PostMaster", "to postmaster"]
