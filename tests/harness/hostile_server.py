#!/usr/bin/env python3
"""hostile_server.py - a small IMAP server (plain TCP, any number of
connections) serving one account, that injects ONE hostile or broken
behaviour chosen with --mode into its replies. hostile_test.sh mounts
imapfs against it and checks the daemon survives each.

Usage: hostile_server.py --mode MODE [--timeout SECONDS] [--state FILE]
                         [--dump DIR] [--behave-file FILE] [--target UID]

It listens on 127.0.0.1 on a free port and prints "PORT=n" (flushed). Any
user name and password log in. INBOX holds UIDs 1-4 (4 is a 3 MB message),
Archive holds UID 1; the bytes are deterministic.

  --dump DIR         writes every message to DIR/<mailbox>/<UID>.eml first
  --state FILE       after every change writes FILE (JSON): mailbox ->
                     [[uid, sha256 of the bytes], ...]
  --behave-file FILE while FILE exists the server behaves (no injection), so
                     a test can check the daemon recovers afterwards
  --target UID       the INBOX message the body modes attack (default 2)
  --timeout SECONDS  the whole run (default 300), then exit 0

Modes (the body modes act on a FETCH of the target's BODY[]):
  normal             none
  huge-literal       body announced as {99999999999}, 64 MiB sent, closed
  over-cap           body literal one byte longer than the partial
                     fetch asked for (whole-body fetches are answered
                     normally)
  over-cap-memory    a non-body literal of 64 MiB + 1 (the in-memory cap)
                     before the body
  endless-line       16 MiB without a line end, then silence
  deep-nesting       100000 nested parentheses before the body
  garbage            256 KiB of random bytes, then silence
  nil-body           the body is NIL (RFC 2180: expunged elsewhere)
  bye-mid-literal    half the body literal, "* BYE", connection closed
  bye-between-items  the whole literal, then "* BYE" before the FETCH
                     list is closed, connection closed
  wrong-uid          only UID 1's body, its UID after the literal
  wrong-uid-extra    UID 1's body first (UID before it), then the target's
  size-too-big       RFC822.SIZE is the real size + 1000 (all messages)
  size-too-small     RFC822.SIZE is 60 % of the real size (all messages)
  copyuid-mismatch   UID MOVE answers COPYUID with 1 source, 2 dest UIDs
  copyuid-mismatch-copy  same, without MOVE (so UID COPY + UID EXPUNGE)
  copyuid-existing   COPYUID names Archive UID 1, another message
  caps-drop          before login MOVE UIDPLUS ESEARCH CONDSTORE QRESYNC
                     are offered, after login (in the LOGIN OK) not
  caps-add           before login almost nothing; after login (only in
                     a CAPABILITY reply) MOVE UIDPLUS

On stderr: "C<n>: line" for each client line, "HOSTILE <mode> ..." when the
behaviour was injected, "VIOLATION ..." when the client used an extension
that was not offered after login (answered BAD).
"""
import argparse
import base64
import hashlib
import json
import os
import random
import re
import select
import socket
import sys
import threading
import time

BASE_CAPS = "IMAP4rev1 LITERAL+ UIDPLUS MOVE IDLE ID ENABLE"
CAPS = {
    "copyuid-mismatch-copy": ("IMAP4rev1 LITERAL+ UIDPLUS IDLE ID ENABLE",
                              None),
    "caps-drop": ("IMAP4rev1 LITERAL+ UIDPLUS MOVE ESEARCH CONDSTORE "
                  "QRESYNC ENABLE IDLE ID SASL-IR AUTH=PLAIN",
                  "IMAP4rev1 LITERAL+ IDLE ID"),
    "caps-add": ("IMAP4rev1 AUTH=PLAIN", "IMAP4rev1 LITERAL+ UIDPLUS MOVE "
                 "IDLE ID"),
}
BODY_MODES = {"huge-literal", "over-cap", "over-cap-memory", "endless-line",
              "deep-nesting", "garbage", "nil-body", "bye-mid-literal",
              "bye-between-items", "wrong-uid", "wrong-uid-extra"}
OTHER_MODES = {"normal", "size-too-big", "size-too-small",
               "copyuid-mismatch", "copyuid-mismatch-copy",
               "copyuid-existing", "caps-drop", "caps-add"}
MAX_LITERAL = 64 * 1024 * 1024  # the daemon's in-memory literal cap
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()

ARGS = None
LOCK = threading.RLock()
MAILBOXES = {}  # name -> Mailbox
CONN_IDS = iter(range(1, 1 << 30))


class Closed(Exception):
    pass


class Bad(Exception):
    pass


def log(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Message:
    def __init__(self, uid, body, date, flags=()):
        self.uid = uid
        self.body = body
        self.date = date  # epoch seconds, UTC
        self.flags = set(flags)


class Mailbox:
    def __init__(self, name, uidvalidity):
        self.name = name
        self.uidvalidity = uidvalidity
        self.uidnext = 1
        self.msgs = []  # by UID

    def add(self, body, date, flags=()):
        m = Message(self.uidnext, body, date, flags)
        self.uidnext += 1
        self.msgs.append(m)
        return m

    def find(self, uid):
        for m in self.msgs:
            if m.uid == uid:
                return m
        return None


def mail(subject, text):
    head = ("From: Hostile Test <hostile@example.org>\r\n"
            "To: Alice <alice@example.org>\r\n"
            "Subject: %s\r\n"
            "Message-ID: <%s@hostile.example>\r\n"
            "Date: Mon, 1 May 2023 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n" %
            (subject, hashlib.sha1(subject.encode()).hexdigest()[:12]))
    return (head + text.replace("\n", "\r\n") + "\r\n").encode()


def seed():
    rng = random.Random(4242)
    inbox = Mailbox("INBOX", 1700000000)
    inbox.add(mail("first", "MARKER-ONE\n" + "one " * 150), 1682935200)
    inbox.add(mail("target", "MARKER-TWO\n" +
                   "\n".join("two line %d %s" % (i, "x" * (i % 50))
                             for i in range(120))), 1682935260)
    inbox.add(mail("move me", "MARKER-THREE\n" + "three " * 200),
              1682935320, ["\\Seen"])
    blob = base64.b64encode(rng.randbytes(2_300_000)).decode()
    inbox.add(mail("big", "MARKER-FOUR\n" + "\n".join(
        blob[i:i + 76] for i in range(0, len(blob), 76))), 1682935380)
    archive = Mailbox("Archive", 1700000001)
    archive.add(mail("archived", "MARKER-ARCHIVED\n" + "old " * 200),
                1682935000, ["\\Seen"])
    MAILBOXES["INBOX"] = inbox
    MAILBOXES["Archive"] = archive


def write_state():
    if not ARGS.state:
        return
    with LOCK:
        state = {name: [[m.uid, hashlib.sha256(m.body).hexdigest()]
                        for m in mb.msgs]
                 for name, mb in MAILBOXES.items()}
    tmp = ARGS.state + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, sort_keys=True)
    os.replace(tmp, ARGS.state)


def dump(top):
    for name, mb in MAILBOXES.items():
        os.makedirs(os.path.join(top, name), exist_ok=True)
        for m in mb.msgs:
            with open(os.path.join(top, name, "%d.eml" % m.uid), "wb") as f:
                f.write(m.body)


def hostile():
    return ARGS.mode != "normal" and not (
        ARGS.behave_file and os.path.exists(ARGS.behave_file))


def imap_date(epoch):
    t = time.gmtime(epoch)
    return '"%2d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min,
        t.tm_sec)


def parse_date(s):
    m = re.match(r"\s*(\d+)-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) "
                 r"([+-])(\d\d)(\d\d)$", s)
    if not m:
        raise Bad("bad date")
    t = time.struct_time((int(m[3]), MONTHS.index(m[2].title()) + 1,
                          int(m[1]), int(m[4]), int(m[5]), int(m[6]),
                          0, 0, 0))
    off = (int(m[8]) * 60 + int(m[9])) * 60
    return int(time.mktime(t) - time.timezone) - (
        off if m[7] == "+" else -off)


# ----------------------------------------------------------- parsing

class Lit(bytes):
    """A string that came as a literal."""


def tokenize(data, lits, pos=0, depth=0):
    """Parses data (bytes) into a list of tokens: bytes (atoms, quoted
    strings, Lit) and nested lists. Returns (tokens, pos)."""
    out = []
    while pos < len(data):
        c = data[pos:pos + 1]
        if c == b" ":
            pos += 1
        elif c == b"(":
            sub, pos = tokenize(data, lits, pos + 1, depth + 1)
            out.append(sub)
        elif c == b")":
            if depth == 0:
                raise Bad("unbalanced )")
            return out, pos + 1
        elif c == b'"':
            end = pos + 1
            s = bytearray()
            while end < len(data) and data[end:end + 1] != b'"':
                if data[end:end + 1] == b"\\":
                    end += 1
                s += data[end:end + 1]
                end += 1
            if end >= len(data):
                raise Bad("unterminated string")
            out.append(bytes(s))
            pos = end + 1
        elif c == b"\x00":
            end = data.index(b"\x00", pos + 1)
            out.append(lits[int(data[pos + 1:end])])
            pos = end + 1
        else:
            end = pos
            brackets = 0
            while end < len(data):
                ch = data[end:end + 1]
                if ch == b"[":
                    brackets += 1
                elif ch == b"]":
                    brackets -= 1
                elif brackets == 0 and ch in b' ()"':
                    break
                end += 1
            out.append(data[pos:end])
            pos = end
    if depth:
        raise Bad("unbalanced (")
    return out, pos


def text(tok):
    if isinstance(tok, list):
        raise Bad("expected a string")
    return tok.decode("utf-8", "replace")


def parse_set(s, largest):
    """A UID or sequence set as a Python set of numbers."""
    out = set()
    for part in s.split(","):
        lo, _, hi = part.partition(":")
        a = largest if lo == "*" else int(lo)
        b = a if not hi else (largest if hi == "*" else int(hi))
        if a > b:
            a, b = b, a
        if b - a > 1_000_000:
            raise Bad("set too large")
        out.update(range(a, b + 1))
    return out


def format_set(nums):
    nums = sorted(nums)
    parts = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else "%d:%d" % (nums[i],
                                                             nums[j]))
        i = j + 1
    return ",".join(parts)


def match_pattern(name, pat):
    rx = "".join(".*" if ch == "*" else "[^/]*" if ch == "%" else
                 re.escape(ch) for ch in pat)
    return re.fullmatch(rx, name, re.I if name.upper() == "INBOX" else 0)


# ------------------------------------------------------- a connection

class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.id = next(CONN_IDS)
        self.buf = b""
        self.authed = False
        self.selected = None  # Mailbox
        self.readonly = False
        self.view = []  # UIDs in sequence order, as this client knows them
        pre, post = CAPS.get(ARGS.mode, (BASE_CAPS, None))
        self.pre_caps = pre
        self.post_caps = post or pre
        sock.settimeout(30)

    # -- I/O
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self, s):
        self.send(s + "\r\n")

    def read_line(self):
        while b"\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise Closed()
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed()
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed()
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_command(self):
        """One command with its literals; literals are replaced by NUL
        n NUL markers into self.literals."""
        self.literals = []
        parts = []
        while True:
            line = self.read_line()
            log("C%d: %s" % (self.id, line[:300].decode("utf-8", "replace")))
            m = re.search(rb"\{(\d+)(\+?)\}$", line)
            if not m:
                parts.append(line)
                return b"".join(parts)
            n = int(m.group(1))
            if n > 50 * 1024 * 1024:
                raise Closed()
            parts.append(line[:m.start()])
            if not m.group(2):
                self.line("+ go ahead")
            self.literals.append(Lit(self.read_exact(n)))
            parts.append(b"\x00%d\x00" % (len(self.literals) - 1))

    # -- state
    def caps(self):
        return self.post_caps if self.authed else self.pre_caps

    def has(self, cap):
        return cap.upper() in self.caps().upper().split()

    def need(self, cap, what):
        if not self.has(cap):
            log("VIOLATION C%d used %s without %s offered" % (self.id, what,
                                                               cap))
            raise Bad("%s was not offered" % cap)

    def sync_view(self):
        """Tells the client about messages expunged or added since."""
        if self.selected is None:
            return
        with LOCK:
            now = [m.uid for m in self.selected.msgs]
        present = set(now)
        for i in range(len(self.view) - 1, -1, -1):
            if self.view[i] not in present:
                del self.view[i]
                self.line("* %d EXPUNGE" % (i + 1))
        known = set(self.view)
        added = [u for u in now if u not in known]
        if added:
            self.view.extend(added)
            self.line("* %d EXISTS" % len(self.view))

    def seq_of(self, uid):
        return self.view.index(uid) + 1

    # -- main loop
    def serve(self):
        self.line("* OK [CAPABILITY %s] hostile_server ready" %
                  self.pre_caps)
        while True:
            raw = self.read_command()
            try:
                toks, _ = tokenize(raw, self.literals)
            except (Bad, ValueError) as e:
                self.line("* BAD %s" % e)
                continue
            if len(toks) < 2 or isinstance(toks[0], list):
                self.line("* BAD no command")
                continue
            tag = text(toks[0])
            cmd = text(toks[1]).upper()
            args = toks[2:]
            if cmd == "UID" and args:
                cmd = "UID " + text(args[0]).upper()
                args = args[1:]
            handler = getattr(self, "cmd_" + cmd.replace(" ", "_"), None)
            try:
                if handler is None:
                    raise Bad("unknown command %s" % cmd)
                if not self.authed and cmd not in (
                        "CAPABILITY", "LOGIN", "AUTHENTICATE", "NOOP",
                        "LOGOUT", "ID"):
                    raise Bad("log in first")
                result = handler(tag, args)
            except (Bad, ValueError, IndexError, KeyError) as e:
                self.line("%s BAD %s" % (tag, str(e) or "syntax error"))
                continue
            if result is not None:
                self.line("%s %s" % (tag, result))
            if cmd == "LOGOUT":
                return

    # -- commands
    def cmd_CAPABILITY(self, tag, args):
        self.line("* CAPABILITY " + self.caps())
        return "OK done"

    def login_ok(self):
        self.authed = True
        if ARGS.mode == "caps-add":
            return "OK logged in"  # the client must ask again
        return "OK [CAPABILITY %s] logged in" % self.post_caps

    def cmd_LOGIN(self, tag, args):
        text(args[0]), text(args[1])
        return self.login_ok()

    def cmd_AUTHENTICATE(self, tag, args):
        if text(args[0]).upper() != "PLAIN":
            return "NO unsupported mechanism"
        if len(args) < 2:
            self.line("+ ")
            self.read_line()
        return self.login_ok()

    def cmd_ID(self, tag, args):
        self.line('* ID ("name" "hostile_server")')
        return "OK done"

    def cmd_ENABLE(self, tag, args):
        self.need("ENABLE", "ENABLE")
        on = []
        for a in args:
            ext = text(a).upper()
            if ext in ("CONDSTORE", "QRESYNC"):
                self.need(ext, "ENABLE " + ext)
            if self.has(ext):
                on.append(ext)
        self.line("* ENABLED" + "".join(" " + e for e in on))
        return "OK enabled"

    def cmd_NOOP(self, tag, args):
        self.sync_view()
        return "OK done"

    cmd_CHECK = cmd_NOOP

    def cmd_LOGOUT(self, tag, args):
        self.line("* BYE logging out")
        return "OK bye"

    def cmd_LIST(self, tag, args):
        args = [a for a in args if not isinstance(a, list)]
        ref, pat = text(args[0]), text(args[1])
        if len(args) > 2:
            raise Bad("LIST-EXTENDED was not offered")
        if pat == "":
            self.line('* LIST (\\Noselect) "/" ""')
            return "OK done"
        with LOCK:
            names = sorted(MAILBOXES)
        for name in names:
            if match_pattern(name, ref + pat):
                self.line('* LIST (\\HasNoChildren) "/" "%s"' % name)
        return "OK done"

    cmd_LSUB = cmd_LIST

    def mailbox(self, tok):
        name = text(tok)
        if name.upper() == "INBOX":
            name = "INBOX"
        with LOCK:
            mb = MAILBOXES.get(name)
        if mb is None:
            raise KeyError("no such mailbox")
        return mb

    def cmd_SELECT(self, tag, args, readonly=False):
        try:
            mb = self.mailbox(args[0])
        except KeyError:
            self.selected = None
            return "NO [NONEXISTENT] no such mailbox"
        if len(args) > 1:
            self.need("CONDSTORE", "SELECT parameters")
        self.selected = mb
        self.readonly = readonly
        with LOCK:
            self.view = [m.uid for m in mb.msgs]
            unseen = [i + 1 for i, m in enumerate(mb.msgs)
                      if "\\Seen" not in m.flags]
            uidnext = mb.uidnext
        self.line("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
        self.line("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted "
                  "\\Seen \\Draft \\*)] flags")
        self.line("* %d EXISTS" % len(self.view))
        self.line("* 0 RECENT")
        if unseen:
            self.line("* OK [UNSEEN %d] unseen" % unseen[0])
        self.line("* OK [UIDVALIDITY %d] uids valid" % mb.uidvalidity)
        self.line("* OK [UIDNEXT %d] next" % uidnext)
        return "OK [%s] selected" % ("READ-ONLY" if readonly else
                                     "READ-WRITE")

    def cmd_EXAMINE(self, tag, args):
        return self.cmd_SELECT(tag, args, readonly=True)

    def cmd_UNSELECT(self, tag, args):
        self.selected = None
        return "OK done"

    def cmd_CLOSE(self, tag, args):
        if self.selected is not None and not self.readonly:
            with LOCK:
                self.selected.msgs = [m for m in self.selected.msgs
                                      if "\\Deleted" not in m.flags]
            write_state()
        self.selected = None
        return "OK closed"

    def cmd_STATUS(self, tag, args):
        try:
            mb = self.mailbox(args[0])
        except KeyError:
            return "NO [NONEXISTENT] no such mailbox"
        out = []
        with LOCK:
            for item in args[1]:
                item = text(item).upper()
                if item == "MESSAGES":
                    out.append("MESSAGES %d" % len(mb.msgs))
                elif item == "UIDNEXT":
                    out.append("UIDNEXT %d" % mb.uidnext)
                elif item == "UIDVALIDITY":
                    out.append("UIDVALIDITY %d" % mb.uidvalidity)
                elif item == "UNSEEN":
                    out.append("UNSEEN %d" % sum(
                        1 for m in mb.msgs if "\\Seen" not in m.flags))
                elif item == "RECENT":
                    out.append("RECENT 0")
                elif item == "HIGHESTMODSEQ":
                    self.need("CONDSTORE", "STATUS HIGHESTMODSEQ")
                else:
                    raise Bad("unknown STATUS item")
        self.line('* STATUS "%s" (%s)' % (mb.name, " ".join(out)))
        return "OK done"

    def cmd_CREATE(self, tag, args):
        name = text(args[0])
        with LOCK:
            if name in MAILBOXES:
                return "NO [ALREADYEXISTS] exists"
            MAILBOXES[name] = Mailbox(name, 1700000100 + len(MAILBOXES))
        write_state()
        return "OK created"

    def cmd_SUBSCRIBE(self, tag, args):
        return "OK done"

    def cmd_IDLE(self, tag, args):
        self.need("IDLE", "IDLE")
        self.line("+ idling")
        while True:
            if b"\n" in self.buf:
                break
            r, _, _ = select.select([self.sock], [], [], 0.25)
            if r:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise Closed()
                self.buf += chunk
            else:
                self.sync_view()
        line = self.read_line()
        log("C%d: %s" % (self.id, line.decode("utf-8", "replace")))
        if line.strip().upper() != b"DONE":
            raise Bad("expected DONE")
        return "OK idle done"

    def need_selected(self):
        if self.selected is None:
            raise Bad("no mailbox selected")
        return self.selected

    def uids_in(self, setspec, by_uid=True):
        """Messages of the view named by a UID (or sequence) set."""
        mb = self.need_selected()
        with LOCK:
            present = {m.uid: m for m in mb.msgs}
        if by_uid:
            largest = self.view[-1] if self.view else 0
            want = parse_set(setspec, largest)
            return [present[u] for u in self.view
                    if u in want and u in present]
        want = parse_set(setspec, len(self.view))
        return [present[self.view[s - 1]] for s in sorted(want)
                if 0 < s <= len(self.view) and self.view[s - 1] in present]

    # ------------------------------------------------------- search
    def search_match(self, keys, m, seq):
        i = 0
        ok = True
        while i < len(keys):
            k = keys[i]
            if isinstance(k, list):
                ok &= self.search_match(k, m, seq)
                i += 1
                continue
            key = text(k).upper()
            i += 1
            if key == "ALL":
                pass
            elif key == "UID":
                ok &= m.uid in parse_set(text(keys[i]), self.view[-1]
                                         if self.view else 0)
                i += 1
            elif key in ("LARGER", "SMALLER"):
                n = int(text(keys[i]))
                i += 1
                ok &= len(m.body) > n if key == "LARGER" else \
                    len(m.body) < n
            elif key in ("DELETED", "UNDELETED", "SEEN", "UNSEEN",
                         "FLAGGED", "UNFLAGGED"):
                flag = "\\" + key.replace("UN", "", 1).title() \
                    if key.startswith("UN") else "\\" + key.title()
                has = flag in m.flags
                ok &= has if not key.startswith("UN") else not has
            elif key == "NOT":
                sub = keys[i:i + 1] if text(keys[i]).upper() not in (
                    "UID", "LARGER", "SMALLER") else keys[i:i + 2]
                i += len(sub)
                ok &= not self.search_match(sub, m, seq)
            elif re.fullmatch(r"[0-9*:,]+", key):
                ok &= seq in parse_set(key, len(self.view))
            else:
                raise Bad("unsupported search key %s" % key)
        return ok

    def cmd_UID_SEARCH(self, tag, args):
        mb = self.need_selected()
        esearch = False
        if args and text(args[0]).upper() == "RETURN":
            self.need("ESEARCH", "SEARCH RETURN")
            esearch = True
            args = args[2:]
        if args and text(args[0]).upper() == "CHARSET":
            args = args[2:]
        with LOCK:
            msgs = {m.uid: m for m in mb.msgs}
        hits = [u for s, u in enumerate(self.view, 1)
                if u in msgs and self.search_match(args, msgs[u], s)]
        if esearch:
            self.line('* ESEARCH (TAG "%s") UID%s' % (
                tag, " ALL " + format_set(hits) if hits else ""))
        else:
            self.line("* SEARCH" + "".join(" %d" % u for u in hits))
        return "OK done"

    # -------------------------------------------------------- fetch
    def cmd_FETCH(self, tag, args):
        return self.fetch(tag, args, by_uid=False)

    def cmd_UID_FETCH(self, tag, args):
        return self.fetch(tag, args, by_uid=True)

    def size_of(self, m):
        if not hostile() or not ARGS.mode.startswith("size-"):
            return len(m.body)
        lie = len(m.body) + 1000 if ARGS.mode == "size-too-big" else \
            max(1, len(m.body) * 6 // 10)
        log("HOSTILE %s on C%d: UID %d RFC822.SIZE %d, really %d" % (
            ARGS.mode, self.id, m.uid, lie, len(m.body)))
        return lie

    def fetch(self, tag, args, by_uid):
        items = args[1] if isinstance(args[1], list) else [args[1]]
        names = [text(i).upper() for i in items]
        if len(args) > 2:
            self.need("CONDSTORE", "FETCH modifiers")
        msgs = self.uids_in(text(args[0]), by_uid)
        wants_body = any(n.startswith(("BODY[", "BODY.PEEK[", "RFC822"))
                         and not n.startswith("RFC822.SIZE") for n in names)
        for m in msgs:
            if (wants_body and m.uid == ARGS.target and hostile() and
                    ARGS.mode in BODY_MODES and
                    self.selected.name == "INBOX"):
                if self.attack(m, names):
                    raise Closed()  # the connection is dropped
                continue
            self.send(self.fetch_response(m, names, by_uid))
        return "OK fetched"

    def body_part(self, m, name):
        """(item name in the reply, bytes) for BODY[]/BODY.PEEK[] items."""
        r = re.fullmatch(r"BODY(?:\.PEEK)?\[\](?:<(\d+)\.(\d+)>)?", name)
        if r is None:
            raise Bad("unsupported fetch item %s" % name)
        if r.group(1) is None:
            return "BODY[]", m.body
        o, n = int(r.group(1)), int(r.group(2))
        return "BODY[]<%d>" % o, m.body[o:o + n]

    def fetch_response(self, m, names, by_uid):
        out = [b"UID %d" % m.uid] if by_uid and "UID" not in names else []
        for n in names:
            if n == "UID":
                out.append(b"UID %d" % m.uid)
            elif n == "FLAGS":
                out.append(("FLAGS (%s)" % " ".join(sorted(m.flags)))
                           .encode())
            elif n == "RFC822.SIZE":
                out.append(b"RFC822.SIZE %d" % self.size_of(m))
            elif n == "INTERNALDATE":
                out.append(("INTERNALDATE " + imap_date(m.date)).encode())
            elif n in ("RFC822", "RFC822.PEEK"):
                out.append(b"RFC822 {%d}\r\n" % len(m.body) + m.body)
            else:
                item, data = self.body_part(m, n)
                if not n.startswith("BODY.PEEK"):
                    with LOCK:
                        m.flags.add("\\Seen")
                out.append(b"%s {%d}\r\n" % (item.encode(), len(data)) +
                           data)
        return b"* %d FETCH (%s)\r\n" % (self.seq_of(m.uid), b" ".join(out))

    def attack(self, m, names):
        """Sends the hostile reply to a body fetch of m. Returns True if
        the connection must be closed afterwards."""
        mode = ARGS.mode
        body_name = next(n for n in names if n.startswith("BODY"))
        item, data = self.body_part(m, body_name)
        asked = re.search(r"<\d+\.(\d+)>", body_name)
        asked = int(asked.group(1)) if asked else len(m.body)
        head = b"* %d FETCH (UID %d " % (self.seq_of(m.uid), m.uid)
        if mode == "over-cap" and asked == len(m.body):
            # A whole body has no length asked: nothing to exceed.
            self.send(self.fetch_response(m, names, True))
            return False
        log("HOSTILE %s on C%d (%s)" % (mode, self.id, body_name))
        if mode == "huge-literal":
            self.send(head + item.encode() + b" {99999999999}\r\n")
            self.stream(b"A", 64 * 1024 * 1024)
            return True
        if mode == "over-cap":
            pad = data + b"X" * (asked + 1 - len(data))
            self.send(head + item.encode() + b" {%d}\r\n" % len(pad) + pad +
                      b")\r\n")
            return False
        if mode == "over-cap-memory":
            self.send(head + b"X-JUNK {%d}\r\n" % (MAX_LITERAL + 1))
            self.stream(b"J", MAX_LITERAL + 1)
            self.send(b" " + item.encode() + b" {%d}\r\n" % len(data) +
                      data + b")\r\n")
            return False
        if mode == "endless-line":
            self.send(head + b'X-JUNK "')
            self.stream(b"L", 16 * 1024 * 1024)
            self.silence()
            return True
        if mode == "deep-nesting":
            self.send(head + b"X-JUNK " + b"(" * 100000 + b")" * 100000 +
                      b" " + item.encode() + b" {%d}\r\n" % len(data) +
                      data + b")\r\n")
            return False
        if mode == "garbage":
            self.send(random.Random(99).randbytes(256 * 1024))
            self.silence()
            return True
        if mode == "bye-mid-literal":
            self.send(head + item.encode() + b" {%d}\r\n" % len(data) +
                      data[:len(data) // 2] + b"\r\n* BYE going down\r\n")
            return True
        if mode == "nil-body":
            self.send(head + item.encode() + b" NIL)\r\n")
            return False
        if mode == "bye-between-items":
            self.send(head + item.encode() + b" {%d}\r\n" % len(data) +
                      data + b"\r\n* BYE going down\r\n")
            return True
        other = MAILBOXES["INBOX"].find(1)
        _, odata = self.body_part(other, body_name)
        if mode == "wrong-uid":
            self.send(b"* %d FETCH (%s {%d}\r\n" % (
                self.seq_of(1), item.encode(), len(odata)) + odata +
                b" UID 1)\r\n")
            return False
        if mode == "wrong-uid-extra":
            self.send(b"* %d FETCH (UID 1 %s {%d}\r\n" % (
                self.seq_of(1), item.encode(), len(odata)) + odata +
                b")\r\n")
            self.send(self.fetch_response(m, names, True))
            return False
        raise Bad("no attack for mode %s" % mode)

    def stream(self, byte, n):
        chunk = byte * 65536
        try:
            while n > 0:
                self.send(chunk[:n])
                n -= min(n, len(chunk))
        except OSError:
            raise Closed()

    def silence(self):
        """Waits (reading and dropping) until the client gives up."""
        deadline = time.time() + 60
        while time.time() < deadline:
            r, _, _ = select.select([self.sock], [], [], 0.5)
            if r and not self.sock.recv(65536):
                break
        raise Closed()

    # --------------------------------------------------- changes
    def cmd_UID_STORE(self, tag, args):
        mb = self.need_selected()
        if self.readonly:
            return "NO [READ-ONLY] read-only"
        mode = text(args[1]).upper()
        if isinstance(args[1], list) or "(" in mode:
            self.need("CONDSTORE", "STORE modifiers")
        flags = args[2] if isinstance(args[2], list) else [args[2]]
        flags = {text(f) for f in flags}
        silent = mode.endswith(".SILENT")
        mode = mode.replace(".SILENT", "")
        msgs = self.uids_in(text(args[0]))
        with LOCK:
            for m in msgs:
                if mode == "+FLAGS":
                    m.flags |= flags
                elif mode == "-FLAGS":
                    m.flags -= flags
                elif mode == "FLAGS":
                    m.flags = set(flags)
                else:
                    raise Bad("bad STORE mode")
        for m in msgs:
            if not silent:
                self.line("* %d FETCH (UID %d FLAGS (%s))" % (
                    self.seq_of(m.uid), m.uid, " ".join(sorted(m.flags))))
        write_state()
        del mb
        return "OK stored"

    def copy_to(self, msgs, dest):
        with LOCK:
            new = [dest.add(m.body, m.date, m.flags).uid for m in msgs]
        return new

    def copyuid(self, src_uids, new_uids, dest):
        src, dst = format_set(src_uids), format_set(new_uids)
        if hostile() and ARGS.mode.startswith("copyuid-mismatch"):
            dst = "%d:%d" % (new_uids[0], new_uids[0] + 1)
            log("HOSTILE %s: COPYUID %s %s for %s" % (ARGS.mode, src, dst,
                                                       format_set(new_uids)))
        elif hostile() and ARGS.mode == "copyuid-existing":
            dst = "1"
            log("HOSTILE copyuid-existing: COPYUID %s 1 for %s" % (
                src, format_set(new_uids)))
        return "COPYUID %d %s %s" % (dest.uidvalidity, src, dst)

    def cmd_UID_COPY(self, tag, args, move=False):
        msgs = self.uids_in(text(args[0]))
        try:
            dest = self.mailbox(args[1])
        except KeyError:
            return "NO [TRYCREATE] no such mailbox"
        if not msgs:
            return "OK nothing to copy"
        new = self.copy_to(msgs, dest)
        code = self.copyuid([m.uid for m in msgs], new, dest)
        if not move:
            write_state()
            return "OK [%s] copied" % code if self.has("UIDPLUS") else \
                "OK copied"
        if self.has("UIDPLUS"):
            self.line("* OK [%s] moved" % code)
        gone = {m.uid for m in msgs}
        with LOCK:
            self.selected.msgs = [m for m in self.selected.msgs
                                  if m.uid not in gone]
        write_state()
        self.sync_view()
        return "OK moved"

    def cmd_UID_MOVE(self, tag, args):
        self.need("MOVE", "UID MOVE")
        return self.cmd_UID_COPY(tag, args, move=True)

    def expunge(self, only=None):
        mb = self.need_selected()
        if self.readonly:
            return "NO [READ-ONLY] read-only"
        with LOCK:
            mb.msgs = [m for m in mb.msgs if "\\Deleted" not in m.flags or
                       (only is not None and m.uid not in only)]
        write_state()
        self.sync_view()
        return "OK expunged"

    def cmd_EXPUNGE(self, tag, args):
        return self.expunge()

    def cmd_UID_EXPUNGE(self, tag, args):
        self.need("UIDPLUS", "UID EXPUNGE")
        return self.expunge({m.uid for m in self.uids_in(text(args[0]))})

    def cmd_APPEND(self, tag, args):
        try:
            mb = self.mailbox(args[0])
        except KeyError:
            return "NO [TRYCREATE] no such mailbox"
        flags, date, body = [], time.time(), args[-1]
        for a in args[1:-1]:
            if isinstance(a, list):
                flags = [text(f) for f in a]
            else:
                date = parse_date(text(a))
        if not isinstance(body, Lit):
            raise Bad("APPEND needs a literal")
        with LOCK:
            m = mb.add(bytes(body), int(date), flags)
        write_state()
        if self.selected is mb:
            self.sync_view()
        if self.has("UIDPLUS"):
            return "OK [APPENDUID %d %d] appended" % (mb.uidvalidity, m.uid)
        return "OK appended"


def handle(sock):
    conn = Conn(sock)
    try:
        conn.serve()
    except (Closed, OSError):
        pass
    except Exception as e:  # a bug here must not look like a daemon bug
        log("SERVER ERROR C%d: %r" % (conn.id, e))
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="normal",
                    choices=sorted(BODY_MODES | OTHER_MODES))
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--state")
    ap.add_argument("--dump")
    ap.add_argument("--behave-file")
    ap.add_argument("--target", type=int, default=2)
    ARGS = ap.parse_args()
    seed()
    if ARGS.dump:
        dump(ARGS.dump)
    write_state()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    print("PORT=%d" % srv.getsockname()[1], flush=True)
    deadline = time.time() + ARGS.timeout
    while time.time() < deadline:
        r, _, _ = select.select([srv], [], [], 0.5)
        if not r:
            continue
        sock, _ = srv.accept()
        threading.Thread(target=handle, args=(sock,), daemon=True).start()
    log("timeout: exiting")
    os._exit(0)


if __name__ == "__main__":
    main()
