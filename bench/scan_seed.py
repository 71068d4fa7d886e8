#!/usr/bin/env python3
"""Writes the scan benchmark's signature set and corpus.

Signatures (ClamAV formats, loadable by clamscan, clamd and lazaret): HASHES random MD5
hash signatures plus one per planted file; BODIES body patterns with wildcards (`??`,
`{n-m}`, `*`) of which a few are planted. Corpus: MB megabytes of mixed files — random
binaries, text, zip archives, and .eml messages with base64 attachments — a few per
hundred carrying a planted pattern or a hashed file. Prints one JSON line of facts."""

import argparse
import base64
import hashlib
import io
import json
import os
import random
import zipfile


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--mb", type=int, default=1000)
    p.add_argument("--hashes", type=int, default=100000)
    p.add_argument("--bodies", type=int, default=5000)
    a = p.parse_args()
    rng = random.Random(5)
    sigs, corpus = f"{a.out}/sigs", f"{a.out}/corpus"
    os.makedirs(sigs, exist_ok=True)
    os.makedirs(corpus, exist_ok=True)

    planted_hash = [rng.randbytes(rng.randint(2000, 50000)) for _ in range(20)]
    bodies = []
    planted_body = []
    for i in range(a.bodies):
        head, mid, tail = rng.randbytes(8), rng.randbytes(6), rng.randbytes(6)
        gap = rng.randint(0, 20)
        bodies.append(f"Bench.Body.{i}:0:*:{head.hex()}??{mid.hex()}{{0-{gap + 10}}}{tail.hex()}")
        if i < 20:
            planted_body.append(head + b"\x00" + mid + rng.randbytes(gap) + tail)
    with open(f"{sigs}/bench.ndb", "w") as f:
        f.write("\n".join(bodies) + "\n")
    with open(f"{sigs}/bench.hdb", "w") as f:
        for i in range(a.hashes):
            f.write(f"{rng.randbytes(16).hex()}:{rng.randint(100, 10**6)}:Bench.Hash.{i}\n")
        for i, data in enumerate(planted_hash):
            f.write(f"{hashlib.md5(data).hexdigest()}:{len(data)}:Bench.Planted.{i}\n")

    words = [("".join(rng.choice("etaoinshrdlu") for _ in range(rng.randint(2, 9)))) for _ in range(3000)]
    total, n, planted = 0, 0, 0
    target = a.mb << 20
    while total < target:
        kind = rng.random()
        infected = rng.random() < 0.02
        payload = None
        if infected:
            planted += 1
            payload = rng.choice(planted_hash) if rng.random() < 0.5 else rng.randbytes(3000) + rng.choice(planted_body) + rng.randbytes(3000)
        if kind < 0.35:
            data = payload or rng.randbytes(rng.randint(10_000, 500_000))
            name = f"f{n}.bin"
        elif kind < 0.6:
            text = " ".join(rng.choices(words, k=rng.randint(2000, 40000))).encode()
            data = text if payload is None else text + payload
            name = f"f{n}.txt"
        elif kind < 0.8:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                for j in range(rng.randint(1, 5)):
                    z.writestr(f"doc{j}.txt", " ".join(rng.choices(words, k=rng.randint(500, 20000))))
                z.writestr("data.bin", payload or rng.randbytes(rng.randint(1000, 100_000)))
            data = buf.getvalue()
            name = f"f{n}.zip"
        else:
            att = payload or rng.randbytes(rng.randint(5000, 300_000))
            body = " ".join(rng.choices(words, k=rng.randint(50, 500)))
            b64 = base64.encodebytes(att).decode()
            data = (
                f"From: a{n}@example.org\nTo: b@example.test\nSubject: m{n}\nMIME-Version: 1.0\n"
                f"Content-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\n{body}\n"
                f"--zz\nContent-Type: application/octet-stream; name=a.bin\n"
                f"Content-Disposition: attachment; filename=a.bin\nContent-Transfer-Encoding: base64\n\n{b64}--zz--\n"
            ).encode()
            name = f"f{n}.eml"
        d = f"{corpus}/d{n % 50}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/{name}", "wb") as f:
            f.write(data)
        total += len(data)
        n += 1
    print(json.dumps({"files": n, "bytes": total, "planted": planted,
                      "hash_signatures": a.hashes + len(planted_hash), "body_signatures": a.bodies}))


if __name__ == "__main__":
    main()
