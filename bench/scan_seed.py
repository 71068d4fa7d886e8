#!/usr/bin/env python3
"""Writes the scan benchmark's signature set and corpus.

Signatures (ClamAV formats, loadable by clamscan, clamd and lazaret): HASHES random MD5
hash signatures plus one per planted file; BODIES body patterns with wildcards (`??`,
`{n-m}`, `*`) of which a few are planted. Corpus: MB megabytes of mixed files — random
binaries, text, zip archives, .eml messages with base64 attachments, and one fifth in
the containers and encodings mail carries (bzip2, xz, cpio, TNEF, uuencoded and HTML
`data:` text, PDF with embedded files, RTF with package objects) — a few per hundred
carrying a planted pattern or a hashed file (listed in planted.txt). Each kind is a
directory of its own (`corpus/KIND/`) so that throughput can be told per format. Prints one JSON line of
facts."""

import argparse
import base64
import binascii
import bz2
import hashlib
import io
import json
import lzma
import os
import random
import struct
import zipfile
import zlib

CONTAINERS = ["bz2", "xz", "cpio", "tnef", "uu", "html", "pdf", "rtf"]


def cpio_newc(files):
    out = b""
    for name, data, mode in [(n, d, 0o100644) for n, d in files] + [("TRAILER!!!", b"", 0)]:
        nb = name.encode() + b"\0"
        fields = [1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0]
        out += b"070701" + b"".join(b"%08x" % v for v in fields) + nb
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return out


def tnef(files):
    def attr(level, ident, value):
        return struct.pack("<BII", level, ident, len(value)) + value + struct.pack("<H", sum(value) & 0xFFFF)
    out = struct.pack("<IH", 0x223E9F78, 1) + attr(1, 0x00089006, b"\1\0\0\0")
    for name, data in files:
        out += attr(2, 0x00069002, b"\0" * 14) + attr(2, 0x00018010, name.encode() + b"\0") + attr(2, 0x0006800F, data)
    return out


def uuencoded(name, data):
    lines = [f"begin 644 {name}\n".encode()]
    lines += [binascii.b2a_uu(data[i:i + 45]) for i in range(0, len(data), 45)]
    return b"".join(lines) + b"`\nend\n"


def package(name, data):
    """An OLE1 object of class Package, as RTF's \\objdata holds it."""
    native = b"\2\0" + name.encode() + b"\0" + f"C:\\t\\{name}".encode() + b"\0" + b"\0\0\3\0"
    temp = f"C:\\tmp\\{name}".encode() + b"\0"
    native += struct.pack("<I", len(temp)) + temp + struct.pack("<I", len(data)) + data
    obj = struct.pack("<II", 0x0501, 2)
    for s in [b"Package\0", b"", b""]:
        obj += struct.pack("<I", len(s)) + s
    return obj + struct.pack("<I", len(native)) + native


def container(kind, payload, text, rng):
    """One file of a container kind around `payload` (or random bytes) and some text."""
    inner = payload or rng.randbytes(rng.randint(20_000, 500_000))
    if kind == "bz2":
        return bz2.compress(text + inner, 6)
    if kind == "xz":
        return lzma.compress(text + inner)
    if kind == "cpio":
        return cpio_newc([("doc.txt", text), ("dir/data.bin", inner)])
    if kind == "tnef":
        return tnef([("notes.txt", text), ("data.bin", inner)])
    if kind == "uu":
        return text + b"\n\n" + uuencoded("data.bin", inner) + b"\nregards\n"
    if kind == "html":
        return (b"<html><body><p>" + text + b"</p><a href=\"data:application/octet-stream;base64,"
                + base64.b64encode(inner) + b"\">download</a></body></html>\n")
    if kind == "pdf":
        content = zlib.compress(b"BT /F1 12 Tf (" + text[:2000] + b") Tj ET")
        embedded = zlib.compress(inner)
        return (b"%PDF-1.4\n1 0 obj\n<< /Filter /FlateDecode /Length " + str(len(content)).encode()
                + b" >>\nstream\n" + content + b"\nendstream\nendobj\n2 0 obj\n<< /Type /EmbeddedFile "
                b"/Filter /FlateDecode /Length " + str(len(embedded)).encode() + b" >>\nstream\n" + embedded
                + b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")
    if kind == "rtf":
        hexed = package("data.bin", inner).hex().encode()
        lines = b"\r\n".join(hexed[i:i + 128] for i in range(0, len(hexed), 128))
        return (b"{\\rtf1\\ansi " + text[:5000] + b"\\par {\\object\\objemb{\\*\\objclass Package}"
                b"{\\*\\objdata " + lines + b"\r\n}}}\n")
    raise ValueError(kind)


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
    planted_paths = []
    target = a.mb << 20
    while total < target:
        kind = rng.random()
        infected = rng.random() < 0.02
        payload = None
        sub = None
        if infected:
            planted += 1
            payload = rng.choice(planted_hash) if rng.random() < 0.5 else rng.randbytes(3000) + rng.choice(planted_body) + rng.randbytes(3000)
        if kind >= 0.8:
            ckind = CONTAINERS[n % len(CONTAINERS)]
            text = " ".join(rng.choices(words, k=rng.randint(200, 5000))).encode()
            data = container(ckind, payload, text, rng)
            name, sub = f"f{n}.{ckind}", ckind
        elif kind < 0.3:
            data = payload or rng.randbytes(rng.randint(10_000, 500_000))
            name = f"f{n}.bin"
        elif kind < 0.5:
            text = " ".join(rng.choices(words, k=rng.randint(2000, 40000))).encode()
            data = text if payload is None else text + payload
            name = f"f{n}.txt"
        elif kind < 0.65:
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
        sub = sub or name.rsplit(".", 1)[1]
        d = f"{corpus}/{sub}/d{n % 20}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/{name}", "wb") as f:
            f.write(data)
        if infected:
            planted_paths.append(f"{d}/{name}")
        total += len(data)
        n += 1
    # What a scanner may find: a file that is not here is a false positive.
    with open(f"{a.out}/planted.txt", "w") as f:
        f.write("\n".join(planted_paths) + "\n")
    print(json.dumps({"files": n, "bytes": total, "planted": planted,
                      "hash_signatures": a.hashes + len(planted_hash), "body_signatures": a.bodies}))


if __name__ == "__main__":
    main()
