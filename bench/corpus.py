#!/usr/bin/env python3
"""corpus.py - the benchmark's deterministic mail corpus, written straight
into a Dovecot Maildir (no APPEND: 100,000 messages seed in seconds), and a
check that Dovecot then serves exactly what was written.

  corpus.py seed --profile full|quick --maildir DIR [--owner USER] [--scale]
  corpus.py verify --profile full|quick --env SERVER_ENV [--scale]

Two data sets per profile:
  mail   4 folders (INBOX, Archive, Work, Lists): most messages 2-20 KB of
         text, some 20-200 KB HTML newsletters, 1 in 25 with a base64
         attachment of 40 KB - 1.5 MB; non-ASCII (RFC 2047) subjects and
         names; the word NEEDLE in every 97th message (nowhere else).
  scale  one folder "Big" of small messages, for metadata at scale.
The same profile always gives the same bytes, UIDs, flags and dates: each
message has its own seeded RNG, files carry fixed mtimes (Dovecot's
INTERNALDATE) and a dovecot-uidlist fixes the UIDs. Files use LF line ends,
as Dovecot writes them; names carry S= (bytes) and W= (size with CRLF, the
RFC822.SIZE) so Dovecot need not read them to learn sizes.
"""
import argparse
import base64
import hashlib
import os
import pwd
import random
import sys
from datetime import datetime, timezone

SEED = 20240611
EPOCH = int(datetime(2022, 1, 3, 8, 0, tzinfo=timezone.utc).timestamp())
NEEDLE = b"NEEDLE"
NEEDLE_EVERY = 97
ATTACH_EVERY = 25

PROFILES = {
    "full": {"mail": [("INBOX", 800), ("Archive", 600), ("Work", 350),
                      ("Lists", 250)],
             "scale": [("Big", 100000)]},
    "quick": {"mail": [("INBOX", 80), ("Archive", 60), ("Work", 35),
                       ("Lists", 25)],
              "scale": [("Big", 10000)]},
}

WORDS = ("meeting report budget release schedule draft review invoice travel "
         "server backup lunch project update question answer quarter plan "
         "design deadline patch build network storage calendar holiday "
         "contract feedback summary the a of to and in for with on at by "
         "from this that is are was be will can should would café déjà "
         "Grüße naïve coöperation résumé straße").split()
PEOPLE = [("Alice Martin", "alice@example.org"),
          ("Bob Stone", "bob@example.com"),
          ("Chloé Durand", "chloe@example.fr"),
          ("Jürgen Weiß", "juergen@example.de"),
          ("山田太郎", "yamada@example.jp"),
          ("Eve Carter", "eve@example.net"),
          ("Dev List", "dev@lists.example.org")]
SUBJECTS_UTF8 = ["Reçu n°", "お知らせ", "Grüße zum", "Привет", "Ærø ferie"]

_pool = None


def text_pool():
    """1 MiB of word lines (LF), sliced for message bodies."""
    global _pool
    if _pool is None:
        rng = random.Random(SEED)
        lines, size = [], 0
        while size < 1 << 20:
            line = " ".join(rng.choice(WORDS)
                            for _ in range(rng.randint(8, 13)))
            line = line[0].upper() + line[1:] + "."
            lines.append(line)
            size += len(line.encode()) + 1
        _pool = ("\n".join(lines) + "\n").encode()
        assert NEEDLE not in _pool
    return _pool


def pool_slice(rng, size):
    pool = text_pool()
    size = max(1, min(size, len(pool) // 2))
    start = pool.index(b"\n", rng.randrange(len(pool) - size - 200)) + 1
    end = pool.find(b"\n", start + size)
    return pool[start:end + 1]


def encode_word(text, rng):
    if text.isascii():
        return text
    raw = text.encode()
    if rng.random() < 0.5:
        return "=?UTF-8?B?%s?=" % base64.b64encode(raw).decode()
    q = "".join(chr(b) if 48 <= b <= 122 and chr(b).isalnum() else
                "_" if b == 32 else "=%02X" % b for b in raw)
    return "=?UTF-8?Q?%s?=" % q


def headers(rng, n, folder, when, subject, ctype):
    name, addr = PEOPLE[rng.randrange(len(PEOPLE))]
    date = datetime.fromtimestamp(when, timezone.utc)
    return ("From: %s <%s>\n"
            "To: Alice Martin <alice@example.org>\n"
            "Subject: %s\n"
            "Date: %s\n"
            "Message-ID: <%d.%s@bench.imapfs>\n"
            "MIME-Version: 1.0\n"
            "Content-Type: %s\n" %
            (encode_word(name, rng), addr, encode_word(subject, rng),
             date.strftime("%a, %d %b %Y %H:%M:%S +0000"), n, folder.lower(),
             ctype)).encode()


def plant_needle(rng, body):
    lines = body.split(b"\n")
    at = rng.randrange(max(1, len(lines) - 1))
    lines[at] = lines[at] + b" The NEEDLE is here."
    return b"\n".join(lines)


def log_uniform(rng, lo, hi):
    return int(lo * (hi / lo) ** rng.random())


def random_blob(rng, size):
    """Attachment bytes whose base64 cannot contain the needle."""
    while True:
        data = rng.randbytes(size)
        text = base64.encodebytes(data)
        if NEEDLE not in text:
            return text


def flags_for(rng):
    f = ""
    if rng.random() < 0.05:
        f += "F"
    if rng.random() < 0.10:
        f += "R"
    if rng.random() < 0.70:
        f += "S"
    return f


def mail_message(n, folder):
    """(bytes, mtime, maildir flags, has_needle) of message n (1-based)."""
    rng = random.Random(SEED * 1000003 + n)
    when = EPOCH + n * 3 * 3600 + rng.randrange(3600)
    word = WORDS[rng.randrange(len(WORDS))]
    subject = "%s %s #%d" % (word.capitalize(), rng.choice(WORDS), n)
    if n % 5 == 0:
        subject = "%s %s %d" % (rng.choice(SUBJECTS_UTF8), word, n)
    needle = n % NEEDLE_EVERY == 0
    if n % ATTACH_EVERY == 12:
        target = 40000 + int(1460000 * rng.random() ** 0.5)
        boundary = "=_bench_%d" % n
        text = pool_slice(rng, rng.randint(300, 3000))
        if needle:
            text = plant_needle(rng, text)
        blob = random_blob(rng, target * 3 // 4)
        head = headers(rng, n, folder, when, subject + " (scan)",
                       'multipart/mixed; boundary="%s"' % boundary)
        body = (b"\nThis is a multi-part message in MIME format.\n\n"
                b"--%s\nContent-Type: text/plain; charset=utf-8\n"
                b"Content-Transfer-Encoding: 8bit\n\n%s\n"
                b"--%s\nContent-Type: application/pdf; name=\"scan-%d.pdf\"\n"
                b"Content-Disposition: attachment; filename=\"scan-%d.pdf\"\n"
                b"Content-Transfer-Encoding: base64\n\n%s\n--%s--\n" %
                (boundary.encode(), text, boundary.encode(), n, n, blob,
                 boundary.encode()))
        return head + body, when, flags_for(rng), needle
    if rng.random() < 0.15:
        target = log_uniform(rng, 20000, 200000)
        paras = pool_slice(rng, target).split(b"\n")
        html = b"\n".join(b"<p style=\"margin:0 0 1em 0\">%s</p>" % p
                          for p in paras if p)
        body = b"<html><body>\n%s\n</body></html>\n" % html
        ctype = "text/html; charset=utf-8"
    else:
        body = pool_slice(rng, log_uniform(rng, 1500, 19500))
        ctype = "text/plain; charset=utf-8"
    if needle:
        body = plant_needle(rng, body)
    head = headers(rng, n, folder, when, subject, ctype)
    head += b"Content-Transfer-Encoding: 8bit\n"
    return head + b"\n" + body, when, flags_for(rng), needle


def scale_message(n, folder):
    rng = random.Random(SEED * 7919 + n)
    when = EPOCH + n * 600 + rng.randrange(600)
    subject = "Notification %d: %s %s" % (n, rng.choice(WORDS),
                                          rng.choice(WORDS))
    head = headers(rng, n, folder, when, subject, "text/plain; charset=utf-8")
    body = pool_slice(rng, rng.randint(200, 1500))
    return head + b"\n" + body, when, flags_for(rng), False


def plan(profile, dataset):
    """[(folder, [message numbers])] for a data set."""
    out, n = [], 0
    for folder, count in PROFILES[profile][dataset]:
        out.append((folder, list(range(n + 1, n + count + 1))))
        n += count
    return out


def folder_dir(maildir, folder):
    return maildir if folder == "INBOX" else os.path.join(maildir,
                                                          "." + folder)


def write_folder(maildir, folder, numbers, make, owner):
    """Writes one Maildir folder; returns [(uid, rfc822_size, mtime,
    needle)]."""
    d = folder_dir(maildir, folder)
    uid_gid = (owner.pw_uid, owner.pw_gid) if owner else None
    for sub in ("", "cur", "new", "tmp"):
        p = os.path.join(d, sub)
        os.makedirs(p, exist_ok=True)
        if uid_gid:
            os.chown(p, *uid_gid)
    if folder != "INBOX":
        open(os.path.join(d, "maildirfolder"), "w").close()
    cur = os.path.join(d, "cur")
    uidlist, manifest = [], []
    for uid, n in enumerate(numbers, 1):
        data, mtime, flags, needle = make(n, folder)
        vsize = len(data) + data.count(b"\n")
        base = "%d.M%dP1.bench,S=%d,W=%d" % (mtime, uid, len(data), vsize)
        path = os.path.join(cur, base + ":2," + flags)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, data)
        if uid_gid:
            os.fchown(fd, *uid_gid)
        os.close(fd)
        os.utime(path, (mtime, mtime))
        uidlist.append("%d :%s\n" % (uid, base))
        manifest.append((uid, vsize, mtime, needle))
    guid = hashlib.md5(folder.encode()).hexdigest()
    validity = 1650000000 + int(guid[:6], 16) % 100000
    with open(os.path.join(d, "dovecot-uidlist"), "w") as f:
        f.write("3 V%d N%d G%s\n" % (validity, len(numbers) + 1, guid))
        f.writelines(uidlist)
    if uid_gid:
        os.chown(os.path.join(d, "dovecot-uidlist"), *uid_gid)
        if folder != "INBOX":
            os.chown(os.path.join(d, "maildirfolder"), *uid_gid)
    return manifest


def manifest(profile, dataset):
    """What seed writes, without writing: {folder: [(uid, size, mtime,
    needle)]}."""
    make = mail_message if dataset == "mail" else scale_message
    out = {}
    for folder, numbers in plan(profile, dataset):
        rows = []
        for uid, n in enumerate(numbers, 1):
            data, mtime, _, needle = make(n, folder)
            rows.append((uid, len(data) + data.count(b"\n"), mtime, needle))
        out[folder] = rows
    return out


def seed(profile, dataset, maildir, owner_name=None):
    owner = pwd.getpwnam(owner_name) if owner_name else None
    make = mail_message if dataset == "mail" else scale_message
    os.makedirs(maildir, exist_ok=True)
    if owner:
        os.chown(maildir, owner.pw_uid, owner.pw_gid)
    return {folder: write_folder(maildir, folder, numbers, make, owner)
            for folder, numbers in plan(profile, dataset)}


def summary(man):
    count = sum(len(r) for r in man.values())
    size = sum(s for r in man.values() for _, s, _, _ in r)
    needles = sum(n for r in man.values() for _, _, _, n in r)
    return {"messages": count, "bytes": size, "needles": needles,
            "folders": len(man)}


def internaldate_epoch(s):
    return int(datetime.strptime(s.strip(), "%d-%b-%Y %H:%M:%S %z")
               .timestamp())


def verify(man, host, port, user, password, ca_file):
    """Dovecot must list every folder with the right count, and report each
    UID's RFC822.SIZE and INTERNALDATE as written. Returns problems."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from imapwire import Wire, parse_meta
    w = Wire(host, port, ca_file)
    problems = []
    try:
        w.login(user, password)
        listed = set(w.list_mailboxes())
        for folder, rows in man.items():
            if folder not in listed:
                problems.append("%s not listed (got %s)" %
                                (folder, sorted(listed)))
                continue
            count = w.status_messages(folder)
            if count != len(rows):
                problems.append("%s: STATUS MESSAGES %d, wrote %d" %
                                (folder, count, len(rows)))
            w.examine(folder)
            got = {}
            for text, _ in w.run("UID FETCH 1:* (UID RFC822.SIZE "
                                 "INTERNALDATE)"):
                uid, size, date = parse_meta(text)
                if uid is not None:
                    got[uid] = (size, internaldate_epoch(date))
            bad = [(uid, size, mtime, got.get(uid))
                   for uid, size, mtime, _ in rows
                   if got.get(uid) != (size, mtime)]
            if bad:
                problems.append("%s: %d messages differ, first: UID %d "
                                "wrote (%d, %d) server has %s" %
                                ((folder, len(bad)) + bad[0]))
    finally:
        w.logout()
    return problems


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            env[k] = v
    return env


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["seed", "verify", "stats"])
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    p.add_argument("--scale", action="store_true",
                   help="the metadata data set (default: the mail one)")
    p.add_argument("--maildir")
    p.add_argument("--owner")
    p.add_argument("--env")
    o = p.parse_args()
    dataset = "scale" if o.scale else "mail"
    if o.command == "seed":
        man = seed(o.profile, dataset, o.maildir, o.owner)
        print(summary(man))
    elif o.command == "stats":
        print(summary(manifest(o.profile, dataset)))
    else:
        e = read_env(o.env)
        problems = verify(manifest(o.profile, dataset), e["HOST"],
                          e["TLS_PORT"], e["USER"], e["PASSWORD"],
                          e["CA_FILE"])
        for line in problems:
            print(line)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
