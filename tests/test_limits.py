"""Per-sender rate limits ([limits]): an authenticated user on submission and a client IP
on the inbound port get `451 4.7.1` once over their message or recipient rate, the
episode is audited once and shown in `status`, and the sender gets through again once
the window has moved on."""

import smtplib
import subprocess
import time

import pytest

from conftest import BIN

LIMITS = """
[limits.submission]
messages = ["3/2s"]
recipients = ["5/1m"]
[limits.inbound]
messages = ["4/2s"]
"""


@pytest.fixture
def limited(make_server):
    s = make_server(LIMITS)
    s.add_user("alice@localhost")
    s.add_user("bob@localhost")
    return s


def submit(server, user, rcpts):
    with server.submission() as c:
        c.login(user, "secret")
        return c.sendmail(user, rcpts, f"Subject: hi\r\n\r\nfrom {user}\r\n")


def test_submission_messages_over_the_rate_get_451_and_recover(limited):
    for _ in range(3):
        assert submit(limited, "alice@localhost", ["bob@localhost"]) == {}
    for _ in range(2):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            submit(limited, "alice@localhost", ["bob@localhost"])
        code, text = e.value.recipients["bob@localhost"]
        assert code == 451 and b"4.7.1" in text and b"alice@localhost" in text, text
    # Another user is not held back by alice's rate.
    assert submit(limited, "bob@localhost", ["alice@localhost"]) == {}
    status = limited.cli_json("status")["rate_limits"]["submission"]
    assert status["refused"] == 2 and status["limited_now"] == ["alice@localhost"]
    audit = [a for a in limited.cli_json("audit") if a["action"] == "rate limit"]
    assert len(audit) == 1, "one audit entry per episode, not per refusal"
    assert "alice@localhost" in audit[0]["query"] and "3/2s messages" in audit[0]["detail"]
    time.sleep(4.2)  # two windows on: the count is gone
    assert submit(limited, "alice@localhost", ["bob@localhost"]) == {}
    assert limited.cli_json("status")["rate_limits"]["submission"]["limited_now"] == []


def test_recipients_over_the_rate_are_refused_one_by_one(limited):
    rcpts = [f"r{i}@far.test" for i in range(7)]
    refused = submit(limited, "bob@localhost", rcpts)
    # Five recipients a minute: the message goes to the first five only.
    assert sorted(refused) == ["r5@far.test", "r6@far.test"]
    assert all(code == 451 for code, _ in refused.values())


def test_inbound_client_over_the_rate_gets_451(limited):
    with limited.smtp() as c:
        for _ in range(4):
            assert c.sendmail("x@far.test", ["alice@localhost"], "Subject: a\r\n\r\nb\r\n") == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            c.sendmail("x@far.test", ["alice@localhost"], "Subject: a\r\n\r\nb\r\n")
        code, text = e.value.recipients["alice@localhost"]
        assert code == 451 and b"client 127.0.0.1" in text
    assert limited.cli_json("status")["rate_limits"]["inbound"]["limited_now"] == ["127.0.0.1"]


def test_a_bad_limit_is_a_config_error(tmp_path):
    config = tmp_path / "lazaret.toml"
    config.write_text(f'data_dir = "{tmp_path}/data"\n[limits.submission]\nmessages = ["3 per minute"]\n')
    r = subprocess.run([BIN, "serve", "-c", str(config)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "COUNT/DURATION" in r.stderr, r.stderr


def greeting(host, port):
    """The first line a listener sends to a new connection, and the open socket."""
    import socket
    sock = socket.create_connection((host, port), timeout=10)
    line = sock.makefile("rb").readline()
    return line, sock


def test_connections_per_address_on_every_listener(make_server):
    # Loopback is exempt by default; the test takes the exemption away.
    s = make_server('[limits.connections]\nmax_open = 3\nrate = ["1000/1m"]\nexempt = []\n')
    ports = {"smtp": s.smtp_port, "imap": s.imap_port, "pop3": s.pop3_port}
    held = []
    for name, port in ports.items():
        line, sock = greeting("127.0.0.1", port)
        assert line.startswith((b"220", b"* OK", b"+OK")), (name, line)
        held.append(sock)
    # Three open, on three listeners together: the fourth is turned away in each
    # protocol's words.
    assert greeting("127.0.0.1", s.smtp_port)[0].startswith(b"421 4.7.0 too many connections")
    assert greeting("127.0.0.1", s.imap_port)[0].startswith(b"* BYE [UNAVAILABLE] too many connections")
    assert greeting("127.0.0.1", s.pop3_port)[0].startswith(b"-ERR [SYS/TEMP] too many connections")
    held.pop().close()
    time.sleep(0.3)
    line, sock = greeting("127.0.0.1", s.smtp_port)
    assert line.startswith(b"220"), line
    held.append(sock)
    status = s.cli_json("status")["rate_limits"]["connections"]
    assert status["refused"] == 3
    assert status["busiest"] == [{"address": "127.0.0.1", "open": 3}]
    for sock in held:
        sock.close()


def test_new_connections_per_window(make_server):
    s = make_server('[limits.connections]\nrate = ["5/1m"]\nexempt = []\n')
    for _ in range(5):
        line, sock = greeting("127.0.0.1", s.smtp_port)
        assert line.startswith(b"220"), line
        sock.close()
    line, _ = greeting("127.0.0.1", s.smtp_port)
    assert line.startswith(b"421 4.7.0 too many new connections"), line
    assert s.cli_json("status")["rate_limits"]["connections"]["limited_now"] == ["127.0.0.1"]
    # Exempt networks are never limited: loopback by default.
    t = make_server('[limits.connections]\nmax_open = 1\nrate = ["1/1m"]\n')
    socks = [greeting("127.0.0.1", t.smtp_port) for _ in range(4)]
    assert all(line.startswith(b"220") for line, _ in socks)
    for _, sock in socks:
        sock.close()


def test_a_bad_exempt_network_is_a_config_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[limits.connections]\nexempt = ["10.0.0.0/33"]\n')
    r = subprocess.run([BIN, "-c", str(config), "serve"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "limits.connections.exempt" in r.stderr and "10.0.0.0/33" in r.stderr, r.stderr
