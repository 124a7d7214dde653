#!/usr/bin/env python3
"""seed-demo.py - fills an empty IMAP account with deterministic sample mail
for the demo and benchmarks.

Usage: seed-demo.py [--tls] [--scale N] HOST PORT USER PASSWORD CA_FILE

Creates INBOX, Archive, Archive/2023, Lists/dev, Reçus and 日本語 (plus the
empty folder Empty) and appends a few hundred messages (times --scale):
plain text, a few multipart MIME messages with base64 attachments, some
non-ASCII subjects, random flags. Every 7th message contains the word
NEEDLE. The same arguments always give the same messages (seeded RNG,
fixed dates). If INBOX already holds mail it does nothing. Connects to the
plain port with LOGIN, or to a TLS port with --tls (verified against
CA_FILE).
"""
import argparse
import base64
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imapcheck  # noqa: E402

FOLDERS = [
    ("INBOX", 120),
    ("Archive", 60),
    ("Archive/2023", 80),
    ("Lists/dev", 50),
    ("Reçus", 20),
    ("日本語", 15),
]
EMPTY_FOLDERS = ["Empty"]
NEEDLE_EVERY = 7
ATTACH_EVERY = 23

WORDS = ("meeting report budget release schedule draft review invoice "
         "travel server backup lunch project update question answer "
         "quarter plan design deadline patch build network storage "
         "calendar holiday contract feedback summary").split()
PEOPLE = [("Alice Martin", "alice@example.org"),
          ("Bob Stone", "bob@example.com"),
          ("Chloé Durand", "chloe@example.fr"),
          ("Dev List", "dev@lists.example.org"),
          ("山田太郎", "yamada@example.jp"),
          ("Eve Carter", "eve@example.net")]
EPOCH = datetime(2023, 1, 2, 9, 0, 0, tzinfo=timezone.utc)


def encode_header(text):
    """RFC 2047 encodes text if it is not plain ASCII."""
    try:
        text.encode("ascii")
        return text
    except UnicodeEncodeError:
        raw = base64.b64encode(text.encode("utf-8")).decode("ascii")
        return "=?UTF-8?B?%s?=" % raw


def sentence(rng, needle):
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
    if needle:
        words.insert(rng.randrange(len(words)), "NEEDLE")
    text = " ".join(words)
    # Not str.capitalize(): it would lower-case the planted NEEDLE.
    return text[0].upper() + text[1:] + "."


def body_text(rng, needle):
    paragraphs = []
    needle_at = rng.randrange(3) if needle else -1
    for p in range(rng.randint(1, 3)):
        lines = [sentence(rng, needle and p == needle_at and i == 0)
                 for i in range(rng.randint(1, 5))]
        paragraphs.append("\r\n".join(lines))
    if needle_at >= len(paragraphs):
        paragraphs.append(sentence(rng, True))
    return "\r\n\r\n".join(paragraphs) + "\r\n"


def headers(rng, folder, n, when, subject, extra=()):
    name, addr = rng.choice(PEOPLE)
    lines = [
        "From: %s <%s>" % (encode_header(name), addr),
        "To: Alice <alice@example.org>",
        "Subject: %s" % encode_header(subject),
        "Date: %s" % when.strftime("%a, %d %b %Y %H:%M:%S +0000"),
        "Message-ID: <%s.%d@demo.imapfs>" %
        (imapcheck.utf7_encode(folder).replace("/", "."), n),
        "MIME-Version: 1.0",
    ]
    lines.extend(extra)
    return "\r\n".join(lines) + "\r\n"


def wrap76(data):
    text = base64.b64encode(data).decode("ascii")
    return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def attachment(rng, n):
    kind = n % 3
    if kind == 0:
        size = rng.randint(2000, 60000)
        return ("application/octet-stream", "data-%d.bin" % n,
                bytes(rng.getrandbits(8) for _ in range(size)))
    if kind == 1:
        lines = ["%d,%s,%d" % (i, rng.choice(WORDS), rng.randint(0, 999))
                 for i in range(rng.randint(50, 400))]
        return ("text/csv", "table-%d.csv" % n,
                ("\r\n".join(lines) + "\r\n").encode())
    png = (b"\x89PNG\r\n\x1a\n" +
           bytes(rng.getrandbits(8) for _ in range(rng.randint(500, 8000))))
    return ("image/png", "picture-%d.png" % n, png)


def make_message(rng, folder, n, when, needle):
    subject = "%s %s #%d" % (rng.choice(WORDS).capitalize(),
                             rng.choice(WORDS), n)
    if folder in ("Reçus", "日本語") or n % 11 == 0:
        subject = rng.choice(["Reçu n°", "お知らせ", "Grüße zum"]) + \
            " %s %d" % (rng.choice(WORDS), n)
    text = body_text(rng, needle)
    if n % ATTACH_EVERY != 5:
        head = headers(rng, folder, n, when, subject, [
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit"])
        return (head + "\r\n" + text).encode("utf-8")
    boundary = "=_imapfs_demo_%d" % n
    ctype, fname, data = attachment(rng, n)
    head = headers(rng, folder, n, when, subject + " (attachment)", [
        'Content-Type: multipart/mixed; boundary="%s"' % boundary])
    parts = [
        "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n%s" % (boundary, text),
        "--%s\r\nContent-Type: %s; name=\"%s\"\r\n"
        "Content-Disposition: attachment; filename=\"%s\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n" %
        (boundary, ctype, fname, fname, wrap76(data)),
        "--%s--\r\n" % boundary,
    ]
    return (head + "\r\n" + "This is a multi-part message in MIME format."
            "\r\n\r\n" + "".join(parts)).encode("utf-8")


def pick_flags(rng):
    flags = []
    if rng.random() < 0.6:
        flags.append("\\Seen")
    if rng.random() < 0.1:
        flags.append("\\Flagged")
    if rng.random() < 0.05:
        flags.append("\\Answered")
    return " ".join(flags) or None


def seed(conn, scale):
    rng = random.Random(20230102)
    existing = set(imapcheck.list_mailboxes(conn))
    for folder in [f for f, _ in FOLDERS] + EMPTY_FOLDERS:
        if folder not in existing and folder != "INBOX":
            imapcheck.ok(conn.create(imapcheck.wire_mailbox(folder)),
                         "CREATE " + folder)
    total = needles = attachments = 0
    for folder, count in FOLDERS:
        for i in range(count * scale):
            n = total + 1
            when = EPOCH + timedelta(hours=7 * n, minutes=rng.randint(0, 59))
            needle = n % NEEDLE_EVERY == 0
            msg = make_message(rng, folder, n, when, needle)
            imapcheck.append(conn, folder, msg, pick_flags(rng), when)
            total += 1
            needles += needle
            attachments += n % ATTACH_EVERY == 5
    return total, needles, attachments


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tls", action="store_true")
    p.add_argument("--scale", type=int, default=1)
    p.add_argument("host")
    p.add_argument("port")
    p.add_argument("user")
    p.add_argument("password")
    p.add_argument("ca_file")
    o = p.parse_args()

    started = time.monotonic()
    conn = imapcheck.connect(o.host, o.port, o.user, o.password, o.ca_file,
                             "tls" if o.tls else "plain")
    try:
        count = imapcheck.status_items(conn, "INBOX", "MESSAGES")["MESSAGES"]
        if count > 0:
            print("seed-demo: INBOX already holds %d messages; not seeding"
                  % count, file=sys.stderr)
            return 0
        total, needles, attachments = seed(conn, o.scale)
    finally:
        conn.logout()
    print("seed-demo: %d messages in %d folders (%d contain NEEDLE, %d with "
          "attachments) in %.1f s" %
          (total, len(FOLDERS) + len(EMPTY_FOLDERS), needles, attachments,
           time.monotonic() - started), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
