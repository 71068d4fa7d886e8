#!/usr/bin/env python3
"""Seeds the IMAP benchmark: generates COUNT messages (seeded, so both servers get
the same ones: 70% text of 1-8 KB, 30% multipart with a 5-30 KB base64 attachment),
writes them as a Maildir for Dovecot and sends them to Lazaret over SMTP (20
pipelined sessions).

usage: imap_seed.py --count 10000 --maildir DIR --smtp HOST:PORT --rcpt user@localhost
"""

import argparse
import asyncio
import base64
import os
import random


def message(rng: random.Random, n: int) -> bytes:
    words = ["outbreak", "invoice", "meeting", "report", "quarterly", "lazaret", "mail", "server",
             "numbers", "please", "review", "attached", "tomorrow", "budget", "backup", "queue"]
    subject = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
    sender = f"user{rng.randint(1, 500)}@far{rng.randint(1, 20)}.test"
    text_len = rng.randint(1000, 8000)
    lines, size = [], 0
    while size < text_len:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(6, 12)))
        lines.append(line)
        size += len(line) + 2
    text = "\r\n".join(lines)
    head = (f"From: {sender}\r\nTo: bench@localhost\r\nSubject: {subject} #{n}\r\n"
            f"Date: Mon, 23 Nov 2026 {n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d} +0000\r\n"
            f"Message-ID: <bench{n}@far.test>\r\nMIME-Version: 1.0\r\n")
    if rng.random() < 0.7:
        return (head + "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + text + "\r\n").encode()
    blob = rng.randbytes(rng.randint(5000, 30000))
    b64 = base64.encodebytes(blob).decode().replace("\n", "\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="bnd"\r\n\r\n'
            "--bnd\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + text + "\r\n"
            f'--bnd\r\nContent-Type: application/octet-stream; name="file{n}.bin"\r\n'
            f'Content-Disposition: attachment; filename="file{n}.bin"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n" + b64 + "--bnd--\r\n").encode()


async def reply(reader):
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def sender(host, port, queue, rcpt):
    reader, writer = await asyncio.open_connection(host, port)
    await reply(reader)
    writer.write(b"EHLO bench.test\r\n")
    await reply(reader)
    while not queue.empty():
        data = queue.get_nowait()
        writer.write(f"MAIL FROM:<seed@far.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
        codes = [await reply(reader) for _ in range(3)]
        assert codes == [250, 250, 354], codes
        body = data.replace(b"\r\n.", b"\r\n..")
        writer.write(body + b".\r\n")
        assert await reply(reader) == 250
    writer.write(b"QUIT\r\n")
    await reply(reader)
    writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--smtp", required=True)
    ap.add_argument("--rcpt", required=True)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(args.maildir, sub), exist_ok=True)
    queue = asyncio.Queue()
    for n in range(args.count):
        data = message(rng, n)
        with open(os.path.join(args.maildir, "cur", f"1795000000.{n}.bench:2,"), "wb") as f:
            f.write(data)
        queue.put_nowait(data)
    host, port = args.smtp.rsplit(":", 1)
    await asyncio.gather(*[sender(host, int(port), queue, args.rcpt) for _ in range(20)])


asyncio.run(main())
