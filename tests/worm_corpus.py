"""A synthetic mail corpus for the outbreak-clustering tests and benchmark, generated
from a fixed seed: clean mail (personal messages and templated newsletters) and worm
families that change subject and sender on every copy, change 5-20% of the body's
words, and re-zip their payload with the members in another order (family 0) or
carry only a link (every third family, from family 2).

    corpus = Corpus(seed=7)
    for kind, family, raw in corpus.clean(1000): ...      # kind: personal | newsletter
    for kind, family, raw in corpus.worms(3, 50): ...     # kind: worm, family: 0..2

Words come from a pseudo-language (syllables), drawn with a Zipf distribution as in
real text, so that unrelated messages share common words the way real ones do.
"""

import io
import random
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
SUBJECT_WORDS = [
    "invoice", "order", "meeting", "report", "update", "question", "photos", "notes",
    "schedule", "delivery", "payment", "document", "project", "lunch", "review", "budget",
]


class Corpus:
    def __init__(self, seed=7, vocabulary=30_000, users=200):
        self.rng = random.Random(seed)
        rng = self.rng
        words = set()
        while len(words) < vocabulary:
            words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
        self.words = sorted(words, key=lambda w: (len(w), w))  # short words are the common ones
        weights = [1 / (rank + 1) ** 1.07 for rank in range(len(self.words))]
        total, self.cum = 0.0, []
        for w in weights:
            total += w
            self.cum.append(total)
        self.users = [f"{self.word()}.{self.word()}@corp.test" for _ in range(users)]
        self.when = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
        self.newsletters = [self._newsletter_template(n) for n in range(40)]
        self.serial = 0

    def word(self):
        return self.rng.choices(self.words, cum_weights=self.cum)[0]

    def text(self, n):
        return [self.word() for _ in range(n)]

    @staticmethod
    def paragraphs(words):
        lines, line = [], []
        for w in words:
            line.append(w)
            if len(line) >= 12:
                lines.append(" ".join(line))
                line = []
        if line:
            lines.append(" ".join(line))
        return "\n".join(lines) + "\n"

    def _message(self, sender, to, subject, body, attachment=None):
        self.serial += 1
        self.when += timedelta(seconds=self.rng.randint(1, 30))
        m = EmailMessage()
        m["From"] = sender
        m["To"] = to
        m["Subject"] = subject
        m["Date"] = format_datetime(self.when)
        m["Message-ID"] = f"<{self.serial}.{self.rng.getrandbits(48):x}@corpus.test>"
        m.set_content(body)
        if attachment:
            name, data = attachment
            m.add_attachment(data, maintype="application", subtype="zip", filename=name)
        return m.as_bytes()

    # ------------------------------------------------------------------ clean mail
    def _newsletter_template(self, n):
        rng = self.rng
        return {
            "sender": f"news@{self.word()}{n}.example",
            "title": " ".join(self.text(3)),
            "blocks": [self.text(rng.randint(30, 60)) for _ in range(rng.randint(3, 6))],
        }

    def newsletter(self, n=None):
        rng = self.rng
        t = self.newsletters[rng.randrange(len(self.newsletters)) if n is None else n]
        to = rng.choice(self.users)
        body = [f"Dear {to.split('.')[0]},", ""]
        for block in t["blocks"]:
            body.append(self.paragraphs(block))
            body.append(
                f"Read more: https://{t['sender'].split('@')[1]}/r/{rng.getrandbits(64):x}?u={rng.randint(1, 10**6)}"
            )
        body.append(f"Offer valid until {rng.randint(1, 28)}.12.2026, code {rng.getrandbits(32):08X}.")
        body.append(f"Unsubscribe: https://{t['sender'].split('@')[1]}/u/{rng.getrandbits(64):x}")
        subject = f"{t['title']} - issue {rng.randint(1, 300)}"
        return self._message(t["sender"], to, subject, "\n".join(body))

    def personal(self):
        rng = self.rng
        sender, to = rng.sample(self.users, 2)
        body = self.paragraphs(self.text(rng.randint(20, 250)))
        if rng.random() < 0.3:
            quoted = self.paragraphs(self.text(rng.randint(20, 120)))
            body += "\nOn Monday someone wrote:\n" + "".join("> " + l + "\n" for l in quoted.splitlines())
        if rng.random() < 0.5:
            body += f"\n-- \n{sender.split('@')[0]}\n+1 555 {rng.randint(1000000, 9999999)}\n"
        attachment = None
        if rng.random() < 0.05:
            attachment = (f"{self.word()}.zip", zip_of([(f"{self.word()}.txt", rng.randbytes(2000))]))
        subject = " ".join(self.text(rng.randint(2, 6)))
        if rng.random() < 0.3:
            subject = "Re: " + subject
        return self._message(sender, to, subject, body, attachment)

    def clean(self, n, newsletter_share=0.2):
        for _ in range(n):
            if self.rng.random() < newsletter_share:
                yield "newsletter", None, self.newsletter()
            else:
                yield "personal", None, self.personal()

    # ------------------------------------------------------------------ worms
    def family(self, f):
        """A worm family's fixed parts: body template and payload files."""
        rng = random.Random(f"worm-{f}")
        saved, self.rng = self.rng, rng
        try:
            template = self.text(rng.randint(80, 200))
        finally:
            self.rng = saved
        members = [(f"invoice{f}.exe", rng.randbytes(4000 + 500 * f)), (f"readme{f}.txt", rng.randbytes(300))]
        # Every third family carries no attachment, only a link: only its text is
        # left to recognise it by.
        link = f"https://{rng.choice(SUBJECT_WORDS)}{f}.example/login" if f % 3 == 2 else None
        return {"template": template, "members": members, "rezip": f == 0, "link": link}

    def worm_copy(self, fam):
        rng = self.rng
        words = list(fam["template"])
        share = rng.uniform(0.05, 0.20)
        for i in rng.sample(range(len(words)), max(1, round(share * len(words)))):
            words[i] = self.word()
        attachment = None
        if fam["link"]:
            words.insert(rng.randrange(len(words)), f"{fam['link']}?id={rng.getrandbits(40):x}")
        else:
            members = list(fam["members"])
            if fam["rezip"]:
                rng.shuffle(members)
            payload = zip_of(members, comment=rng.randbytes(8) if fam["rezip"] else b"")
            attachment = (f"{rng.choice(SUBJECT_WORDS)}_{rng.randint(1, 9999)}.zip", payload)
        sender = f"{self.word()}{rng.randint(1, 999)}@{self.word()}.example"
        subject = rng.choice(
            [
                f"{rng.choice(SUBJECT_WORDS)} {rng.randint(1000, 99999)}",
                f"Re: {' '.join(self.text(rng.randint(1, 4)))}",
                f"{rng.choice(SUBJECT_WORDS).title()} for {rng.choice(self.users).split('@')[0]}",
            ]
        )
        return self._message(sender, rng.choice(self.users), subject, self.paragraphs(words), attachment)

    def worms(self, families, copies):
        fams = [self.family(f) for f in range(families)]
        order = [f for f in range(families) for _ in range(copies)]
        self.rng.shuffle(order)
        for f in order:
            yield "worm", f, self.worm_copy(fams[f])


def zip_of(members, comment=b""):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 30, 8, 0, 0))
            z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
        z.comment = comment
    return buf.getvalue()
