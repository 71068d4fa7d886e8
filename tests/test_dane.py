"""DANE for SMTP (RFC 7672), `[delivery] dane = true`.

The world on loopback: a dnslib zone playing a validating resolver (names of the
"signed" zone answered with the AD bit: far.test's MX `localhost.`, localhost's address,
and the TLSA records of `_25._tcp.localhost`), certificates from a test certificate
authority that Lazaret does *not* trust (DANE needs none), and the MX host an aiosmtpd
peer on port 25 with STARTTLS. Port 25: root only (as CI runs)."""

import hashlib
import os
import subprocess

import pytest

from conftest import TEST_STORE
from dns_zone import Zone
from peer import Peer
from test_mta_sts import PolicyHost, delivered_detail, enforce, held, pki, submit  # noqa: F401
from test_outbound import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the MX host listens on port 25 (root)")

TLSA_NAME = "_25._tcp.localhost"
SIGNED = {"far.test", "localhost", TLSA_NAME}


def der(pem):
    return subprocess.run(["openssl", "x509", "-in", str(pem), "-outform", "DER"],
                          check=True, capture_output=True).stdout


def spki(pem):
    key = subprocess.run(["openssl", "x509", "-in", str(pem), "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=key,
                          check=True, capture_output=True).stdout


def sha256(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def dane_world(pki, make_server, monkeypatch, tmp_path):
    d, certs = pki
    dns = Zone(mx={"far.test": "localhost."},
               a={"localhost": "127.0.0.1", "mta-sts.far.test": "127.0.0.1"},
               txt={"_mta-sts.far.test": "v=STSv1; id=20261203T000000;"},
               secure=SIGNED)
    # Lazaret trusts no authority here: only DANE can authenticate a peer. (An empty
    # store also once kept the resolver from being built at all: no MX lookups.)
    nobody = tmp_path / "no-roots.pem"
    nobody.write_text("")
    if TEST_STORE == "postgres":
        # The bucket's HTTP client will not start on an empty trust store: give it
        # an authority that signed nothing here, which trusts no peer all the same.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(tmp_path / "unrelated.key"), "-out", str(nobody),
                        "-subj", "/CN=an authority that signed nothing", "-days", "2"],
                       check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(nobody))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    peers = []

    def mx_peer(cert="localhost", chain=False):
        if cert is None:
            peer = Peer(port=25)
        else:
            c, k = certs[cert]
            if chain:
                # The leaf and the authority that issued it, as a DANE-TA server sends.
                both = tmp_path / f"{cert}-chain.pem"
                both.write_bytes(c.read_bytes() + (d / "ca.pem").read_bytes())
                c = both
            peer = Peer(port=25, certfile=str(c), keyfile=str(k))
        peers.append(peer.start())
        return peer

    def server(extra="dane = true\n"):
        s = make_server(
            '[[connector]]\nname = "internet"\ndomains = ["*"]\nroute = "mx"\n'
            f'\n[delivery]\npoll_interval = "1s"\nretry_schedule = ["1s"]\ndns_servers = ["127.0.0.1:{dns.port}"]\n'
            + extra
        )
        s.add_user("alice@localhost")
        return s

    yield dns, server, mx_peer, certs, d
    for p in peers:
        p.stop()
    dns.stop()


def test_dane_ee_authenticates_a_certificate_no_authority_signed(dane_world):
    dns, server, mx_peer, certs, _ = dane_world
    dns.tlsa[TLSA_NAME] = [(3, 1, 1, sha256(spki(certs["self-signed"][0])))]
    peer = mx_peer("self-signed")
    s = server()
    message = submit(s, "dane-ee")
    wait_for(lambda: peer.messages, what="delivery over DANE-EE")
    assert peer.messages[0]["tls"]
    wait_for(lambda: s.queues().get("remote:far.test", {}).get("messages", 0) == 0, what="the queue to empty")
    assert "TLS authenticated by DANE (DANE-EE) for localhost" in delivered_detail(s, message)
    tls = s.cli_json("status")["outbound_tls"]
    assert tls["dane"] is True and tls["dane_resolvers"] == [f"127.0.0.1:{dns.port}"]
    assert f"DANE on (trusting 127.0.0.1:{dns.port})" in s.cli("status").stdout


def test_a_certificate_the_records_do_not_name_gets_nothing(dane_world):
    dns, server, mx_peer, certs, _ = dane_world
    # The records name the self-signed key; the host presents the CA-issued one.
    dns.tlsa[TLSA_NAME] = [(3, 1, 1, sha256(spki(certs["self-signed"][0])))]
    peer = mx_peer("localhost")
    s = server()
    submit(s, "dane mismatch")
    item = held(s)
    assert "no TLSA record matches" in item["last_error"], item["last_error"]
    assert "DANE" in item["last_error"]
    assert peer.messages == [], "nothing went over a connection DANE does not authenticate"


def test_no_plain_text_where_tlsa_records_exist(dane_world):
    dns, server, mx_peer, certs, _ = dane_world
    dns.tlsa[TLSA_NAME] = [(3, 1, 1, sha256(spki(certs["localhost"][0])))]
    peer = mx_peer(None)  # no STARTTLS at all
    s = server()
    submit(s, "dane, no starttls")
    item = held(s)
    assert "offers no STARTTLS" in item["last_error"], item["last_error"]
    assert peer.messages == []


def test_dane_ta_names_the_issuer_and_the_host_name_is_checked(dane_world):
    dns, server, mx_peer, certs, ca_dir = dane_world
    dns.tlsa[TLSA_NAME] = [(2, 0, 1, sha256(der(ca_dir / "ca.pem")))]
    peer = mx_peer("localhost", chain=True)
    s = server()
    message = submit(s, "dane-ta")
    wait_for(lambda: peer.messages, what="delivery over DANE-TA")
    wait_for(lambda: s.queues().get("remote:far.test", {}).get("messages", 0) == 0, what="the queue to empty")
    assert "DANE (DANE-TA)" in delivered_detail(s, message)
    peer.stop()
    # The same authority's certificate for another name is refused.
    other = mx_peer("mta-sts.far.test", chain=True)
    submit(s, "dane-ta, wrong name")
    item = held(s)
    assert "not valid for localhost" in item["last_error"], item["last_error"]
    assert other.messages == []


def test_records_none_usable_still_require_tls(dane_world):
    dns, server, mx_peer, certs, _ = dane_world
    # PKIX-EE (usage 1) is not for SMTP (RFC 7672 §3.1.3): TLS without authentication.
    dns.tlsa[TLSA_NAME] = [(1, 1, 1, sha256(spki(certs["localhost"][0])))]
    peer = mx_peer(None)
    s = server()
    submit(s, "unusable records, no starttls")
    item = held(s)
    assert "offers no STARTTLS" in item["last_error"], item["last_error"]
    peer.stop()
    tls_peer = mx_peer("self-signed")
    wait_for(lambda: tls_peer.messages, timeout=30, what="delivery over unauthenticated TLS")
    assert tls_peer.messages[0]["tls"]


def test_a_failed_tlsa_lookup_keeps_the_mail(dane_world):
    dns, server, mx_peer, certs, _ = dane_world
    dns.servfail.add(TLSA_NAME)
    peer = mx_peer("localhost")
    s = server()
    submit(s, "tlsa servfail")
    item = held(s)
    assert "TLSA lookup for _25._tcp.localhost failed" in item["last_error"], item["last_error"]
    assert peer.messages == [] and peer.connections == 0


def test_unsigned_zones_and_dane_off_keep_opportunistic_tls(dane_world):
    dns, server, mx_peer, certs, _ = dane_world
    wrong = [(3, 1, 1, "00" * 32)]
    dns.tlsa[TLSA_NAME] = wrong
    # The records are there but not validated (no AD bit): DANE does not apply.
    dns.secure.discard("far.test")
    peer = mx_peer("localhost")
    s = server()
    submit(s, "unsigned zone")
    wait_for(lambda: peer.messages, what="opportunistic delivery")
    dns.secure.add("far.test")
    # Signed, but DANE is off.
    s2 = server(extra="")
    submit(s2, "dane off")
    wait_for(lambda: len(peer.messages) == 2, what="delivery with DANE off")
    assert s2.cli_json("status")["outbound_tls"]["dane"] is False


def test_dane_takes_the_place_of_mta_sts(dane_world, pki, monkeypatch):
    dns, server, mx_peer, certs, _ = dane_world
    d, _ = pki
    # An enforced MTA-STS policy that lists no MX host of the domain would keep the mail
    # (its host is trusted here, so the policy is fetched); DANE-authenticated hosts take
    # precedence.
    monkeypatch.setenv("SSL_CERT_FILE", str(d / "ca.pem"))
    policy_host = PolicyHost(*certs["mta-sts.far.test"])
    policy_host.policy = enforce(mx="elsewhere.far.test")
    try:
        dns.tlsa[TLSA_NAME] = [(3, 1, 1, sha256(spki(certs["self-signed"][0])))]
        peer = mx_peer("self-signed")
        s = server()
        message = submit(s, "dane over mta-sts")
        wait_for(lambda: peer.messages, what="delivery under DANE")
        wait_for(lambda: s.queues().get("remote:far.test", {}).get("messages", 0) == 0, what="the queue to empty")
        assert "DANE (DANE-EE)" in delivered_detail(s, message)
    finally:
        policy_host.stop()
