#!/usr/bin/env python3
"""DNS for the ingest benchmark with `[auth_checks]` on: an authoritative server on
loopback (dnslib) answering for far.test, the load client's domain — SPF allowing
127.0.0.1, a DKIM key, DMARC p=reject — and a DKIM-Signature for smtp_load.py's
messages (it signs From, To and the body, which are the same in every message, so one
signature serves them all and the receiver verifies each one in full).

usage: auth_zone.py DIR   writes DIR/port and DIR/signature.hdr, then serves until killed
"""

import base64
import os
import signal
import subprocess
import sys
import time

import dkim
from dnslib import QTYPE, RR, SOA, TXT
from dnslib.server import BaseResolver, DNSServer

# Must match smtp_load.py's message (its @N@ is in the Subject, which is not signed).
SIZE = int(os.environ.get("SIZE", "10240"))


def load_message(size):
    head = b"From: load@far.test\r\nTo: user@bench\r\nSubject: load test 0\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head.replace(b"0\r\n\r\n", b"@N@\r\n\r\n"))) // len(line))


def main():
    out = sys.argv[1]
    key = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, check=True).stdout
    public = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=key,
                            capture_output=True, check=True).stdout
    records = {
        "far.test": "v=spf1 ip4:127.0.0.1 -all",
        "sel._domainkey.far.test": "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode(),
        "_dmarc.far.test": "v=DMARC1; p=reject",
    }
    signature = dkim.sign(load_message(SIZE), b"sel", b"far.test", key,
                          include_headers=[b"From", b"To"])

    class Answers(BaseResolver):
        def resolve(self, request, handler):
            reply = request.reply()
            name = str(request.q.qname).rstrip(".").lower()
            if name not in records:
                # NXDOMAIN with the zone's SOA, as a real server answers: resolvers keep
                # such an answer for the SOA's minimum TTL (RFC 2308) instead of asking
                # again for every message (DMARC's tree walk asks for _dmarc.test).
                reply.header.rcode = 3
                reply.add_auth(RR("test.", QTYPE.SOA, ttl=3600, rdata=SOA(
                    "ns.test.", "hostmaster.test.", (1, 3600, 600, 86400, 3600))))
            elif request.q.qtype == QTYPE.TXT:
                value = records[name].encode()
                chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=3600))
            return reply

    server = DNSServer(Answers(), port=0, address="127.0.0.1", logger=Quiet())
    server.start_thread()
    with open(f"{out}/signature.hdr", "wb") as f:
        f.write(signature)
    with open(f"{out}/port.tmp", "w") as f:
        f.write(str(server.server.server_address[1]))
    os.rename(f"{out}/port.tmp", f"{out}/port")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


class Quiet:
    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


if __name__ == "__main__":
    main()
