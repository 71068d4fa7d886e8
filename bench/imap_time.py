#!/usr/bin/env python3
"""Times IMAP commands against any server with a raw socket (no client-side parsing
beyond finding the tagged reply, so the server's time dominates): LOGIN, then each
COMMAND in turn, printing seconds and bytes received as JSON.

usage: imap_time.py HOST:PORT USER PASSWORD 'SELECT INBOX' 'FETCH 1:* (ENVELOPE)' ...
"""

import json
import socket
import sys
import time


def run(sock, tag, command, keep=False):
    """Sends a command and reads to its tagged OK: (seconds, bytes received, and the
    bytes themselves if `keep`)."""
    sock.sendall(f"{tag} {command}\r\n".encode())
    want = f"\r\n{tag} ".encode()
    buf = b"\r\n"
    kept = []
    total = 0
    t0 = time.perf_counter()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        total += len(chunk)
        if keep:
            kept.append(chunk)
        buf = buf[-256:] + chunk
        i = buf.find(want)
        if i >= 0 and buf.find(b"\r\n", i + 2) >= 0:
            line = buf[i + 2:buf.find(b"\r\n", i + 2)]
            if not line.split(b" ")[1].startswith(b"OK"):
                raise RuntimeError(f"{command}: {line!r}")
            return time.perf_counter() - t0, total, b"".join(kept)


def main():
    target, user, password, *commands = sys.argv[1:]
    host, port = target.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.recv(4096)
    run(sock, "l", f'LOGIN "{user}" "{password}"')
    out = []
    for n, command in enumerate(commands):
        secs, size, _ = run(sock, f"t{n}", command)
        out.append({"command": command, "seconds": round(secs, 5), "bytes": size})
    sock.sendall(b"z LOGOUT\r\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
