"""Mail out: connectors, delivery to a real SMTP peer (aiosmtpd) with PIPELINING and
STARTTLS, retries while the peer is down, DSNs for permanent failures and give-ups,
frozen queues, schedules, outbound disable, per-message freeze/thaw."""

import email
import email.policy
import time

import pytest

from peer import Peer


def relay_config(peer, schedule="always", delivery=""):
    """One connector sending everything to `peer`; `delivery` adds [delivery] keys."""
    return (
        "[[connector]]\n"
        'name = "relay"\n'
        'domains = ["*"]\n'
        f'smarthost = "{peer.address}"\n'
        f'schedule = "{schedule}"\n'
        '\n[delivery]\npoll_interval = "1s"\n' + delivery
    )


def wait_for(predicate, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def submit(server, rcpts, subject="outbound", sender="alice@localhost"):
    with server.submission() as s:
        s.login(sender, "secret")
        body = f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n.line starting with a dot\r\n"
        assert s.sendmail(sender, rcpts, body) == {}


@pytest.fixture
def relay(make_server, tmp_path):
    """A server whose only connector sends everything to a running peer."""
    peer = Peer(reject={"nobody@far.test": "550 5.1.1 no such user here"})
    server = make_server(relay_config(peer))
    server.add_user("alice@localhost")
    # The peer offers STARTTLS with the server's own self-signed pair.
    tls = server.data_dir / "tls"
    peer.tls = None
    peer.__init__(port=peer.port, reject=peer.reject, certfile=str(tls / "cert.pem"), keyfile=str(tls / "key.pem"))
    peer.start()
    yield server, peer
    peer.stop()


def test_smarthost_delivery_with_pipelining_and_starttls(relay):
    server, peer = relay
    submit(server, ["bob@far.test", "carol@far.test"], subject="two recipients")
    wait_for(lambda: peer.messages, what="delivery to the peer")
    [m] = peer.messages
    assert m["mail_from"] == "alice@localhost"
    assert sorted(m["rcpt_tos"]) == ["bob@far.test", "carol@far.test"], "one transaction, both recipients"
    assert m["tls"], "STARTTLS was offered, so it was used"
    parsed = email.message_from_bytes(m["content"], policy=email.policy.default)
    assert parsed["Subject"] == "two recipients"
    assert b"\r\n.line starting with a dot\r\n" in m["content"], "dot-stuffing undone by the peer"
    wait_for(lambda: "smarthost:relay" not in server.queues() or server.queues()["smarthost:relay"]["messages"] == 0,
             what="queue to empty")


def test_permanent_failure_gives_a_dsn_to_the_sender(relay):
    server, peer = relay
    submit(server, ["ok@far.test", "nobody@far.test"], subject="partly refused")
    wait_for(lambda: peer.messages, what="delivery of the good recipient")
    assert peer.messages[0]["rcpt_tos"] == ["ok@far.test"]
    [dsn] = server.wait_delivered("alice@localhost", 1)
    status, raw = server.curl(f"/api/messages/{dsn['id']}/raw", "-H", f"Authorization: Bearer {server.token}")
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied"
    text = raw.replace("\r\n", "\n")
    assert "Final-Recipient: rfc822; nobody@far.test" in text
    assert "Status: 5.1.1" in text
    assert "550 5.1.1 no such user here" in text
    assert "Subject: partly refused" in text, "the original headers come back"
    assert "ok@far.test" not in text.split("message/delivery-status", 1)[1].split("text/rfc822-headers")[0]
    # The DSN went to the local sender only: nothing more reached the peer.
    time.sleep(1)
    assert len(peer.messages) == 1
    audit = server.cli("audit").stdout  # delivery is not an admin action: nothing logged
    assert "nobody@far.test" not in audit
    # /metrics counts the copies by outcome and the bounce.
    status, text = server.curl("/metrics", "-H", f"Authorization: Bearer {server.token}")
    assert status == 200
    assert 'lazaret_deliveries_total{destination="remote",outcome="delivered"} 1' in text
    assert 'lazaret_deliveries_total{destination="remote",outcome="failed"} 1' in text
    assert "lazaret_dsns_total 1" in text


def test_peer_down_retries_and_delivers_when_it_is_back(make_server):
    peer = Peer()
    server = make_server(relay_config(peer, delivery='retry_schedule = ["1s"]\n'))
    server.add_user("alice@localhost")
    submit(server, ["bob@far.test"], subject="patience")
    wait_for(lambda: server.queues().get("smarthost:relay", {}).get("retry", 0) == 1, what="a retry state")
    [held] = server.cli_json("queue", "show", "smarthost:relay")
    assert held["state"] == "retry" and held["attempts"] >= 1
    assert "connect" in held["last_error"] or "refused" in held["last_error"], held
    peer.start()
    try:
        wait_for(lambda: peer.messages, what="delivery after the peer came back")
        assert peer.messages[0]["rcpt_tos"] == ["bob@far.test"]
        assert server.inbox("alice@localhost") == [], "no DSN for a temporary failure"
    finally:
        peer.stop()


def test_give_up_after_lifetime_sends_a_delay_dsn(make_server):
    peer = Peer()  # never started
    server = make_server(relay_config(peer, delivery='retry_schedule = ["1s"]\ngive_up_after = "3s"\n'))
    server.add_user("alice@localhost")
    submit(server, ["bob@far.test"], subject="too late")
    [dsn] = server.wait_delivered("alice@localhost", 1, timeout=30)
    status, raw = server.curl(f"/api/messages/{dsn['id']}/raw", "-H", f"Authorization: Bearer {server.token}")
    assert "Status: 4.4.7" in raw and "bob@far.test" in raw
    assert server.queues().get("smarthost:relay", {}).get("messages", 0) == 0


def test_frozen_queue_and_schedule_never_make_no_attempts(relay):
    server, peer = relay
    server.cli("queue", "freeze", "smarthost:relay")
    submit(server, ["bob@far.test"], subject="held by freeze")
    wait_for(lambda: server.queues().get("smarthost:relay", {}).get("messages") == 1, what="queued")
    time.sleep(2.5)
    assert peer.connections == 0 and peer.messages == []
    assert server.queues()["smarthost:relay"]["state"] == "frozen"
    server.cli("queue", "thaw", "smarthost:relay")
    wait_for(lambda: len(peer.messages) == 1, what="delivery after thaw")

    out = server.cli("connector", "schedule", "relay", "never").stdout
    assert "closed now" in out
    submit(server, ["bob@far.test"], subject="held by schedule")
    wait_for(lambda: server.queues().get("smarthost:relay", {}).get("messages") == 1, what="queued")
    connections = peer.connections
    time.sleep(2.5)
    assert peer.connections == connections and len(peer.messages) == 1
    [c] = server.cli_json("connector", "list")
    assert (c["name"], c["schedule"], c["open"], c["messages"]) == ("relay", "never", False, 1)
    assert "schedule" in server.queues()["smarthost:relay"]["held"]

    # The schedule survives a restart.
    server.stop()
    server.start()
    time.sleep(2)
    assert len(peer.messages) == 1
    assert server.cli_json("connector", "list")[0]["schedule"] == "never"
    server.cli("connector", "schedule", "relay", "mon-fri", "00:00-24:00,", "sat-sun")
    wait_for(lambda: len(peer.messages) == 2, what="delivery once the schedule is open")
    assert server.cli_json("connector", "list")[0]["schedule"] == "mon-fri 00:00-24:00, sat-sun"

    bad = server.cli("connector", "schedule", "relay", "mon-fry", check=False)
    assert bad.returncode == 2 and "mon-fry" in bad.stderr
    missing = server.cli("connector", "schedule", "nosuch", "never", check=False)
    assert missing.returncode == 2 and "relay" in missing.stderr
    actions = [a["action"] for a in server.cli_json("audit")]
    assert actions.count("connector schedule") == 2 and "queue freeze" in actions


def test_outbound_disable_holds_every_remote_queue(make_server):
    peer = Peer().start()
    try:
        static_mx = f'static_mx = {{ "far.test" = "{peer.address}", "other.test" = "{peer.address}" }}\n'
        config = (
            relay_config(peer, delivery=static_mx).replace('domains = ["*"]', 'domains = ["partner.test"]')
            + '\n[[connector]]\nname = "internet"\ndomains = ["*"]\nroute = "mx"\n'
        )
        server = make_server(config)
        server.add_user("alice@localhost")
        out = server.cli("outbound", "disable").stdout
        assert "held" in out
        submit(server, ["a@partner.test", "b@far.test", "c@other.test"], subject="held outbound")
        wait_for(lambda: sum(q["messages"] for n, q in server.queues().items() if n not in ("inbound", "local", "poison")) == 3,
                 what="three remote queues")
        queues = server.queues()
        for name in ("smarthost:relay", "remote:far.test", "remote:other.test"):
            assert queues[name]["held"] == "outbound disabled", queues[name]
        time.sleep(2.5)
        assert peer.connections == 0
        assert server.cli_json("status")["outbound"] == "disabled"
        server.cli("outbound", "enable")
        wait_for(lambda: len(peer.messages) == 3, what="all three delivered")
        assert sorted(r for m in peer.messages for r in m["rcpt_tos"]) == ["a@partner.test", "b@far.test", "c@other.test"]
        actions = [a["action"] for a in server.cli_json("audit")]
        assert "outbound disable" in actions and "outbound enable" in actions
    finally:
        peer.stop()


def test_freeze_and_thaw_single_messages(relay):
    server, peer = relay
    server.cli("outbound", "disable")
    submit(server, ["one@far.test"], subject="one")
    submit(server, ["two@far.test"], subject="two")
    wait_for(lambda: server.queues().get("smarthost:relay", {}).get("messages") == 2, what="queued")
    queued = {m["subject"]: m["id"] for m in server.cli_json("queue", "show", "smarthost:relay")}
    r = server.cli("freeze", "--ids", "-", input=queued["one"] + "\n")
    assert "frozen 1 message(s)" in r.stdout
    server.cli("outbound", "enable")
    wait_for(lambda: len(peer.messages) == 1, what="the unfrozen one")
    assert peer.messages[0]["rcpt_tos"] == ["two@far.test"]
    [left] = server.cli_json("queue", "show", "smarthost:relay")
    assert left["state"] == "frozen"
    time.sleep(1.5)
    assert len(peer.messages) == 1
    server.cli("thaw", "--ids", queued["one"])
    wait_for(lambda: len(peer.messages) == 2, what="the thawed one")
    bad = server.cli("freeze", "--ids", "m12", check=False)
    assert bad.returncode == 2 and "q<number>" in bad.stderr
    empty = server.cli("freeze", "--ids", "-", input="", check=False)
    assert empty.returncode == 2


def test_inbound_port_never_relays_even_with_a_connector(relay):
    server, peer = relay
    with server.smtp() as s:
        s.ehlo()
        s.mail("someone@far.test")
        code, text = s.rcpt("victim@elsewhere.test")
        assert code == 550 and text.startswith(b"5.7.1")
    time.sleep(1)
    assert peer.messages == []


def test_retry_now_sends_waiting_mail_at_once_and_leaves_frozen_mail(make_server):
    """`queue retry` / `retry` (as `postqueue -f`): mail waiting an hour to retry goes
    within a second of the command once the peer is back; frozen mail stays put."""
    peer = Peer()  # down at first
    server = make_server(relay_config(peer, delivery='retry_schedule = ["1h"]\n'))
    server.add_user("alice@localhost")
    for subject in ("first", "second", "held"):
        submit(server, [f"{subject}@far.test"], subject=subject)
    wait_for(lambda: server.queues().get("smarthost:relay", {}).get("retry", 0) == 3, what="three in retry")
    held = {m["subject"]: m["id"] for m in server.cli_json("queue", "show", "smarthost:relay")}["held"]
    server.cli("freeze", "--ids", held)
    peer.start()
    try:
        time.sleep(1.5)
        assert peer.messages == [], "the next attempt is an hour away"
        r = server.cli("retry", "--ids", "-", input="\n".join(
            m["id"] for m in server.cli_json("queue", "show", "smarthost:relay")) + "\n")
        assert "made due now 2 message(s); 1 frozen, left frozen" in r.stdout, r.stdout
        started = time.time()
        wait_for(lambda: len(peer.messages) == 2, timeout=5, what="both sent after retry")
        assert time.time() - started < 3
        assert sorted(m["rcpt_tos"][0] for m in peer.messages) == ["first@far.test", "second@far.test"]
        [left] = server.cli_json("queue", "show", "smarthost:relay")
        assert left["state"] == "frozen"
        # Whole queues: the frozen one is counted, not sent.
        r = server.cli("queue", "retry", "smarthost:relay")
        assert "due now: 0 message(s); frozen, left frozen: 1" in r.stdout, r.stdout
        bad = server.cli("queue", "retry", "remote:nowhere.test", check=False)
        assert bad.returncode != 0 and "no queue remote:nowhere.test" in bad.stderr
        server.cli("thaw", "--ids", held)
        wait_for(lambda: len(peer.messages) == 3, what="the thawed one")
        audit = server.cli("audit").stdout
        assert "queue retry" in audit and "retry" in audit
        assert server.inbox("alice@localhost") == [], "no DSN"
    finally:
        peer.stop()


def test_a_failed_starttls_handshake_falls_back_to_plaintext(make_server):
    """A peer that offers STARTTLS but cannot complete the handshake (here: it speaks
    TLS 1.1 at most; Lazaret's client 1.2 and up) gets the mail without TLS at once —
    opportunistic TLS, as Postfix at `may` — instead of a deferral at every retry."""
    import ssl
    peer = Peer()
    server = make_server(relay_config(peer))
    server.add_user("alice@localhost")
    tls = server.data_dir / "tls"
    broken = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    broken.load_cert_chain(str(tls / "cert.pem"), str(tls / "key.pem"))
    broken.maximum_version = ssl.TLSVersion.TLSv1_1
    peer.tls = broken
    peer.start()
    try:
        submit(server, ["bob@far.test"], subject="no tls")
        wait_for(lambda: peer.messages, what="delivery without TLS")
        [m] = peer.messages
        assert not m["tls"]
        assert m["rcpt_tos"] == ["bob@far.test"]
        # The path says how it went.
        found = server.cli_json("find", "--subject", "no tls", "--in", "all")
        assert found == []  # delivered on: nothing left here
        log = (server.workdir / "server.log").read_text()
        assert "STARTTLS failed" in log and "without TLS" in log
    finally:
        peer.stop()


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="the MX host listens on port 25 (root)")
def test_mx_route_asks_the_configured_dns_servers(make_server):
    """`[delivery] dns_servers`: `route = "mx"` looks the MX up on the given server (here
    a dnslib server on loopback), not /etc/resolv.conf's."""
    from dns_zone import Zone
    dns = Zone(mx={"far.test": "localhost."})
    peer = Peer(port=25)
    peer.start()
    try:
        server = make_server(
            '[[connector]]\nname = "internet"\ndomains = ["*"]\nroute = "mx"\n'
            f'\n[delivery]\npoll_interval = "1s"\ndns_servers = ["127.0.0.1:{dns.port}"]\n'
        )
        server.add_user("alice@localhost")
        submit(server, ["bob@far.test"], subject="by mx")
        wait_for(lambda: peer.messages, what="delivery to the MX host")
        assert peer.messages[0]["rcpt_tos"] == ["bob@far.test"]
    finally:
        peer.stop()
        dns.stop()
