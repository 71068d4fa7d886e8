"""POP3 against the real server with Python's poplib, and `lazaret access
disable|enable` keeping users out while mail and admin commands carry on."""

import base64
import poplib
import socket
import ssl
import time

import pytest


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_retrieve_top_uidl_and_delete_at_quit(server):
    server.send("alice@localhost", "first", "line one\r\n.dotted line\r\n")
    server.send("alice@localhost", "second")
    server.wait_delivered("alice@localhost", 2)

    p = server.pop3("alice@localhost")
    count, size = p.stat()
    assert count == 2 and size > 0
    _, listing, _ = p.list()
    assert [l.split()[0] for l in listing] == [b"1", b"2"]
    _, uidls, _ = p.uidl()
    uid_of = dict(l.split() for l in uidls)
    _, lines, octets = p.retr(1)
    assert b"Subject: first" in lines and b".dotted line" in lines
    assert lines[0].startswith(b"Received: ")
    _, top, _ = p.top(2, 0)
    assert b"Subject: second" in top and b"hello" not in top
    p.dele(1)
    with pytest.raises(poplib.error_proto, match="already deleted"):
        p.retr(1)
    assert p.stat()[0] == 1
    p.quit()

    p = server.pop3("alice@localhost")
    assert p.stat()[0] == 1
    _, uidls, _ = p.uidl()
    assert uidls == [b"1 " + uid_of[b"2"]], "UIDL of the kept message is stable across sessions"
    p.quit()
    assert [m["subject"] for m in server.inbox("alice@localhost")] == ["second"]


def test_no_quit_means_no_deletion(server):
    server.send("alice@localhost", "keep")
    server.wait_delivered("alice@localhost", 1)
    p = server.pop3("alice@localhost")
    p.dele(1)
    # The connection drops before QUIT (poplib's file keeps the fd, so shut it down).
    p.sock.shutdown(socket.SHUT_RDWR)
    p.close()
    time.sleep(0.3)
    p = server.pop3("alice@localhost")
    assert p.stat()[0] == 1
    p.rset()
    p.quit()


def test_wrong_password_is_slow_and_repeated_failures_are_throttled(server):
    for _ in range(3):
        t0 = time.time()
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] invalid"):
            server.pop3("alice@localhost", "wrong")
        assert time.time() - t0 >= 0.9, "a wrong password is answered slowly"
    # Now even the right password is refused from this address for a while.
    with pytest.raises(poplib.error_proto, match="too many failed logins"):
        server.pop3("alice@localhost", "secret")


def test_auth_plain_stls_and_maildrop_lock(server):
    p = server.pop3()
    caps = p.capa()
    assert "STLS" in caps and "SASL" in caps and "UIDL" in caps
    p.stls(context=tls_context())
    assert "STLS" not in p.capa()
    # AUTH PLAIN with an initial response: "\0alice@localhost\0secret"
    ir = base64.b64encode(b"\0alice@localhost\0secret").decode()
    assert p._shortcmd(f"AUTH PLAIN {ir}").startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        server.pop3("alice@localhost")
    p.quit()
    server.pop3("alice@localhost").quit()  # the lock is released at QUIT


def test_malformed_input_gets_err_never_a_crash(server):
    s = socket.create_connection((server.pop3_host, server.pop3_port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    for line in [b"BOGUS\r\n", b"RETR 1\r\n", b"PASS x\r\n", b"USER " + b"a" * 3000 + b"\r\n", b"\xff\x00\r\n", b"APOP a b\r\n"]:
        s.sendall(line)
        assert f.readline().startswith(b"-ERR"), line[:20]
    s.sendall(b"CAPA\r\n")
    assert f.readline().startswith(b"+OK")
    s.close()
    server.pop3("alice@localhost").quit()


def test_access_disable_keeps_users_out_while_mail_and_admin_carry_on(server):
    server.send("alice@localhost", "before")
    server.wait_delivered("alice@localhost", 1)
    open_session = server.pop3("alice@localhost")
    assert open_session.stat()[0] == 1

    r = server.cli("access", "disable", "--message", "Outbreak cleanup, back at 17:00")
    assert "Outbreak cleanup" in r.stdout

    # The open session is closed with the admin's message.
    with pytest.raises((poplib.error_proto, OSError), match="Outbreak cleanup|closed|reset|EOF|-ERR"):
        open_session.stat()
        open_session.stat()
    # New logins are refused with it, as a temporary condition.
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] Outbreak cleanup, back at 17:00"):
        server.pop3("alice@localhost")
    # Inbound mail and admin commands carry on: the store stays up.
    server.send("alice@localhost", "during")
    server.wait_delivered("alice@localhost", 2)
    status = server.cli_json("status")
    assert status["user_access"] == "disabled"
    assert status["user_access_message"] == "Outbreak cleanup, back at 17:00"
    server.add_user("carol@localhost")

    # A restart keeps users out.
    server.stop()
    server.start()
    with pytest.raises(poplib.error_proto, match="Outbreak cleanup"):
        server.pop3("alice@localhost")

    server.cli("access", "enable")
    p = server.pop3("alice@localhost")
    assert p.stat()[0] == 2
    p.quit()
    assert server.cli_json("status")["user_access"] == "enabled"
    actions = [a["action"] for a in server.cli_json("audit")]
    assert actions.count("access disable") == 1 and actions.count("access enable") == 1
