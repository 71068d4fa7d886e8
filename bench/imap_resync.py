#!/usr/bin/env python3
"""The offline client's resync (RFC 7162) against any server: remember a folder's
UIDVALIDITY and HIGHESTMODSEQ, have another session change 1% of it (flags on 0.9%,
0.1% expunged), then time what a QRESYNC client does to catch up —
SELECT … (QRESYNC (uidvalidity modseq)), optionally followed by UID FETCH 1:* (FLAGS)
(CHANGEDSINCE modseq VANISHED) — against what a client without it must do: SELECT + FETCH 1:* (FLAGS).
The figure is SELECT … (QRESYNC …) alone, which already carries every change; the
pair with UID FETCH is reported too.
Prints seconds and bytes received of both as JSON.

usage: imap_resync.py HOST:PORT USER PASSWORD
"""

import json
import re
import socket
import sys

from imap_time import run


class Session:
    def __init__(self, target, user, password):
        host, port = target.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.recv(4096)
        self.n = 0
        self.run(f'LOGIN "{user}" "{password}"')

    def run(self, command):
        """Sends a command; returns (seconds, bytes, the reply's bytes)."""
        self.n += 1
        return run(self.sock, f"r{self.n}", command, keep=True)

    def close(self):
        self.sock.sendall(b"z LOGOUT\r\n")
        self.sock.close()


def main():
    target, user, password = sys.argv[1:]
    s = Session(target, user, password)
    s.run("ENABLE QRESYNC")
    _, _, text = s.run("SELECT INBOX")
    exists = int(re.search(rb"\* (\d+) EXISTS", text).group(1))
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", text).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", text).group(1))
    s.close()

    # Another client changes 1% of the folder.
    c = Session(target, user, password)
    c.run("SELECT INBOX")
    flagged = ",".join(str(n) for n in range(50, exists + 1, 111))
    c.run(f"STORE {flagged} +FLAGS.SILENT (\\Flagged)")
    doomed = ",".join(str(n) for n in range(7, exists + 1, 1000))
    c.run(f"STORE {doomed} +FLAGS.SILENT (\\Deleted)")
    c.run("EXPUNGE")
    c.close()

    # The QRESYNC client: its SELECT brings what vanished and what changed (RFC 7162
    # 3.2.5); nothing more is needed.
    q = Session(target, user, password)
    q.run("ENABLE QRESYNC")
    s1, b1, _ = q.run(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))")
    q.close()
    # The same with the FETCH a client without QRESYNC-aware SELECT would send after it:
    # reported, as it carries the changes a second time.
    p = Session(target, user, password)
    p.run("ENABLE QRESYNC")
    s2, b2, _ = p.run(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))")
    s3, b3, _ = p.run(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    p.close()
    f = Session(target, user, password)
    s4, b4, _ = f.run("SELECT INBOX")
    s5, b5, _ = f.run("FETCH 1:* (FLAGS)")
    f.close()
    print(json.dumps({
        "messages": exists,
        "resync_seconds": round(s1, 5),
        "resync_bytes": b1,
        "select_and_fetch_seconds": round(s2 + s3, 5),
        "select_and_fetch_bytes": b2 + b3,
        "full_seconds": round(s4 + s5, 5),
        "full_bytes": b4 + b5,
    }))


main()
