#!/usr/bin/env python3
"""Outbreak clusters benchmark, driven by bench/clusters.sh: sends a synthetic corpus
(tests/worm_corpus.py, fixed seed) of clean mail and worm families over SMTP to a
running Lazaret, then asks `clusters` what it saw and scores it against the truth.

    clusters.py generate CORPUS --clean N --families F --copies C [--seed S] [--jobs J]
    clusters.py send HOST:PORT CORPUS OUT.json [--sessions N]
    clusters.py score LAZARET CONFIG CORPUS SENT.json
    clusters.py held LAZARET CONFIG CORPUS SENT.json

`send` prints the accepted rate and p50 end-of-DATA->250; `score` prints pairwise
precision and recall of the worm families, clean messages in worm clusters, clusters
among clean mail, and how long `lazaret clusters` took to answer.
"""

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from collections import Counter, defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


# The corpus on disk: CORPUS holds one record per message, in sending order (4-byte
# big-endian length, then sender NUL recipient NUL message, the message already in
# CRLF lines and dot-stuffed, so that sending costs Python nothing per message);
# CORPUS.meta.json holds the users and each message's kind and family (the truth).


def _wire(raw):
    from email.parser import BytesHeaderParser
    from email.utils import parseaddr

    h = BytesHeaderParser().parsebytes(raw)
    body = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    body = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in body.split(b"\r\n"))
    return parseaddr(h["From"])[1].encode() + b"\0" + parseaddr(h["To"])[1].encode() + b"\0" + body


def _clean_chunk(job):
    """Clean mail of one chunk into its own file: (kind, family) of each message."""
    from worm_corpus import Corpus

    seed, users, index, start, count, path = job
    corpus = Corpus(seed=seed, users=users)
    if index:
        # Chunks after the first draw from their own stream; the first is the
        # single-process corpus, so that one job reproduces earlier runs exactly.
        corpus.rng.seed(seed * 7919 + index)
    corpus.serial = start
    truth = []
    with open(path, "wb") as f:
        for kind, family, raw in corpus.clean(count):
            record = _wire(raw)
            f.write(struct.pack(">I", len(record)) + record)
            truth.append((kind, family))
    return truth, corpus


def _records(path):
    with open(path, "rb") as f:
        while head := f.read(4):
            yield f.read(struct.unpack(">I", head)[0])


def generate(args):
    from multiprocessing import Pool

    jobs = max(1, args.jobs)
    bounds = [args.clean * i // jobs for i in range(jobs + 1)]
    chunks = [
        (args.seed, args.users, i, bounds[i], bounds[i + 1] - bounds[i], f"{args.corpus}.part{i}")
        for i in range(jobs)
    ]
    if jobs == 1:
        results = [_clean_chunk(chunks[0])]
    else:
        with Pool(jobs) as pool:
            results = pool.map(_clean_chunk, chunks)
    corpus = results[0][1]
    if jobs > 1:
        corpus.rng.seed(args.seed * 7919 + jobs)
        corpus.serial = args.clean
    worms = [(kind, family, _wire(raw)) for kind, family, raw in corpus.worms(args.families, args.copies)]
    clean_truth = [t for truth, _ in results for t in truth]

    def clean_records():
        for i in range(jobs):
            yield from _records(chunks[i][5])

    # The outbreak starts once a third of the clean mail is in, and mixes with the rest.
    split = len(clean_truth) // 3
    step = max(1, (len(clean_truth) - split) // max(1, len(worms)))
    kinds, families, wi = [], [], 0
    with open(args.corpus, "wb") as out:

        def put(kind, family, record):
            out.write(struct.pack(">I", len(record)) + record)
            kinds.append(kind)
            families.append(family)

        for i, record in enumerate(clean_records()):
            put(*clean_truth[i], record)
            if i >= split and (i - split) % step == 0 and wi < len(worms):
                put(*worms[wi])
                wi += 1
        for worm in worms[wi:]:
            put(*worm)
    for c in chunks:
        os.remove(c[5])
    with open(f"{args.corpus}.meta.json", "w") as f:
        json.dump({"users": corpus.users, "kinds": kinds, "families": families}, f)
    print(f"{len(kinds)} messages: {len(clean_truth)} clean, {len(worms)} worm copies in {args.families} families")


def load_truth(corpus):
    with open(f"{corpus}.meta.json") as f:
        return json.load(f)


async def session(host, port, queue, results, latencies):
    reader, writer = await asyncio.open_connection(host, port)

    async def reply():
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"EHLO bench.test\r\n")
    await reply()
    while True:
        item = await queue.get()
        if item is None:
            break
        n, record = item
        sender, rcpt, body = record.split(b"\0", 2)
        writer.write(b"MAIL FROM:<" + sender + b">\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n")
        for _ in range(3):
            await reply()
        t = time.perf_counter()
        writer.write(body + b".\r\n")
        line = await reply()
        latencies.append(time.perf_counter() - t)
        if line.startswith(b"250"):
            results[n] = line.decode().strip().rsplit(" ", 1)[-1]
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


async def send_all(args):
    # Read as the sessions send: a million messages do not fit in memory at once.
    queue = asyncio.Queue(maxsize=10_000)

    async def feed():
        for n, record in enumerate(_records(args.corpus)):
            await queue.put((n, record))
        for _ in range(args.sessions):
            await queue.put(None)

    host, port = args.target.rsplit(":", 1)
    results, latencies = {}, []
    t0 = time.perf_counter()
    await asyncio.gather(feed(), *[session(host, int(port), queue, results, latencies) for _ in range(args.sessions)])
    elapsed = time.perf_counter() - t0
    latencies.sort()
    out = {
        "accepted": len(results),
        "msgs_per_sec": round(len(results) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "queued_as": results,
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(json.dumps({k: v for k, v in out.items() if k != "queued_as"}))


def cli(lazaret, config, *args):
    r = subprocess.run([lazaret, "-c", config, *args], capture_output=True, text=True, check=True)
    return r.stdout


def score(args):
    meta = load_truth(args.corpus)
    with open(args.sent) as f:
        sent = json.load(f)["queued_as"]
    truth = {qid: meta["families"][int(n)] for n, qid in sent.items()}  # queued-as -> family or None
    kinds = {qid: meta["kinds"][int(n)] for n, qid in sent.items()}
    timings = []
    for _ in range(3):
        t = time.perf_counter()
        clusters = json.loads(cli(args.lazaret, args.config, "clusters", "--json", "--min", "2", "--limit", "1000"))
        timings.append(time.perf_counter() - t)
    members = {}
    for c in clusters:
        found = json.loads(
            cli(args.lazaret, args.config, "find", "--cluster", str(c["id"]), "--in", "all", "--limit", "0", "--json")
        )
        members[c["id"]] = {m["message"] for m in found}
    family_sizes = Counter(f for f in truth.values() if f is not None)
    pairs = lambda n: n * (n - 1) // 2
    true_pairs = sum(pairs(n) for n in family_sizes.values())
    same_cluster_worm_pairs = 0
    tp = 0
    clean_in_worm_clusters = 0
    clean_clusters = 0
    per_family = defaultdict(list)
    for cid, ids in members.items():
        fams = Counter(truth.get(i) for i in ids)
        worm_ids = sum(n for f, n in fams.items() if f is not None)
        if worm_ids == 0:
            clean_clusters += 1
            continue
        clean = fams.get(None, 0)
        clean_in_worm_clusters += clean
        # Pairs with at least one worm copy in them.
        same_cluster_worm_pairs += pairs(len(ids)) - pairs(clean)
        for f, n in fams.items():
            if f is not None:
                tp += pairs(n)
                per_family[f].append(n)
    precision = tp / same_cluster_worm_pairs if same_cluster_worm_pairs else 0.0
    recall = tp / true_pairs if true_pairs else 0.0
    biggest_share = sorted(max(per_family[f], default=0) / family_sizes[f] for f in family_sizes)
    print(
        json.dumps(
            {
                "messages": len(truth),
                "clean": sum(1 for k in kinds.values() if k != "worm"),
                "worm_copies": sum(family_sizes.values()),
                "families": len(family_sizes),
                "clusters_listed": len(clusters),
                "precision": round(precision, 4),
                "recall": round(recall, 4),
                "clean_in_worm_clusters": clean_in_worm_clusters,
                "clean_clusters": clean_clusters,
                "families_found": sum(1 for f in family_sizes if per_family[f]),
                "worst_family_share_in_one_cluster": round(biggest_share[0], 3) if biggest_share else 0,
                "clusters_seconds": round(sorted(timings)[1], 4),
            }
        )
    )


def held(args):
    """What `[outbreak] hold_growth` froze in inbound, against the truth."""
    meta = load_truth(args.corpus)
    with open(args.sent) as f:
        sent = json.load(f)["queued_as"]
    truth = {qid: meta["families"][int(n)] for n, qid in sent.items()}
    frozen = json.loads(
        cli(args.lazaret, args.config, "find", "--in", "queues", "--state", "frozen", "--limit", "0", "--json")
    )
    fams = Counter(truth.get(m["message"]) for m in frozen)
    worms = sum(1 for f in truth.values() if f is not None)
    print(
        json.dumps(
            {
                "held": len(frozen),
                "worm_copies_held": sum(n for f, n in fams.items() if f is not None),
                "worm_copies": worms,
                "clean_held": fams.get(None, 0),
                "families_held": sum(1 for f in fams if f is not None),
                "families": len({f for f in truth.values() if f is not None}),
            }
        )
    )


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("corpus")
    g.add_argument("--clean", type=int, default=100_000)
    g.add_argument("--families", type=int, default=20)
    g.add_argument("--copies", type=int, default=500)
    g.add_argument("--users", type=int, default=200)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--jobs", type=int, default=1, help="processes generating clean mail (>1: another corpus)")
    s = sub.add_parser("send")
    s.add_argument("target")
    s.add_argument("corpus")
    s.add_argument("out")
    s.add_argument("--sessions", type=int, default=20)
    c = sub.add_parser("score")
    c.add_argument("lazaret")
    c.add_argument("config")
    c.add_argument("corpus")
    c.add_argument("sent")
    h = sub.add_parser("held")
    h.add_argument("lazaret")
    h.add_argument("config")
    h.add_argument("corpus")
    h.add_argument("sent")
    args = ap.parse_args()
    if args.command == "generate":
        generate(args)
    elif args.command == "send":
        asyncio.run(send_all(args))
    elif args.command == "held":
        held(args)
    else:
        score(args)


if __name__ == "__main__":
    main()
