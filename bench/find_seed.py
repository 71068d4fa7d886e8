#!/usr/bin/env python3
"""Writes the find-and-act benchmark's store twice from one seeded generator: one mbox
per user (imported into Lazaret) and one Maildir per user (for Dovecot), the same bytes.

USERS mailboxes x PER_USER clean messages (mixed sizes: text of 3-60 lines, a tenth
with an attachment of 2-20 KB), plus WORMS copies of a worm spread over the users: a new
subject and sender on every copy, the same zip attachment, the same lure text. Prints
one JSON line with the values the benchmark searches for."""

import argparse
import base64
import hashlib
import io
import json
import os
import random
import zipfile

WORDS = None


def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def attachment(rng, name, data):
    b64 = base64.encodebytes(data).decode()
    return (
        f"--b\nContent-Type: application/octet-stream; name=\"{name}\"\n"
        f"Content-Disposition: attachment; filename=\"{name}\"\n"
        f"Content-Transfer-Encoding: base64\n\n{b64}"
    )


def message(rng, sender, to, subject, body, att=None, n=0):
    head = (
        f"From: {sender}\nTo: {to}\nSubject: {subject}\n"
        f"Date: Mon, 2 Nov 2026 {n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d} +0000\n"
        f"Message-ID: <{rng.getrandbits(64):x}@bench.test>\nMIME-Version: 1.0\n"
    )
    if att is None:
        return head + "Content-Type: text/plain; charset=utf-8\n\n" + body + "\n"
    return (
        head
        + "Content-Type: multipart/mixed; boundary=\"b\"\n\n"
        + "--b\nContent-Type: text/plain; charset=utf-8\n\n"
        + body
        + "\n"
        + att
        + "--b--\n"
    )


def main():
    global WORDS
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--per-user", type=int, default=1000)
    p.add_argument("--worms", type=int, default=50000)
    p.add_argument("--out")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--send-worms", metavar="HOST:PORT", help="instead: send WORMS worm copies over SMTP")
    p.add_argument("--rcpt", default="victim@localhost")
    a = p.parse_args()
    rng = random.Random(a.seed)
    syll = ["ka", "lo", "mi", "ne", "to", "ra", "su", "vi", "de", "po", "an", "el", "or", "us", "in", "et"]
    WORDS = sorted({"".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(6000)})
    lines = [words(rng, rng.randint(6, 14)) for _ in range(50000)]
    senders = [f"{words(rng, 1)}{i}@{rng.choice(['example.org', 'partner.test', 'corp.test', 'mail.test'])}" for i in range(5000)]
    boss = "ceo@example.org"

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("invoice_2026.pdf.exe", bytes(rng.getrandbits(8) for _ in range(24000)))
    worm_zip = buf.getvalue()
    lure = "Please open the attached invoice today, it expires soon"

    def worm(rng, to, n):
        sender = f"{words(rng, 1)}{rng.randrange(10**6)}@{rng.choice(['infected.test', 'botnet.test', 'example.org'])}"
        subject = rng.choice(["Re: ", "Fwd: ", "", "URGENT "]) + words(rng, rng.randint(2, 5)).capitalize()
        body = f"Hello,\n{lure}.\n{words(rng, 8)}\n"
        att = attachment(rng, f"document_{rng.randrange(10**5)}.zip", worm_zip)
        return sender, message(rng, sender, to, subject, body, att, n)

    if a.send_worms:
        import smtplib
        host, port = a.send_worms.rsplit(":", 1)
        with smtplib.SMTP(host, int(port), timeout=120) as smtp:
            for i in range(a.worms):
                sender, m = worm(rng, a.rcpt, i)
                smtp.sendmail(sender, [a.rcpt], m.replace("\n", "\r\n").encode())
        return

    worm_slots = {}
    for _ in range(a.worms):
        u = rng.randrange(a.users)
        worm_slots[u] = worm_slots.get(u, 0) + 1

    os.makedirs(f"{a.out}/mbox", exist_ok=True)
    n = 0
    bytes_total = 0
    for u in range(a.users):
        user = f"user{u}"
        md = f"{a.out}/maildir/{user}/Maildir"
        for d in ("cur", "new", "tmp"):
            os.makedirs(f"{md}/{d}", exist_ok=True)
        to = f"{user}@localhost"
        batch = []
        for i in range(a.per_user):
            n += 1
            sender = boss if rng.random() < 0.001 else rng.choice(senders)
            subject = words(rng, rng.randint(2, 7)).capitalize()
            if rng.random() < 0.001:
                subject = f"Quarterly figures {subject}"
            body = "\n".join(rng.choices(lines, k=rng.randint(3, 60)))
            att = None
            if rng.random() < 0.1:
                size = rng.randint(2000, 20000)
                att = attachment(rng, f"{words(rng, 1)}.pdf", rng.randbytes(size))
            batch.append(message(rng, sender, to, subject, body, att, n))
        for w in range(worm_slots.get(u, 0)):
            n += 1
            batch.append(worm(rng, to, n)[1])
        rng.shuffle(batch)
        with open(f"{a.out}/mbox/{user}.mbox", "w") as f:
            for i, m in enumerate(batch):
                f.write("From bench@bench.test Mon Nov  2 10:00:00 2026\n")
                f.write(m.replace("\nFrom ", "\n>From "))
                f.write("\n")
                with open(f"{md}/cur/{1762077600 + i}.M{i}P1.bench:2,S", "w") as mf:
                    mf.write(m)
                bytes_total += len(m)
    print(json.dumps({
        "messages": n,
        "bytes": bytes_total,
        "worm_sha256": hashlib.sha256(worm_zip).hexdigest(),
        "worm_size": len(worm_zip),
        "lure": "open the attached invoice today",
        "subject": "quarterly figures",
        "sender": boss,
        "users": a.users,
    }))


if __name__ == "__main__":
    main()
