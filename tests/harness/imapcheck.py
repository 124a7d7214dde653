#!/usr/bin/env python3
"""imapcheck.py - an independent IMAP client (Python's imaplib, not imapfs)
used by the tests and scripts to see what the server really holds.

Usage:
  imapcheck.py [--host H] [--port P] [--user U] [--password PW] [--ca FILE]
               [--tls | --starttls] [--env FILE] COMMAND ARGS...

  --env FILE reads the KEY=value lines printed by dovecot.sh start (HOST,
  PORT, TLS_PORT, USER, PASSWORD, CA_FILE); explicit options override it.
  By default it connects to the plain port and uses LOGIN (loopback only);
  --starttls upgrades first and --tls connects to the TLS port given by
  --port (or TLS_PORT from --env), both verifying against --ca.

Mailbox names are given and printed in UTF-8 (encoded to modified UTF-7 on
the wire). FLAGS are one argument, space separated, e.g. '\\Seen \\Flagged'.

Commands:
  append MAILBOX FILE [FLAGS]  append FILE ('-' = stdin) byte for byte;
                               prints the new UID
  uids MAILBOX                 one UID per line, ascending
  flags MAILBOX UID            flags of UID, space separated, sorted
                               (\\Recent is left out)
  fetch MAILBOX UID            BODY.PEEK[] bytes on stdout (no \\Seen set)
  list                         one mailbox name per line, sorted (all LIST
                               returns, \\Noselect parents included)
  list-attrs                   "NAME<TAB>ATTRIBUTES" per line, sorted
  create MAILBOX / delete MAILBOX
  rename OLD NEW
  store MAILBOX UID FLAGS      replace the flags of UID
  mark-deleted MAILBOX UID     add \\Deleted to UID
  expunge MAILBOX              plain EXPUNGE
  status MAILBOX               "messages N uidnext N uidvalidity N"
  count MAILBOX                number of messages
  deleted-uids MAILBOX         UIDs flagged \\Deleted, one per line
  seen MAILBOX UID             prints "yes" or "no"
  search MAILBOX TEXT          UIDs of messages containing TEXT
  quota MAILBOX                "used limit" of STORAGE in KiB
  capability                   post-login capabilities, one per line

Exit status: 0 on success, 1 if the server refused or the UID is missing,
2 on bad usage.
"""
import argparse
import base64
import imaplib
import re
import ssl
import sys

TIMEOUT = 30


class CheckError(Exception):
    pass


def utf7_encode(name):
    """Encodes a Unicode mailbox name in IMAP modified UTF-7 (RFC 3501)."""
    out = []
    pending = []

    def flush():
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def utf7_decode(name):
    """Decodes an IMAP modified UTF-7 mailbox name to Unicode."""
    out = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise CheckError("unterminated shift in %r" % name)
        chunk = name[i + 1:end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            out.append(base64.b64decode(b64).decode("utf-16-be"))
        i = end + 1
    return "".join(out)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wire_mailbox(name):
    return quote(utf7_encode(name))


def read_env(path):
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                env[key.strip()] = value
    return env


def connect(host, port, user, password, ca=None, mode="plain"):
    """Logs in and returns an imaplib connection."""
    if mode == "tls":
        ctx = ssl.create_default_context(cafile=ca)
        conn = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx,
                                 timeout=TIMEOUT)
    else:
        conn = imaplib.IMAP4(host, int(port), timeout=TIMEOUT)
        if mode == "starttls":
            ctx = ssl.create_default_context(cafile=ca)
            conn.starttls(ssl_context=ctx)
    conn.login(user, password)
    return conn


def ok(result, what):
    typ, data = result
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes))
        raise CheckError("%s: %s %s" % (what, typ,
                                        detail.decode(errors="replace")))
    return data


def select(conn, mailbox, readonly=True):
    ok(conn.select(wire_mailbox(mailbox), readonly), "SELECT " + mailbox)


def search_uids(conn, criteria):
    data = ok(conn.uid("SEARCH", criteria), "UID SEARCH")
    uids = []
    for chunk in data:
        if chunk:
            uids.extend(int(u) for u in chunk.split())
    return sorted(uids)


def fetch_items(conn, uid, items):
    """Returns (metadata line, literal or None) pairs of FETCH responses
    that belong to UID; unsolicited ones for other messages are dropped."""
    data = ok(conn.uid("FETCH", str(uid), items), "UID FETCH")
    found = []
    for item in data:
        if item is None:
            continue
        meta, literal = (item if isinstance(item, tuple) else (item, None))
        m = re.search(rb"UID (\d+)", meta)
        if m and int(m.group(1)) == int(uid):
            found.append((meta, literal))
    if not found:
        raise CheckError("UID %s not found" % uid)
    return found


def uid_flags(conn, uid):
    for meta, _ in fetch_items(conn, uid, "(UID FLAGS)"):
        m = re.search(rb"FLAGS \(([^)]*)\)", meta)
        if m:
            # \\Recent depends on which session saw the message first.
            return sorted(f.decode() for f in m.group(1).split()
                          if f.lower() != b"\\recent")
    raise CheckError("no FLAGS for UID %s" % uid)


def flag_list(flags):
    flags = flags.strip()
    if flags.startswith("("):
        return flags
    return "(" + flags + ")"


def append(conn, mailbox, message, flags=None, date_time=None):
    """Appends exact bytes (imaplib.append would rewrite bare LFs) and
    returns the UID, from APPENDUID or, without UIDPLUS, the highest UID."""
    conn.literal = message
    args = [wire_mailbox(mailbox)]
    if flags:
        args.append(flag_list(flags))
    if date_time:
        args.append(imaplib.Time2Internaldate(date_time))
    ok(conn._simple_command("APPEND", *args), "APPEND " + mailbox)
    _, codes = conn.response("APPENDUID")
    for code in codes or []:
        if code:
            return int(code.split()[1])
    select(conn, mailbox)
    uids = search_uids(conn, "ALL")
    if not uids:
        raise CheckError("appended message not found")
    return uids[-1]


def parse_list_line(item):
    """Returns (attributes, raw still-UTF-7 name) of one LIST item."""
    head = item[0] if isinstance(item, tuple) else item
    line = head.decode("utf-8")
    m = re.match(r'\((?P<attrs>[^)]*)\) (?P<sep>NIL|"(?:[^"\\]|\\.)*") '
                 r'(?P<name>.*)$', line)
    if not m:
        raise CheckError("cannot parse LIST line %r" % line)
    if isinstance(item, tuple):
        return m.group("attrs"), item[1].decode("utf-8")
    name = m.group("name")
    if name.startswith('"'):
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    return m.group("attrs"), name


def list_with_attrs(conn):
    data = ok(conn.list('""', '"*"'), "LIST")
    found = []
    for item in data:
        if item is None or item == b")":
            continue
        attrs, name = parse_list_line(item)
        found.append((utf7_decode(name), attrs))
    return sorted(found)


def list_mailboxes(conn):
    return [name for name, _ in list_with_attrs(conn)]


def need(args, n, usage):
    if len(args) != n:
        raise SystemExit("usage: imapcheck.py " + usage)


def out_lines(values):
    for v in values:
        print(v)


def cmd_append(conn, args):
    if len(args) not in (2, 3):
        need(args, 2, "append MAILBOX FILE [FLAGS]")
    if args[1] == "-":
        message = sys.stdin.buffer.read()
    else:
        with open(args[1], "rb") as f:
            message = f.read()
    print(append(conn, args[0], message, args[2] if len(args) > 2 else None))


def cmd_uids(conn, args):
    need(args, 1, "uids MAILBOX")
    select(conn, args[0])
    out_lines(search_uids(conn, "ALL"))


def cmd_flags(conn, args):
    need(args, 2, "flags MAILBOX UID")
    select(conn, args[0])
    print(" ".join(uid_flags(conn, args[1])))


def cmd_fetch(conn, args):
    need(args, 2, "fetch MAILBOX UID")
    select(conn, args[0])
    for meta, literal in fetch_items(conn, args[1], "(UID BODY.PEEK[])"):
        if literal is not None:
            sys.stdout.buffer.write(literal)
            sys.stdout.buffer.flush()
            return
    raise CheckError("no BODY[] for UID %s" % args[1])


def cmd_list(conn, args):
    need(args, 0, "list")
    out_lines(list_mailboxes(conn))


def cmd_delimiter(conn, args):
    need(args, 0, "delimiter")
    typ, data = conn.list('""', '""')
    if typ != "OK" or not data or data[0] is None:
        raise CheckError("LIST \"\" \"\" failed: %r" % (data,))
    m = re.match(r'\([^)]*\) (NIL|"((?:[^"\\]|\\.)*)")', data[0].decode())
    if not m:
        raise CheckError("cannot parse %r" % data[0])
    print("" if m.group(1) == "NIL" else re.sub(r"\\(.)", r"\1", m.group(2)))


def cmd_list_attrs(conn, args):
    need(args, 0, "list-attrs")
    for name, attrs in list_with_attrs(conn):
        print("%s\t%s" % (name, attrs))


def cmd_create(conn, args):
    need(args, 1, "create MAILBOX")
    ok(conn.create(wire_mailbox(args[0])), "CREATE")


def cmd_delete(conn, args):
    need(args, 1, "delete MAILBOX")
    ok(conn.delete(wire_mailbox(args[0])), "DELETE")


def cmd_rename(conn, args):
    need(args, 2, "rename OLD NEW")
    ok(conn.rename(wire_mailbox(args[0]), wire_mailbox(args[1])), "RENAME")


def cmd_store(conn, args):
    need(args, 3, "store MAILBOX UID FLAGS")
    select(conn, args[0], readonly=False)
    fetch_items(conn, args[1], "(UID)")
    ok(conn.uid("STORE", args[1], "FLAGS.SILENT", flag_list(args[2])),
       "UID STORE")


def cmd_mark_deleted(conn, args):
    need(args, 2, "mark-deleted MAILBOX UID")
    select(conn, args[0], readonly=False)
    fetch_items(conn, args[1], "(UID)")
    ok(conn.uid("STORE", args[1], "+FLAGS.SILENT", "(\\Deleted)"),
       "UID STORE")


def cmd_expunge(conn, args):
    need(args, 1, "expunge MAILBOX")
    select(conn, args[0], readonly=False)
    ok(conn.expunge(), "EXPUNGE")


def status_items(conn, mailbox, items):
    data = ok(conn.status(wire_mailbox(mailbox), "(%s)" % items), "STATUS")
    line = b" ".join(d for d in data if isinstance(d, bytes)).decode()
    m = re.search(r"\(([^)]*)\)\s*$", line)
    if not m:
        raise CheckError("cannot parse STATUS %r" % line)
    words = m.group(1).split()
    return {k.upper(): int(v) for k, v in zip(words[::2], words[1::2])}


def cmd_status(conn, args):
    need(args, 1, "status MAILBOX")
    st = status_items(conn, args[0], "MESSAGES UIDNEXT UIDVALIDITY")
    print("messages %d uidnext %d uidvalidity %d" %
          (st["MESSAGES"], st["UIDNEXT"], st["UIDVALIDITY"]))


def cmd_count(conn, args):
    need(args, 1, "count MAILBOX")
    print(status_items(conn, args[0], "MESSAGES")["MESSAGES"])


def cmd_deleted_uids(conn, args):
    need(args, 1, "deleted-uids MAILBOX")
    select(conn, args[0])
    out_lines(search_uids(conn, "DELETED"))


def cmd_seen(conn, args):
    need(args, 2, "seen MAILBOX UID")
    select(conn, args[0])
    print("yes" if "\\Seen" in uid_flags(conn, args[1]) else "no")


def cmd_search(conn, args):
    need(args, 2, "search MAILBOX TEXT")
    select(conn, args[0])
    out_lines(search_uids(conn, "TEXT " + quote(args[1])))


def cmd_quota(conn, args):
    need(args, 1, "quota MAILBOX")
    typ, data = conn.getquotaroot(wire_mailbox(args[0]))
    ok((typ, data), "GETQUOTAROOT")
    for line in data[1] if len(data) > 1 else []:
        m = re.search(rb"STORAGE (\d+) (\d+)", line or b"")
        if m:
            print("%s %s" % (m.group(1).decode(), m.group(2).decode()))
            return
    raise CheckError("no STORAGE quota reported")


def cmd_capability(conn, args):
    need(args, 0, "capability")
    data = ok(conn.capability(), "CAPABILITY")
    out_lines(data[-1].decode().split())


COMMANDS = {
    "append": cmd_append,
    "uids": cmd_uids,
    "flags": cmd_flags,
    "fetch": cmd_fetch,
    "list": cmd_list,
    "delimiter": cmd_delimiter,
    "list-attrs": cmd_list_attrs,
    "create": cmd_create,
    "delete": cmd_delete,
    "rename": cmd_rename,
    "store": cmd_store,
    "mark-deleted": cmd_mark_deleted,
    "expunge": cmd_expunge,
    "status": cmd_status,
    "count": cmd_count,
    "deleted-uids": cmd_deleted_uids,
    "seen": cmd_seen,
    "search": cmd_search,
    "quota": cmd_quota,
    "capability": cmd_capability,
}


def main():
    p = argparse.ArgumentParser(
        description="Independent IMAP checker (see the module docstring).")
    p.add_argument("--env")
    p.add_argument("--host")
    p.add_argument("--port")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--ca")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tls", action="store_true")
    g.add_argument("--starttls", action="store_true")
    p.add_argument("command", choices=sorted(COMMANDS))
    p.add_argument("args", nargs="*")
    o = p.parse_args()

    env = read_env(o.env) if o.env else {}
    host = o.host or env.get("HOST", "127.0.0.1")
    port = o.port or env.get("TLS_PORT" if o.tls else "PORT")
    user = o.user or env.get("USER")
    password = o.password or env.get("PASSWORD")
    ca = o.ca or env.get("CA_FILE")
    if not port or not user or password is None:
        p.error("need --port, --user and --password (or --env)")
    mode = "tls" if o.tls else "starttls" if o.starttls else "plain"

    try:
        conn = connect(host, port, user, password, ca, mode)
        try:
            COMMANDS[o.command](conn, o.args)
        finally:
            try:
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
    except (CheckError, imaplib.IMAP4.error, OSError, ssl.SSLError) as e:
        print("imapcheck: %s: %s" % (o.command, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
