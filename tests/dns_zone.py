"""A small DNS server on loopback (dnslib) for tests: MX, TXT, A and TLSA answers by name,
NXDOMAIN for any other name. Names in `secure` are answered with the AD bit set, as a
validating resolver does for a DNSSEC-signed zone; names in `servfail` get SERVFAIL.
Lazaret asks it through `[delivery] dns_servers`."""

from peer import free_port


class Zone:
    def __init__(self, mx=None, txt=None, a=None, tlsa=None, secure=(), servfail=()):
        from dnslib import A, MX, QTYPE, RR, TLSA, TXT
        from dnslib.server import BaseResolver, DNSServer

        mx, txt, a = mx or {}, txt or {}, a or {}
        # Mutable, so that a test can change the zone while the server runs.
        self.tlsa, self.secure, self.servfail = dict(tlsa or {}), set(secure), set(servfail)
        zone = self

        class Answers(BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                # reply() copies the question's flags, AD too: say it only for signed names.
                reply.header.ad = 1 if name in zone.secure else 0
                if name in zone.servfail:
                    reply.header.rcode = 2  # SERVFAIL
                elif name not in mx and name not in txt and name not in a and name not in zone.tlsa:
                    reply.header.rcode = 3  # NXDOMAIN
                elif request.q.qtype == QTYPE.MX and name in mx:
                    reply.add_answer(RR(request.q.qname, QTYPE.MX, rdata=MX(mx[name], 10), ttl=60))
                elif request.q.qtype == QTYPE.TXT and name in txt:
                    value = txt[name].encode()
                    chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
                    reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
                elif request.q.qtype == QTYPE.A and name in a:
                    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(a[name]), ttl=60))
                elif request.q.qtype == QTYPE.TLSA and name in zone.tlsa:
                    for usage, selector, matching, data in zone.tlsa[name]:
                        rdata = TLSA(usage, selector, matching, bytes.fromhex(data))
                        reply.add_answer(RR(request.q.qname, QTYPE.TLSA, rdata=rdata, ttl=1))
                return reply

        self.port = free_port()
        self.server = DNSServer(Answers(), port=self.port, address="127.0.0.1")
        self.server.start_thread()

    def stop(self):
        self.server.stop()
