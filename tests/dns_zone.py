"""A small authoritative DNS server on loopback (dnslib) for tests: MX, TXT and A answers
by name, NXDOMAIN for any other name. Lazaret asks it through `[delivery] dns_servers`."""

from peer import free_port


class Zone:
    def __init__(self, mx=None, txt=None, a=None):
        from dnslib import A, MX, QTYPE, RR, TXT
        from dnslib.server import BaseResolver, DNSServer

        mx, txt, a = mx or {}, txt or {}, a or {}

        class Answers(BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                if name not in mx and name not in txt and name not in a:
                    reply.header.rcode = 3  # NXDOMAIN
                elif request.q.qtype == QTYPE.MX and name in mx:
                    reply.add_answer(RR(request.q.qname, QTYPE.MX, rdata=MX(mx[name], 10), ttl=60))
                elif request.q.qtype == QTYPE.TXT and name in txt:
                    value = txt[name].encode()
                    chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
                    reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
                elif request.q.qtype == QTYPE.A and name in a:
                    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(a[name]), ttl=60))
                return reply

        self.port = free_port()
        self.server = DNSServer(Answers(), port=self.port, address="127.0.0.1")
        self.server.start_thread()

    def stop(self):
        self.server.stop()
