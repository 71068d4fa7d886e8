"""A real SMTP peer for outbound tests: aiosmtpd (a server no one here wrote) on
loopback, recording every connection and transaction, with recipients it refuses
permanently or temporarily, PIPELINING announced, and STARTTLS when given a cert."""

import socket
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handler:
    def __init__(self, peer):
        self.peer = peer

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # aiosmtpd reads commands one by one, so pipelined batches work; announce it
        # so the client's pipelined path is the one tested.
        return responses[:-1] + ["250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.peer.reject:
            return self.peer.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.peer.lock:
            self.peer.messages.append(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": list(envelope.rcpt_tos),
                    "content": envelope.original_content,
                    "tls": session.ssl is not None,
                }
            )
        return "250 2.0.0 queued"


class CountingController(Controller):
    def __init__(self, peer, **kwargs):
        self.peer = peer
        super().__init__(Handler(peer), **kwargs)

    def factory(self):
        with self.peer.lock:
            self.peer.connections += 1
        return SMTP(self.handler, **self.SMTP_kwargs)


class Peer:
    def __init__(self, port=None, reject=None, certfile=None, keyfile=None):
        self.port = port or free_port()
        self.reject = reject or {}
        self.messages = []
        self.connections = 0
        self.lock = threading.Lock()
        self.tls = None
        if certfile:
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(certfile, keyfile)
        self.controller = None
        # A port chosen here is held while the peer is down; a port the test named is
        # the test's to manage (several peers may take turns on port 25).
        self.holds_port = port is None
        self.placeholder = None
        self._reserve()

    def _reserve(self):
        """While down, the port stays bound (not listening: connections are refused), so
        no server the test starts next can be given it by the kernel and answer in the
        peer's place."""
        if not self.holds_port:
            return
        self.placeholder = socket.socket()
        try:
            self.placeholder.bind(("127.0.0.1", self.port))
        except OSError:
            self.placeholder.close()
            self.placeholder = None

    def _release(self):
        if self.placeholder:
            self.placeholder.close()
            self.placeholder = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self._release()
        kwargs = {"hostname": "127.0.0.1", "port": self.port}
        if self.tls:
            kwargs["tls_context"] = self.tls
        self.controller = CountingController(self, **kwargs)
        self.controller.start()
        # start() opens one connection itself to see the server is up.
        with self.lock:
            self.connections = 0
        return self

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None
            self._reserve()
