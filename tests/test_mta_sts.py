"""Outbound TLS policy: MTA-STS (RFC 8461) and connector `tls` levels.

The world the tests build on loopback: a dnslib zone (`_mta-sts.far.test` TXT, the
policy host's address, far.test's MX `localhost.`), a test certificate authority that
Lazaret trusts through `SSL_CERT_FILE`, the policy served over HTTPS on 127.0.0.1:443 by
Python's http.server, and the MX host an aiosmtpd peer on port 25 with STARTTLS. Ports 25
and 443: root only (as CI runs)."""

import http.server
import json
import os
import ssl
import subprocess
import threading

import pytest

from dns_zone import Zone
from peer import Peer
from test_outbound import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the MX host and the policy host listen on ports 25 and 443 (root)")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(ca_dir, name, out):
    """A P-256 certificate for `name` signed by the test CA in `ca_dir`."""
    ext = out / f"{name}.ext"
    ext.write_text(f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=out)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca_dir / "ca.pem"), "-CAkey", str(ca_dir / "ca.key"),
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", str(ext), cwd=out)
    return out / f"{name}.pem", out / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Lazaret test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    certs = {name: issue(d, name, d) for name in ("localhost", "mta-sts.far.test")}
    # A certificate for the right name that no trusted authority signed.
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "self.key", "-out", "self.pem", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost", cwd=d)
    certs["self-signed"] = (d / "self.pem", d / "self.key")
    return d, certs


class PolicyHost:
    """https://mta-sts.far.test/.well-known/mta-sts.txt on 127.0.0.1:443."""

    def __init__(self, cert, key):
        self.policy = ""
        self.fetches = 0
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host.fetches += 1
                if self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                body = host.policy.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 443), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def enforce(mx="localhost", mode="enforce"):
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n"


@pytest.fixture
def world(pki, make_server, monkeypatch):
    d, certs = pki
    dns = Zone(mx={"far.test": "localhost."},
               txt={"_mta-sts.far.test": "v=STSv1; id=20261202T000000;"},
               a={"mta-sts.far.test": "127.0.0.1"})
    policy_host = PolicyHost(*certs["mta-sts.far.test"])
    # Lazaret trusts the test CA only (rustls-native-certs honours SSL_CERT_FILE).
    monkeypatch.setenv("SSL_CERT_FILE", str(d / "ca.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    peers = []

    def mx_peer(cert="localhost"):
        c, k = certs[cert] if cert else (None, None)
        peer = Peer(port=25, certfile=str(c) if c else None, keyfile=str(k) if k else None)
        peers.append(peer.start())
        return peer

    def server(delivery_extra=""):
        s = make_server(
            '[[connector]]\nname = "internet"\ndomains = ["*"]\nroute = "mx"\n'
            f'\n[delivery]\npoll_interval = "1s"\nretry_schedule = ["1s"]\ndns_servers = ["127.0.0.1:{dns.port}"]\n'
            + delivery_extra
        )
        s.add_user("alice@localhost")
        return s

    yield server, mx_peer, policy_host
    for p in peers:
        p.stop()
    policy_host.stop()
    dns.stop()


def submit(server, subject, rcpt="bob@far.test"):
    """Sends one message through submission; returns its id (the 250 reply's last word)."""
    with server.submission() as s:
        s.login("alice@localhost", "secret")
        s.ehlo()
        s.mail("alice@localhost")
        assert s.rcpt(rcpt)[0] == 250
        code, reply = s.data(f"From: alice@localhost\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())
        assert code == 250
        return reply.decode().rsplit(" ", 1)[-1]


def delivered_detail(server, message):
    [t] = server.cli_json("trace", message)
    [d] = [e for e in t["events"] if e["event"] == "delivered"]
    return d["detail"]


def held(server, queue="remote:far.test"):
    wait_for(lambda: server.queues().get(queue, {}).get("retry", 0) == 1, what="a retry state")
    [item] = server.cli_json("queue", "show", queue)
    return item


def test_an_enforced_policy_delivers_over_a_verified_certificate_and_is_kept(world):
    make, mx_peer, policy_host = world
    policy_host.policy = enforce()
    peer = mx_peer("localhost")
    server = make()
    message = submit(server, "to a domain with MTA-STS")
    wait_for(lambda: peer.messages, what="delivery to the MX host")
    assert peer.messages[0]["tls"]
    wait_for(lambda: "delivered" in json.dumps(server.cli_json("trace", message)), what="the delivered event")
    assert "TLS verified for localhost (MTA-STS)" in delivered_detail(server, message)
    kept = json.loads((server.data_dir / "mta-sts.json").read_text())
    assert kept["policies"]["far.test"]["policy"] == {"mode": "enforce", "mx": ["localhost"], "max_age": 86400}
    assert kept["policies"]["far.test"]["id"] == "20261202T000000"
    tls = server.cli_json("status")["outbound_tls"]
    assert tls["mta_sts"] is True and tls["trusted_roots"] == 1, tls
    assert [(p["domain"], p["mode"], p["mx"]) for p in tls["policies"]] == [("far.test", "enforce", ["localhost"])]
    assert "Outbound TLS: MTA-STS on (policies held: far.test enforce), DANE off, 1 trusted certificate authorities" in server.cli("status").stdout

    # The next message within the re-check interval needs neither TXT nor HTTPS again;
    # after a restart the kept policy holds even with the policy host gone.
    fetches = policy_host.fetches
    submit(server, "second")
    wait_for(lambda: len(peer.messages) == 2, what="the second delivery")
    assert policy_host.fetches == fetches
    policy_host.stop()
    server.stop()
    server.start()
    peer.stop()
    self_signed = mx_peer("self-signed")
    submit(server, "after the restart")
    item = held(server)
    assert "certificate" in item["last_error"] and "MTA-STS policy of far.test" in item["last_error"], item
    assert self_signed.messages == []


def test_an_enforced_policy_refuses_an_untrusted_certificate_and_plain_text(world):
    make, mx_peer, policy_host = world
    policy_host.policy = enforce()
    peer = mx_peer("self-signed")
    server = make()
    submit(server, "untrusted")
    item = held(server)
    assert "certificate not valid for localhost" in item["last_error"], item
    assert "required by the MTA-STS policy of far.test (mode enforce)" in item["last_error"], item
    assert peer.messages == [], "nothing went over a connection the policy does not allow"

    # A peer without STARTTLS: no plain-text fallback under an enforced policy.
    peer.stop()
    plain = mx_peer(None)
    wait_for(lambda: "offers no STARTTLS" in server.cli_json("queue", "show", "remote:far.test")[0]["last_error"],
             what="the no-STARTTLS deferral")
    assert plain.messages == []

    # The right certificate: the held message goes at its next retry.
    plain.stop()
    good = mx_peer("localhost")
    wait_for(lambda: good.messages, what="delivery once the MX host has a valid certificate")
    assert good.messages[0]["tls"]


def test_an_enforced_policy_sends_nothing_to_an_mx_host_it_does_not_list(world):
    make, mx_peer, policy_host = world
    policy_host.policy = enforce(mx="mx.far.test")
    peer = mx_peer("localhost")
    server = make()
    submit(server, "wrong mx")
    item = held(server)
    assert "lists none of its MX hosts (localhost)" in item["last_error"], item
    assert peer.messages == [] and peer.connections == 0


def test_a_testing_policy_logs_and_delivers(world):
    make, mx_peer, policy_host = world
    policy_host.policy = enforce(mx="mx.far.test", mode="testing")
    peer = mx_peer("self-signed")
    server = make()
    message = submit(server, "testing mode")
    wait_for(lambda: peer.messages, what="delivery under a testing policy")
    wait_for(lambda: "delivered" in json.dumps(server.cli_json("trace", message)), what="the delivered event")
    assert "MTA-STS testing: certificate not valid for localhost" in delivered_detail(server, message)
    log = (server.workdir / "server.log").read_text()
    assert "does not list this MX host" in log


def test_mta_sts_off_keeps_opportunistic_tls(world):
    """`[delivery] mta_sts = false`: the domain's enforced policy is not asked for, and
    a self-signed certificate is fine, as with any domain without a policy."""
    make, mx_peer, policy_host = world
    policy_host.policy = enforce()
    peer = mx_peer("self-signed")
    server = make("mta_sts = false\n")
    message = submit(server, "mta_sts off")
    wait_for(lambda: peer.messages, what="delivery with MTA-STS off")
    assert peer.messages[0]["tls"]
    wait_for(lambda: "delivered" in json.dumps(server.cli_json("trace", message)), what="the delivered event")
    assert "verified" not in delivered_detail(server, message)
    assert policy_host.fetches == 0 and not (server.data_dir / "mta-sts.json").exists()
    assert "Outbound TLS: MTA-STS off ([delivery] mta_sts = false)" in server.cli("status").stdout


def test_connector_tls_encrypt_and_verify(world):
    """`tls = "encrypt"` on a smarthost connector: STARTTLS or nothing, any certificate;
    `tls = "verify"`: a certificate valid for the smarthost's name."""
    make, mx_peer, _ = world
    plain = mx_peer(None)
    server = make()
    server.stop()
    text = server.config.read_text()
    server.config.write_text(text.replace('route = "mx"\n', 'smarthost = "localhost:25"\ntls = "encrypt"\n'))
    server.start()
    [connector] = server.cli_json("connector", "list")
    assert connector["tls"] == "encrypt", connector
    submit(server, "must be encrypted")
    item = held(server, "smarthost:internet")
    assert "offers no STARTTLS" in item["last_error"] and 'tls = encrypt' in item["last_error"], item
    assert plain.messages == []
    plain.stop()
    self_signed = mx_peer("self-signed")
    wait_for(lambda: self_signed.messages, what="delivery over encrypted TLS with any certificate")
    assert self_signed.messages[0]["tls"]

    server.stop()
    server.config.write_text(server.config.read_text().replace('tls = "encrypt"', 'tls = "verify"'))
    server.start()
    submit(server, "must be verified")
    item = held(server, "smarthost:internet")
    assert "certificate not valid for localhost" in item["last_error"], item
    assert len(self_signed.messages) == 1
    self_signed.stop()
    good = mx_peer("localhost")
    wait_for(lambda: good.messages, what="delivery once the certificate is valid")
