"""Workload: few in-scope calls into standard-library code that works hard.

Each round builds a multipart e-mail, parses it back with ``email``, round-trips
a JSON document, diffs two texts with ``difflib``, wraps a paragraph with
``textwrap`` and does exact ``decimal``/``fractions`` arithmetic. The library
internals (out of scope) do nearly all the work. ``python library_heavy.py
[ROUNDS]`` (default 130) prints a checksum line.
"""

from __future__ import annotations

import difflib
import json
import sys
import textwrap
from decimal import Decimal, getcontext
from email import message_from_string, policy
from email.message import EmailMessage
from fractions import Fraction

WORDS = (
    "trace span call frame scope thread module library parser header payload "
    "encoding charset boundary record event buffer export metric latency"
).split()


def sentence(seed: int, length: int) -> str:
    """A deterministic pseudo-text of ``length`` words."""
    return " ".join([WORDS[(seed * 7 + i * 13 + i * i) % len(WORDS)] for i in range(length)])


def build_mail(seed: int) -> str:
    """A multipart message with a text body and a JSON attachment, as a string."""
    msg = EmailMessage()
    msg["From"] = f"sender{seed}@example.com"
    msg["To"] = ", ".join([f"User {seed + i} <user{seed + i}@example.org>" for i in range(4)])
    msg["Cc"] = f"team{seed}@example.net, Ops <ops@example.net>"
    msg["Subject"] = sentence(seed, 8)
    msg["Message-ID"] = f"<{seed}.benchmark@example.com>"
    msg.set_content(sentence(seed, 240))
    for part in range(3):
        payload = {"seed": seed, "part": part, "rows": [[seed, i, i * i] for i in range(40)]}
        msg.add_attachment(
            json.dumps(payload).encode(),
            maintype="application",
            subtype="json",
            filename=f"data-{part}.json",
        )
    return msg.as_string()


def parse_mail(text: str) -> int:
    """Parse a message back and sum the integers of its JSON attachment."""
    msg = message_from_string(text, policy=policy.default)
    total = len(str(msg["Subject"]))
    for part in msg.iter_attachments():
        data = json.loads(part.get_content())
        total += sum([sum(row) for row in data["rows"]])
    body = msg.get_body(preferencelist=("plain",))
    return total + len(body.get_content()) if body is not None else total


def diff_texts(seed: int) -> int:
    """The number of changed lines between two related texts."""
    old = [sentence(seed + i, 10) for i in range(60)]
    new = [line if i % 7 else line.upper() for i, line in enumerate(old)]
    new.insert(seed % 50, sentence(seed * 3, 9))
    changed = [line for line in list(difflib.ndiff(old, new)) if line[:1] in "+-?"]
    unified = list(difflib.unified_diff(old, new, lineterm=""))
    return len(changed) + len(unified)


def arithmetic(seed: int) -> int:
    """Exact arithmetic with Decimal and Fraction."""
    getcontext().prec = 50
    terms = 60 + seed % 10
    harmonic = sum(map(Fraction, [1] * terms, range(1, terms + 1)), Fraction(0))
    root = (Decimal(seed + 2) / Decimal(7)).sqrt()
    return harmonic.denominator % 1000 + int(root * 1000)


def main(argv: list[str]) -> None:
    """Run ROUNDS rounds and print a checksum."""
    rounds = int(argv[1]) if len(argv) > 1 else 130
    checksum = 0
    for seed in range(rounds):
        checksum += parse_mail(build_mail(seed))
        checksum += diff_texts(seed)
        checksum += len(textwrap.fill(sentence(seed, 200), width=40 + seed % 20))
        checksum += arithmetic(seed)
    print(f"rounds={rounds} checksum={checksum}")


if __name__ == "__main__":
    main(sys.argv)
