"""The submission listener: AUTH required, the sender must be the user's own address,
authenticated users may send anywhere, and access disable refuses AUTH with 454."""

import smtplib
import time

import pytest


def test_submission_requires_auth(server):
    with server.submission() as s:
        s.ehlo()
        assert s.has_extn("auth") and "PLAIN" in s.esmtp_features["auth"]
        code, text = s.mail("alice@localhost")
        assert (code, text[:5]) == (530, b"5.7.0")


def test_wrong_password_is_535_and_slow(server):
    with server.submission() as s:
        t0 = time.time()
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("alice@localhost", "wrong")
        assert e.value.smtp_code == 535
        assert time.time() - t0 >= 0.9


def test_authenticated_user_sends_locally_and_relays(make_server):
    # The connector never sends, so relayed mail stays where the test can see it.
    server = make_server('[[connector]]\nname = "held"\ndomains = ["*"]\nroute = "mx"\nschedule = "never"\n')
    server.add_user("alice@localhost")
    server.add_user("bob@localhost")
    with server.submission() as s:
        s.login("alice@localhost", "secret")
        refused = s.sendmail(
            "alice@localhost",
            ["bob@localhost", "friend@far.test"],
            "From: alice@localhost\r\nSubject: from alice\r\n\r\nhi\r\n",
        )
        assert refused == {}
        code, text = s.mail("bob@localhost")
        assert (code, text[:5]) == (553, b"5.7.1"), "only the user's own address may be the sender"
        s.rset()
        code, _ = s.mail("alice@localhost")
        assert s.rcpt("nobody@localhost")[0] == 550
    [m] = server.wait_delivered("bob@localhost", 1)
    status, raw = server.curl(f"/api/messages/{m['id']}/raw", "-H", f"Authorization: Bearer {server.token}")
    assert "with ESMTPA id" in raw
    # Mail for another domain waits, durably, in its next-hop queue.
    deadline = time.time() + 10
    while "remote:far.test" not in server.queues():
        assert time.time() < deadline, server.queues()
        time.sleep(0.1)
    [held] = server.cli_json("queue", "show", "remote:far.test")
    assert held["to"] == ["friend@far.test"] and held["subject"] == "from alice"


def test_auth_login_mechanism(server):
    with server.submission() as s:
        s.ehlo()
        s.user, s.password = "bob@localhost", "secret"
        code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        assert code == 235


def test_inbound_port_never_relays_even_when_asked_to_auth(server):
    with server.smtp() as s:
        s.ehlo()
        assert not s.has_extn("auth")
        code, _ = s.docmd("AUTH", "PLAIN AGFsaWNlQGxvY2FsaG9zdABzZWNyZXQ=")
        assert code == 502
        s.mail("alice@localhost")
        assert s.rcpt("friend@far.test")[0] == 550


def test_access_disable_refuses_submission_logins(server):
    server.cli("access", "disable", "--message", "Cleaning up a worm")
    with server.submission() as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("alice@localhost", "secret")
        assert e.value.smtp_code == 454
        assert b"4.7.0 Cleaning up a worm" in e.value.smtp_error
    # Inbound mail still flows while users are kept out.
    server.send("alice@localhost", "still arriving")
    server.wait_delivered("alice@localhost", 1)
    server.cli("access", "enable")
    with server.submission() as s:
        s.login("alice@localhost", "secret")


def test_submission_with_implicit_tls(make_server):
    """Port 465 (RFC 8314): TLS from the first byte, no STARTTLS to offer, AUTH
    required as on 587, and the Received: line says ESMTPSA."""
    import ssl

    s = make_server('[submission]\nlisten = ["127.0.0.1:0"]\ntls_listen = ["127.0.0.1:0"]\n')
    s.add_user("alice@localhost")
    s.add_user("bob@localhost")
    assert s.submissions_port
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL(s.submission_host, s.submissions_port, context=ctx, timeout=10) as c:
        code, _ = c.ehlo()
        assert code == 250
        assert not c.has_extn("starttls") and c.has_extn("auth")
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            c.sendmail("alice@localhost", ["bob@localhost"], "Subject: no auth\r\n\r\nx\r\n")
        assert e.value.smtp_code == 530
        c.login("alice@localhost", "secret")
        assert c.sendmail("alice@localhost", ["bob@localhost"], "Subject: over 465\r\n\r\nhi\r\n") == {}
    [m] = s.wait_delivered("bob@localhost", 1)
    status, raw = s.curl(f"/api/messages/{m['id']}/raw", "-H", f"Authorization: Bearer {s.token}")
    assert "with ESMTPSA" in raw, raw[:400]
    names = {l["name"] for l in s.cli_json("status")["listeners"]}
    assert "submissions" in names
    # A client that does not speak TLS gets nothing in the clear.
    import socket

    with socket.create_connection((s.submission_host, s.submissions_port), timeout=5) as raw_sock:
        raw_sock.sendall(b"EHLO plain\r\n")
        raw_sock.settimeout(5)
        try:
            data = raw_sock.recv(100)
        except OSError:
            data = b""
        assert not data.startswith(b"220"), data
