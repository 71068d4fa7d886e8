#!/usr/bin/env python3
"""SMTP load client for the ingest benchmark: N concurrent sessions send M messages
of a given size and report accepted messages/s and the latency from the end of DATA
to the 250 reply (p50/p99). The same client drives every server under test, so the
figures compare like with like.

usage: smtp_load.py HOST:PORT --sessions 50 --messages 5000 --size 10240 --to a@x,b@x [--rate R]
       [--rcpts-per-message K] [--from ADDR] [--auth USER:PASSWORD] [--header-file F]
       [--trace FILE]

Without --rate every session sends as fast as the server answers (closed loop: the
figure is the server's top rate). With --rate the messages are paced at R per second
over all sessions (open loop), so two servers' latencies compare at the same load.
With --trace every accepted message's 250 is written to FILE as a line "UNIX_TIME
LATENCY_MS", to line slow replies up with what the server was doing at the time.
"""

import argparse
import asyncio
import base64
import json
import time


async def reply(reader):
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def session(host, port, queue, recipients, body, latencies, failures, pace, opts):
    reader, writer = await asyncio.open_connection(host, port)
    await reply(reader)
    writer.write(b"EHLO bench.test\r\n")
    await reply(reader)
    if opts.auth:
        user, password = opts.auth.split(":", 1)
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        writer.write(f"AUTH PLAIN {token}\r\n".encode())
        if await reply(reader) != 235:
            raise RuntimeError("AUTH refused")
    while True:
        try:
            n = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        if pace:
            delay = pace(n) - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        k = opts.rcpts_per_message
        rcpts = [recipients[(n * k + i) % len(recipients)] for i in range(k)]
        command = f"MAIL FROM:<{opts.sender}>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts)
        writer.write((command + "DATA\r\n").encode())
        codes = [await reply(reader) for _ in range(k + 2)]
        if codes != [250] * (k + 1) + [354]:
            failures.append(codes)
            writer.write(b"RSET\r\n")
            await reply(reader)
            continue
        writer.write(body.replace(b"@N@", str(n).encode()))
        start = time.perf_counter()
        writer.write(b".\r\n")
        code = await reply(reader)
        if code == 250:
            latencies.append(time.perf_counter() - start)
            if opts.trace_to is not None:
                opts.trace_to.append((time.time(), latencies[-1]))
        else:
            failures.append([code])
    writer.write(b"QUIT\r\n")
    await reply(reader)
    writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--to", required=True, help="comma-separated recipients, used in turn")
    ap.add_argument("--rate", type=float, default=0, help="messages/s over all sessions (0: as fast as possible)")
    ap.add_argument("--rcpts-per-message", type=int, default=1)
    ap.add_argument("--from", dest="sender", default="load@far.test")
    ap.add_argument("--auth", help="USER:PASSWORD for AUTH PLAIN (submission ports)")
    ap.add_argument("--header-file", help="header fields put above every message (a DKIM-Signature made for it)")
    ap.add_argument("--trace", help="write each 250's time and latency to this file")
    args = ap.parse_args()
    args.trace_to = [] if args.trace else None
    host, port = args.target.rsplit(":", 1)
    head = b"From: load@far.test\r\nTo: user@bench\r\nSubject: load test @N@\r\n\r\n"
    if args.header_file:
        with open(args.header_file, "rb") as f:
            head = f.read() + head
    line = b"x" * 76 + b"\r\n"
    body = head + line * max(1, (args.size - len(head)) // len(line))
    queue = asyncio.Queue()
    for n in range(args.messages):
        queue.put_nowait(n)
    latencies, failures = [], []
    t0 = time.perf_counter()
    pace = (lambda n: t0 + n / args.rate) if args.rate else None
    await asyncio.gather(
        *[
            session(host, int(port), queue, args.to.split(","), body, latencies, failures, pace, args)
            for _ in range(args.sessions)
        ]
    )
    elapsed = time.perf_counter() - t0
    if args.trace:
        with open(args.trace, "w") as out:
            out.writelines(f"{at:.6f} {took * 1000:.3f}\n" for at, took in args.trace_to)
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0
    print(
        json.dumps(
            {
                "accepted": len(latencies),
                "failed": len(failures),
                "seconds": round(elapsed, 3),
                "msgs_per_sec": round(len(latencies) / elapsed, 1),
                "p50_ms": round(pct(0.50), 2),
                "p99_ms": round(pct(0.99), 2),
            }
        )
    )


asyncio.run(main())
