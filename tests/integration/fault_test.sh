#!/bin/bash
# fault_test.sh - imapfs must never lose or duplicate mail when connections
# die: a throwaway Dovecot is mounted through tests/tools/faultproxy while a
# background loop cuts every connection every 0.3-0.7 s (SIGUSR1), and
# ordinary tools (grep, rsync, cat, cp, mv, rm, mkdir, rmdir) work through
# the mount; also with a second server that lacks MOVE, and with
# -o reconnect=no. What the server really holds is checked with an
# independent client (imaplib, straight to the server), messages identified
# by their Message-ID.
#
#   fault_test.sh BUILDDIR SOURCEDIR
#
# IMAP_SERVER=cyrus runs the same checks against Cyrus (tests/harness/
# cyrus.sh, '.' as the hierarchy delimiter) instead of Dovecot.
#
# Prints "ok - NAME" or "FAIL - NAME: details", and ends with "N passed,
# M failed".
# Exit 0 if nothing failed, 1 if something did, 77 if it cannot run here.
# FT_OPS (default 300) is the number of operations of the stress check,
# FT_SEED its random seed (default: random, printed), FT_DELAY_MS the
# one-way delay the proxy adds (default 15) so that cuts land mid-command.
# FT_RESET=1 makes the cuts resets (RST) instead of orderly closes (FIN)
# (check_move_without_move always resets).
# FT_ONLY: see main.
# FT_DEBUG=1 runs the daemon under test in the foreground with -o debug_imap
# (log in WORK/imapfs.log) and keeps WORK. Dovecot logs every save, copy
# and expunge with its Message-ID (mail_log) in WORK/dovecot/dovecot.log
# (Cyrus logs only to syslog, so with it the stress prints no history).
#
# SC2016: single-quoted strings given to eval are meant to expand there.
# shellcheck disable=SC2016
# shellcheck source-path=SCRIPTDIR
set -u
shopt -s extglob # FT_ONLY's alternatives

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init fault "$@"
require_fuse "FUSE mounts, Dovecot"
select_imap_server
require_imapfs
require_faultproxy
require_tools python3 rsync timeout cmp grep

make_mount_workdir
MNT_REF=$WORK/mnt-ref
FT_OPS=${FT_OPS:-300}
FT_SEED=${FT_SEED:-$RANDOM$RANDOM}
FT_DELAY_MS=${FT_DELAY_MS:-15}
PROXY_PID=
STALL_PID=
DROP_PID=
CUTTER_PID=

stop_cutter()
{
	if [ -n "$CUTTER_PID" ]; then
		kill -TERM "$CUTTER_PID" 2>/dev/null
		wait "$CUTTER_PID" 2>/dev/null
		CUTTER_PID=
	fi
}

teardown()
{
	stop_cutter
	end_mounts
	stop_proxy
	[ -n "$STALL_PID" ] && kill -TERM "$STALL_PID" 2>/dev/null
	stop_imap_servers
	remove_workdir "${FT_DEBUG:+FT_DEBUG set}"
}

ft()
{
	MT_HARNESS=$HARNESS t python3 "$WORK/ft.py" "$ENVF" "$@"
}

# Problems a check found while it ran (a tool failing under the cuts),
# reported by the next check that calls unexpected_problems: so one check
# says "right bytes" and the next "no errors".
UNEXPECTED=()

unexpected()
{
	UNEXPECTED+=("$*")
}

unexpected_problems()
{
	local p
	for p in "${UNEXPECTED[@]}"; do
		fail "$p"
	done
	UNEXPECTED=()
}

# --- ft.py: seeding and the server's view by Message-ID ------------------

write_ft_py()
{
	cat >"$1" <<'PYEOF'
"""ft.py - server-side tool of fault_test.sh (imaplib, straight to the server).

  ft.py ENV seed OUTDIR      folders Work and Archive, 60 messages (some
                             ~1 MB); OUTDIR/needles lists paths with NEEDLE
  ft.py ENV where            "message-id<TAB>mailbox<TAB>uid<TAB>deleted"
  ft.py ENV make NAME FILE   writes a new message with Message-ID NAME
  ft.py ENV fill MAILBOX N PREFIX
                             appends N messages, Message-IDs PREFIX-1...
  ft.py ENV lookalike MAILBOX UID DEST
                             appends to DEST a message with UID's size and
                             INTERNALDATE but another Message-ID (printed)
  ft.py ENV stress MNT WORK OPS SEED
                             random mv/rm/cp-in through MNT; checks each
                             outcome and the whole account against a model
"""
import base64
import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.environ["MT_HARNESS"])
import imapcheck as ic  # noqa: E402
# write_mt_py puts mt.py next to this file; its run() is main() here too.
import mt  # noqa: E402

FOLDERS = ["INBOX", "Work", "Archive"]
DOMAIN = "fault-test.example"


def connect(envfile):
    e = ic.read_env(envfile)
    return ic.connect(e["HOST"], e["PORT"], e["USER"], e["PASSWORD"],
                      e["CA_FILE"], "plain")


def message(msgid, rng, size, needle=False):
    """A message of about size bytes whose Message-ID is <msgid@DOMAIN>."""
    head = ("From: Fault Test <ft@%s>\r\nTo: alice@%s\r\n"
            "Subject: message %s\r\nDate: Mon, 6 Mar 2023 10:00:00 +0000\r\n"
            "Message-ID: <%s@%s>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            % (DOMAIN, DOMAIN, msgid, msgid, DOMAIN))
    raw = base64.b64encode(rng.randbytes(max(size * 3 // 4, 30))).decode()
    assert "NEEDLE" not in raw
    lines = [raw[i:i + 76] for i in range(0, len(raw), 76)]
    if needle:
        lines.insert(rng.randrange(len(lines) + 1), "the NEEDLE is here")
    return (head + "\r\n".join(lines) + "\r\n").encode()


def cmd_seed(conn, outdir):
    rng = random.Random(42)
    for mbox in FOLDERS[1:]:
        ic.ok(conn.create(ic.wire_mailbox(mbox)), "CREATE " + mbox)
    counts = {"INBOX": 25, "Work": 20, "Archive": 15}
    big = {3, 17, 30, 44, 58}
    needles = {1, 3, 9, 22, 26, 33, 47, 58}
    n = 0
    paths = []
    for mbox in FOLDERS:
        for _ in range(counts[mbox]):
            size = 1_000_000 + rng.randrange(100_000) if n in big else \
                rng.randrange(500, 40_000)
            msg = message("ft-%04d" % n, rng, size, n in needles)
            uid = ic.append(conn, mbox, msg)
            if n in needles:
                paths.append("%s/%d.eml" % (mbox, uid))
            n += 1
    with open(os.path.join(outdir, "needles"), "w") as f:
        f.write("".join(p + "\n" for p in sorted(paths)))


MSGID_RE = re.compile(rb"Message-ID:\s*<([^>@]+)@", re.I)


def where(conn):
    """{(mailbox, uid): (msgid, deleted)} of the whole account."""
    found = {}
    for mbox in ic.list_mailboxes(conn):
        typ, data = conn.select(ic.wire_mailbox(mbox), True)
        if typ != "OK" or int(data[0]) == 0:
            continue
        data = ic.ok(conn.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK"
                              "[HEADER.FIELDS (MESSAGE-ID)])"), "FETCH")
        for item in data:
            if not isinstance(item, tuple):
                continue
            uid = re.search(rb"UID (\d+)", item[0])
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
            m = MSGID_RE.search(item[1] or b"")
            if not uid:
                continue
            deleted = bool(flags and b"\\Deleted" in flags.group(1))
            found[(mbox, int(uid.group(1)))] = (
                m.group(1).decode() if m else "?", deleted)
    return found


def cmd_where(conn):
    for (mbox, uid), (msgid, deleted) in sorted(where(conn).items()):
        print("%s\t%s\t%d\t%d" % (msgid, mbox, uid, deleted))


def cmd_make(conn, name, path):
    rng = random.Random(name)
    with open(path, "wb") as f:
        f.write(message(name, rng, rng.randrange(500, 60_000)))


def cmd_fill(conn, mailbox, n, prefix):
    for i in range(1, int(n) + 1):
        name = "%s-%d" % (prefix, i)
        rng = random.Random(name)
        ic.append(conn, mailbox, message(name, rng,
                                         rng.randrange(500, 60_000)))


def cmd_lookalike(conn, mailbox, uid, dest):
    """Appends to DEST a message of the same size and INTERNALDATE as
    MAILBOX's UID but other bytes (its Message-ID changed); prints that
    Message-ID."""
    ic.select(conn, mailbox)
    (meta, body), = [(m, b) for m, b in
                     ic.fetch_items(conn, uid, "(UID INTERNALDATE BODY.PEEK[])")
                     if b is not None]
    date = re.search(rb'INTERNALDATE ("[^"]*")', meta).group(1).decode()
    m = re.search(rb"Message-ID: <(\w)", body, re.IGNORECASE)
    first = m.group(1)
    other = b"Y" if first != b"Y" else b"Z"
    twin = body[:m.start(1)] + other + body[m.end(1):]
    ic.append(conn, dest, twin, date_time=date)
    print(MSGID_RE.search(twin).group(1).decode())
    return 0


def history(msgid):
    """What Dovecot's mail_log says happened to msgid, oldest first."""
    path = os.environ.get("FT_DOVECOT_LOG")
    if not path:
        return "?"
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "<%s@" % msgid in line:
                m = re.search(r"(imap\(.*)", line.rstrip())
                out.append(re.sub(r", msgid=<[^>]*>", "",
                                  m.group(1) if m else line.rstrip()))
    return " | ".join(out)


class Stress:
    def __init__(self, conn, mnt, work, seed):
        self.conn = conn
        self.mnt = mnt
        self.work = work
        self.rng = random.Random(seed)
        self.model = {}     # msgid -> mailbox, None once removed
        self.problems = []  # real failures
        self.troubled = []  # msgids of the problems, for their history
        self.gaps = []      # duplicates left by failed operations
        self.counts = {}
        self.errors = {}
        self.deleted_left = 0
        self.new = 0
        for mbox, msgid in self.locations_list():
            self.model[msgid] = mbox

    def locations_list(self):
        return [(mbox, msgid) for (mbox, _), (msgid, deleted)
                in where(self.conn).items() if not deleted]

    def locations(self):
        """{msgid: [(mailbox, uid)]} of messages not flagged \\Deleted."""
        out = {}
        found = where(self.conn)
        self.deleted_left = sum(1 for _, d in found.values() if d)
        for (mbox, uid), (msgid, deleted) in found.items():
            if not deleted:
                out.setdefault(msgid, []).append((mbox, uid))
        return out

    def count(self, key):
        self.counts[key] = self.counts.get(key, 0) + 1

    def run(self, argv):
        try:
            p = subprocess.run(argv, capture_output=True, timeout=90)
        except subprocess.TimeoutExpired:
            return False, "timed out"
        if p.returncode == 0:
            return True, ""
        err = p.stderr.decode(errors="replace").strip().split(": ")[-1]
        return False, err or "exit %d" % p.returncode

    def pick(self, locs):
        present = sorted(m for m, b in self.model.items()
                         if b is not None and len(locs.get(m, [])) == 1)
        return self.rng.choice(present) if present else None

    def step(self, i):
        locs = self.locations()
        r = self.rng.random()
        msgid = None
        if r < 0.45:
            msgid = self.pick(locs)
        if msgid is not None:
            src, uid = locs[msgid][0]
            dst = self.rng.choice([f for f in FOLDERS if f != src])
            kind = "mv"
            argv = ["mv", "%s/%s/%d.eml" % (self.mnt, src, uid),
                    "%s/%s/" % (self.mnt, dst)]
            allowed = [[src], [dst]]
            want = dst
        elif r < 0.65 and self.pick(locs) is not None:
            msgid = self.pick(locs)
            src, uid = locs[msgid][0]
            kind = "rm"
            argv = ["rm", "%s/%s/%d.eml" % (self.mnt, src, uid)]
            allowed = [[src], []]
            want = None
        else:
            self.new += 1
            msgid = "ft-new-%s-%04d" % (self.rng.randrange(1 << 30), i)
            path = os.path.join(self.work, msgid + ".eml")
            with open(path, "wb") as f:
                f.write(message(msgid, self.rng,
                                self.rng.randrange(500, 60_000)))
            dst = self.rng.choice(FOLDERS)
            kind = "cp"
            argv = ["cp", path, "%s/%s/" % (self.mnt, dst)]
            allowed = [[], [dst]]
            want = dst
            self.model[msgid] = None
        ok, err = self.run(argv)
        self.count(kind + (" ok" if ok else " failed"))
        if not ok:
            self.errors[err] = self.errors.get(err, 0) + 1
        self.judge(i, kind, msgid, ok, want, allowed, argv)

    def judge(self, i, kind, msgid, ok, want, allowed, argv):
        locs = self.locations()
        got = sorted(b for b, _ in locs.get(msgid, []))
        what = "op %d (%s %s, %s)" % (i, kind, msgid,
                                      "ok" if ok else "failed")
        expected = [want] if want is not None else []
        if (ok and got != expected) or (not ok and got not in [
                sorted(a) for a in allowed]):
            self.troubled.append(msgid)
        if ok and got != expected:
            self.problems.append("%s: want %s, server has %s" %
                                 (what, expected, got))
        elif not ok and got not in [sorted(a) for a in allowed]:
            if kind == "mv" and len(got) == 2 and set(got) <= set(
                    sum(allowed, [])):
                self.gaps.append("%s: left in both %s" % (what, got))
            else:
                self.problems.append("%s: may be %s, server has %s" %
                                     (what, allowed, got))
        self.model[msgid] = got[0] if len(got) == 1 else (
            None if not got else self.model[msgid])
        self.compare(locs, what)

    def compare(self, locs, when):
        """Every other message is where the model says, exactly once."""
        for msgid, mbox in sorted(self.model.items()):
            got = sorted(b for b, _ in locs.get(msgid, []))
            exp = [mbox] if mbox is not None else []
            if got != exp and not (len(got) == 2 and mbox in got and
                                   any(msgid in g for g in self.gaps)):
                self.problems.append("after %s: %s should be in %s, "
                                     "server has %s" % (when, msgid, exp,
                                                        got))
                self.troubled.append(msgid)
                # Reported once; from now on the server is the truth.
                self.model[msgid] = got[0] if len(got) == 1 else (
                    None if not got else mbox)
        for msgid in sorted(set(locs) - set(self.model)):
            self.problems.append("after %s: unknown message %s in %s" %
                                 (when, msgid, locs[msgid]))
            self.model[msgid] = locs[msgid][0][0]


def cmd_stress(conn, mnt, work, ops, seed):
    s = Stress(conn, mnt, work, int(seed))
    start = len([m for m in s.model.values() if m is not None])
    for i in range(int(ops)):
        s.step(i)
    time.sleep(1)
    s.compare(s.locations(), "the end")
    present = len([m for m in s.model.values() if m is not None])
    print("COUNTS %s" % ", ".join("%s: %d" % kv
                                  for kv in sorted(s.counts.items())))
    print("ERRORS %s" % ", ".join("%s: %d" % kv
                                  for kv in sorted(s.errors.items())))
    print("MESSAGES %d before, %d after, %d flagged \\Deleted left" %
          (start, present, s.deleted_left))
    for p in s.problems:
        print("PROBLEM " + p)
    for msgid in s.troubled:
        print("HISTORY %s: %s" % (msgid, history(msgid)))
    for g in s.gaps:
        print("GAP " + g)
    return 0


def main():
    return mt.run("ft.py", {"seed": cmd_seed, "where": cmd_where,
                            "make": cmd_make, "fill": cmd_fill,
                            "stress": cmd_stress,
                            "lookalike": cmd_lookalike}, connect)


if __name__ == "__main__":
    sys.exit(main())
PYEOF
}

# --- faults --------------------------------------------------------------

start_proxy()
{
	local line
	coproc PROXY { exec "$FAULTPROXY" --target "127.0.0.1:$S_TLS_PORT" \
		--delay-ms "$FT_DELAY_MS" ${FT_RESET:+--reset} --max-seconds 3000 \
		2>"$WORK/proxy.err"; }
	read -r -t 10 line <&"${PROXY[0]}" || line=
	case $line in
	PORT=*) PROXY_PORT=${line#PORT=} ;;
	*) return 1 ;;
	esac
}

# Cuts every connection through the proxy (CUT_PID if set, else the main
# one) every 0.3-0.7 s (CUT_MS, a random one of its numbers of ms) until
# stopped.
start_cutter()
{
	local pid=${CUT_PID:-$PROXY_PID} ms
	read -ra ms <<<"${CUT_MS:-300 400 500 600 700}"
	stop_cutter
	(
		trap 'exit 0' TERM
		while kill -USR1 "$pid" 2>/dev/null; do
			echo x >>"$WORK/cuts"
			m=${ms[RANDOM % ${#ms[@]}]}
			sleep "$((m / 1000)).$(printf %03d $((m % 1000)))"
		done
	) &
	CUTTER_PID=$!
}

stop_proxy()
{
	if [ -n "$PROXY_PID" ]; then
		kill -TERM "$PROXY_PID" 2>/dev/null
		wait "$PROXY_PID" 2>/dev/null
		PROXY_PID=
	fi
}

cut_count()
{
	[ -e "$WORK/cuts" ] && wc -l <"$WORK/cuts" || echo 0
}

# --- assertions ----------------------------------------------------------

need_mount()
{
	if [ -e "$MT_HUNG_FLAG" ]; then
		fail "skipped: an earlier command timed out (daemon hung?)"
		return 1
	fi
	if ! is_mounted "$MNT"; then
		fail "$MNT is not mounted"
		return 1
	fi
	timeout -k 2 20 stat "$MNT" >/dev/null 2>&1 && return 0
	fail "$MNT does not answer"
	return 1
}

# Message-ID<TAB>mailbox lines of the server, sorted (deleted ones left out).
server_places()
{
	ft where | awk -F'\t' '$4 == 0 { print $1 "\t" $2 }' | sort
}

# Message-ID of UID in MAILBOX on the server.
msgid_of()
{
	awk -F'\t' -v b="$1" -v u="$2" '$2 == b && $3 == u { print $1 }' \
		"$WORK/where.before"
}

# --- the checks ----------------------------------------------------------

check_seed()
{
	local n
	if ! ft seed "$WORK" >"$WORK/seed.out" 2>&1; then
		fail "seeding: $(oneline <"$WORK/seed.out")"
		return
	fi
	if ! mt dump "$REF" >"$MANIFEST" 2>"$WORK/dump.err"; then
		fail "dump: $(oneline <"$WORK/dump.err")"
		return
	fi
	n=$(wc -l <"$MANIFEST")
	[ "$n" -eq 60 ] || fail "server holds $n messages, expected 60"
	n=$(awk -F'\t' '$2 > 1000000' "$MANIFEST" | wc -l)
	[ "$n" -eq 5 ] || fail "$n messages over 1 MB, expected 5"
	[ "$(wc -l <"$WORK/needles")" -eq 8 ] || fail "expected 8 NEEDLEs"
}

check_mounts()
{
	if ! start_proxy; then
		fail "faultproxy did not start: $(oneline <"$WORK/proxy.err")"
		return
	fi
	if ! mount_imapfs "$MNT_REF" \
		"imaps://$S_USER@localhost:$S_TLS_PORT/" \
		-o "tls_ca_file=$S_CA_FILE" -o "password_file=$WORK/password"; then
		fail "reference mount: $MOUNT_ERROR"
		return
	fi
	set -- "imaps://$S_USER@localhost:$PROXY_PORT/" \
		-o "tls_ca_file=$S_CA_FILE" -o "password_file=$WORK/password" \
		-o dir_cache_timeout=1 -o timeout=20
	if [ -n "${FT_DEBUG:-}" ]; then
		mount_debug "$@"
		return
	fi
	if ! mount_imapfs "$MNT" "$@"; then
		fail "mount through the proxy: $MOUNT_ERROR"
		return
	fi
}

# Mounts MNT with the daemon in the foreground, logging the protocol.
mount_debug()
{
	local url=$1
	shift
	mkdir -p "$MNT"
	MOUNTS+=("$MNT")
	"$IMAPFS" -f "$@" -o debug_imap -o log_level=debug "$url" "$MNT" \
		</dev/null >"$WORK/imapfs.log" 2>&1 &
	wait_for 10 is_mounted "$MNT" ||
		fail "debug mount: $(oneline <"$WORK/imapfs.log")"
}

check_grep()
{
	local ref got rc unread
	need_mount || return
	ref=$(cd "$MNT_REF" && t grep -rl NEEDLE . 2>&1)
	same_list "grep in the fault-free mount vs the seed" \
		"$(sed 's|^|./|' "$WORK/needles")" "$ref"
	unmount_imapfs "$MNT_REF"
	start_cutter
	got=$(cd "$MNT" && MT_TIMEOUT=$((MT_TIMEOUT * 3)) t grep -rl NEEDLE . \
		2>"$WORK/grep.err")
	rc=$?
	stop_cutter
	# Files grep could not read may be missing from its list (that is
	# reported by the next check); any other difference is wrong data.
	[ $rc -eq 0 ] || unexpected "grep exit $rc: $(oneline <"$WORK/grep.err")"
	unread=$(sed -n 's/^grep: \(.*\): Input\/output error$/\1/p' \
		"$WORK/grep.err")
	same_list "grep -rl under cuts (files read)" \
		"$(without_paths "$unread" <<<"$ref")" \
		"$(without_paths "$unread" <<<"$got")"
}

# Filters out of stdin the paths listed in $1 and everything below them.
without_paths()
{
	awk -v list="$1" 'BEGIN { n = split(list, skip, "\n") }
	{
		for (i = 1; i <= n; i++)
			if (skip[i] != "" && ($0 == skip[i] ||
			    index($0, skip[i] "/") == 1))
				next
		print
	}'
}

check_rsync()
{
	local out unread bad
	need_mount || return
	start_cutter
	out=$(MT_TIMEOUT=$((MT_TIMEOUT * 4)) t rsync -a "$MNT/" \
		"$WORK/backup/" 2>&1) || unexpected "rsync: $(oneline <<<"$out")"
	stop_cutter
	# Files rsync reported it could not read may be missing (reported by
	# the next check); everything it copied must be byte-identical.
	unread=$(grep -oE '"[^"]*"\)?: Input/output error' <<<"$out" |
		sed -nE 's|^"'"$MNT"'/(.*)"\)?: .*|missing \1|p')
	MT_TIMEOUT=$((MT_TIMEOUT * 4)) mt verify-tree "$WORK/backup" \
		>"$WORK/verify.out" 2>&1
	bad=$(without_paths "$unread" <"$WORK/verify.out")
	[ -z "$bad" ] || fail "backup differs from the server: $(oneline \
		<<<"$bad")"
}

check_cat()
{
	local path bad=0 n=0
	need_mount || return
	start_cutter
	while IFS=$'\t' read -r -u 3 path _; do
		n=$((n + 1))
		if ! t cat "$MNT/$path" >"$WORK/cat.got" 2>"$WORK/cat.err"; then
			unexpected "cat $path: $(oneline <"$WORK/cat.err")"
			bad=$((bad + 1))
		elif ! cmp -s "$REF/$path" "$WORK/cat.got"; then
			fail "cat $path: $(stat -c %s "$WORK/cat.got") bytes" \
				"differ from the server's"
			bad=$((bad + 1))
		fi
	done 3<"$MANIFEST"
	stop_cutter
	[ "$n" -eq 60 ] || fail "read $n messages, expected 60"
	echo "# cat: $n messages, $bad failed or wrong, $(cut_count) cuts so far"
}

check_cp()
{
	local i f name files=() before after new out failed=(none)
	need_mount || return
	for i in $(seq 1 12); do
		name=ft-cp-$i
		ft make "$name" "$WORK/$name.eml" || fail "make $name"
		files+=("$WORK/$name.eml")
	done
	server_places >"$WORK/places.before"
	start_cutter
	for f in "${files[@]}"; do
		if ! out=$(t cp "$f" "$MNT/INBOX/" 2>&1); then
			unexpected "cp $(basename "$f"): $(oneline <<<"$out")"
			failed+=("$(basename "$f" .eml)")
		fi
	done
	stop_cutter
	server_places >"$WORK/places.after"
	# The 12 new messages, once each, in INBOX (one whose cp failed may
	# be absent); nothing else changed.
	new=$(comm -13 "$WORK/places.before" "$WORK/places.after" |
		grep -vFf <(printf '%s\t\n' "${failed[@]}"))
	before=$(for i in $(seq 1 12); do printf 'ft-cp-%s\tINBOX\n' "$i"
	done | grep -vFf <(printf '%s\t\n' "${failed[@]}"))
	same_list "new messages on the server" "$before" "$new"
	after=$(comm -23 "$WORK/places.before" "$WORK/places.after")
	[ -z "$after" ] || fail "messages gone: $(oneline <<<"$after")"
	for f in "${files[@]}"; do
		name=$(basename "$f" .eml)
		[ "$(grep -c "^$name	" "$WORK/places.after")" -le 1 ] ||
			fail "$name is on the server" \
				"$(grep -c "^$name	" "$WORK/places.after") times"
	done
}

# mv_batch SRC DST N: moves the first N messages of SRC to DST under cuts;
# each must end up exactly once in DST.
mv_batch()
{
	local src=$1 dst=$2 n=$3 uid id ids=() okids=() out
	ft where >"$WORK/where.before"
	server_places >"$WORK/places.before"
	start_cutter
	for uid in $(awk -F'\t' -v b="$src" '$2 == b && $4 == 0 { print $3 }' \
		"$WORK/where.before" | head -n "$n"); do
		id=$(msgid_of "$src" "$uid")
		ids+=("$id")
		if out=$(t mv "$MNT/$src/$uid.eml" "$MNT/$dst/" 2>&1); then
			okids+=("$id")
		else
			unexpected "mv $src/$uid.eml ($id): $(oneline <<<"$out")"
		fi
	done
	stop_cutter
	server_places >"$WORK/places.after"
	# A moved message is in dst exactly once; one whose mv failed is in
	# src or in dst, exactly once.
	for id in "${ids[@]}"; do
		out=$(awk -F'\t' -v i="$id" '$1 == i { print $2 }' \
			"$WORK/places.after" | tr '\n' ' ')
		if [[ " ${okids[*]} " == *" $id "* ]]; then
			[ "$out" = "$dst " ] ||
				fail "$id moved $src->$dst is in [${out% }]"
		elif [ "$out" != "$dst " ] && [ "$out" != "$src " ]; then
			fail "$id (mv $src->$dst failed) is in [${out% }]"
		fi
	done
	# Nothing but the moved messages changed.
	out=$(diff <(grep -vFf <(printf '%s\t\n' "${ids[@]}") \
		"$WORK/places.before") <(grep -vFf <(printf '%s\t\n' \
		"${ids[@]}") "$WORK/places.after"))
	[ -z "$out" ] || fail "other messages changed: $(oneline <<<"$out")"
}

check_mv()
{
	need_mount || return
	mv_batch INBOX Work 8
	mv_batch Work Archive 8
}

check_rm()
{
	local uid id ids=() okids=() out
	need_mount || return
	ft where >"$WORK/where.before"
	server_places >"$WORK/places.before"
	start_cutter
	for uid in $(awk -F'\t' '$2 == "Archive" && $4 == 0 { print $3 }' \
		"$WORK/where.before" | tail -n 8); do
		id=$(msgid_of Archive "$uid")
		ids+=("$id")
		if out=$(t rm "$MNT/Archive/$uid.eml" 2>&1); then
			okids+=("$id")
		else
			unexpected "rm Archive/$uid.eml ($id): $(oneline <<<"$out")"
		fi
	done
	stop_cutter
	server_places >"$WORK/places.after"
	# Removed messages are gone; one whose rm failed may still be there,
	# once, in Archive.
	for id in "${ids[@]}"; do
		out=$(awk -F'\t' -v i="$id" '$1 == i { print $2 }' \
			"$WORK/places.after" | tr '\n' ' ')
		if [[ " ${okids[*]} " == *" $id "* ]]; then
			[ -z "$out" ] || fail "$id still on the server after rm"
		elif [ -n "$out" ] && [ "$out" != "Archive " ]; then
			fail "$id (rm failed) is in [${out% }]"
		fi
	done
	out=$(comm -3 <(grep -vFf <(printf '%s\t\n' "${ids[@]}") \
		"$WORK/places.before") <(grep -vFf <(printf '%s\t\n' \
		"${ids[@]}") "$WORK/places.after"))
	[ -z "$out" ] || fail "other messages changed: $(oneline <<<"$out")"
}

# --- folders under cuts --------------------------------------------------

# The server's folders, one per line, sorted, with '/' between levels
# whatever the server's delimiter ('.' on Cyrus).
server_folders()
{
	ic list | tr "$S_DELIMITER" / | LC_ALL=C sort
}

# Folder lists (newline-separated, sorted) as a folder operation leaves
# them: FOLDERS with NAME added, NAME (and what is below it) removed, or
# FROM (and what is below it) renamed TO.
folders_plus()
{
	printf '%s\n%s\n' "$FOLDERS" "$1" | grep -v '^$' | LC_ALL=C sort
}

folders_minus()
{
	awk -v n="$1" '$0 != n && index($0, n "/") != 1' <<<"$FOLDERS"
}

folders_renamed()
{
	awk -v a="$1" -v b="$2" '
		$0 == a { print b; next }
		index($0, a "/") == 1 { print b substr($0, length(a) + 1); next }
		{ print }' <<<"$FOLDERS" | LC_ALL=C sort
}

# folder_op AFTER COMMAND...: runs COMMAND (mkdir, mv or rmdir through the
# mount, under cuts). Then the server must hold exactly the folders AFTER,
# or, if COMMAND failed (reported by the next check), those it held
# before (FOLDERS). FOLDERS becomes what the server holds.
folder_op()
{
	local after=$1 out got label
	shift
	label=${*//"$MNT/"/}
	if out=$(t "$@" 2>&1); then
		got=$(server_folders)
		[ "$got" = "$after" ] || fail "$label: the server has" \
			"[$(tr '\n' ' ' <<<"$got")], want [$(tr '\n' ' ' \
			<<<"$after")]"
	else
		unexpected "$label: $(oneline <<<"$out")"
		got=$(server_folders)
		[ "$got" = "$after" ] || [ "$got" = "$FOLDERS" ] ||
			fail "$label failed and the server has [$(tr '\n' ' ' \
				<<<"$got")]"
	fi
	FOLDERS=$got
}

# CREATE, RENAME and DELETE are not idempotent: after a cut the daemon
# must find out whether its command took effect before it sends it again.
# mkdir, mv of folders (one holding messages, one with a subfolder, one
# into another folder) and rmdir, each under cuts: the server ends with
# exactly the expected folders, and the messages of the renamed folder in
# its new place, once each.
check_folders()
{
	local start want ids out
	need_mount || return
	start=$(server_folders)
	FOLDERS=$start
	start_cutter
	folder_op "$(folders_plus ft-d1)" mkdir "$MNT/ft-d1"
	folder_op "$(folders_plus ft-d2)" mkdir "$MNT/ft-d2"
	folder_op "$(folders_plus ft-d3)" mkdir "$MNT/ft-d3"
	folder_op "$(folders_plus ft-d1/sub)" mkdir "$MNT/ft-d1/sub"
	if ! ft fill ft-d2 3 ft-dir >/dev/null; then
		fail "ft.py fill ft-d2 failed"
		stop_cutter
		return
	fi
	server_places >"$WORK/places.before"
	# A connection has the folder selected when it is renamed.
	names_in "$MNT/ft-d2" >/dev/null
	folder_op "$(folders_renamed ft-d2 ft-r2)" mv "$MNT/ft-d2" "$MNT/ft-r2"
	folder_op "$(folders_renamed ft-d1 ft-r1)" mv "$MNT/ft-d1" "$MNT/ft-r1"
	folder_op "$(folders_renamed ft-d3 Work/ft-d3)" mv "$MNT/ft-d3" \
		"$MNT/Work/"
	folder_op "$(folders_minus ft-r1/sub)" rmdir "$MNT/ft-r1/sub"
	folder_op "$(folders_minus ft-r1)" rmdir "$MNT/ft-r1"
	folder_op "$(folders_plus ft-d4)" mkdir "$MNT/ft-d4"
	folder_op "$(folders_minus ft-d4)" rmdir "$MNT/ft-d4"
	stop_cutter
	want=$(printf '%s\nft-r2\nWork/ft-d3\n' "$start" | LC_ALL=C sort)
	same_list "folders on the server" "$want" "$(server_folders)"
	server_places >"$WORK/places.after"
	ids=$(printf 'ft-dir-%s\tft-r2\n' 1 2 3)
	same_list "messages of the renamed folder" "$ids" \
		"$(grep '^ft-dir-' "$WORK/places.after")"
	out=$(diff <(grep -v '^ft-dir-' "$WORK/places.before") \
		<(grep -v '^ft-dir-' "$WORK/places.after"))
	[ -z "$out" ] || fail "other messages changed: $(oneline <<<"$out")"
	# The mount shows what the server has.
	want=$(grep -v / <<<"$want")
	wait_for 5 eval '[ "$(names_in "$MNT")" = "$want" ]' ||
		same_list "ls of the mount's top" "$want" "$(names_in "$MNT")"
	wait_for 5 eval '[ "$(eml_names "$MNT/ft-r2" | wc -l)" = 3 ]' ||
		fail "ls ft-r2: $(names_in "$MNT/ft-r2" | oneline)"
}

# start_side_proxy NAME PORT [faultproxy options...]: another faultproxy,
# to 127.0.0.1:PORT, for one check; sets SIDE_PID and SIDE_PORT.
# first_line FILE: the first line a proxy writes to FILE ("PORT=N"), once it
# is there (up to 5 s); empty if it never comes.
first_line()
{
	local i line
	for i in $(seq 1 50); do
		line=$(head -n 1 "$1")
		[ -n "$line" ] && break
		sleep 0.1
	done
	printf '%s' "$line"
}

start_side_proxy()
{
	local name=$1 port=$2 line
	shift 2
	"$FAULTPROXY" --target "127.0.0.1:$port" --max-seconds 600 "$@" \
		>"$WORK/$name.out" 2>"$WORK/$name.err" &
	SIDE_PID=$!
	BG_PIDS+=("$SIDE_PID")
	line=$(first_line "$WORK/$name.out")
	SIDE_PORT=${line#PORT=}
	[ -n "$line" ] || fail "faultproxy did not start: $(oneline \
		<"$WORK/$name.err")"
}

stop_side_proxy()
{
	kill -TERM "$SIDE_PID" 2>/dev/null
	wait "$SIDE_PID" 2>/dev/null
}

# mount_via_dropproxy NAME MNT PORT USER PASSWORD_FILE [dropproxy.py
# options...] [-- imapfs options...]: starts tests/harness/dropproxy.py to
# 127.0.0.1:PORT (plain IMAP; its output in WORK/NAME.out and NAME.err)
# and mounts MNT through it with timeout=5, so that the daemon soon gives
# up on the answer the proxy swallows. Sets DROP_PID; on failure says why
# and stops the proxy.
mount_via_dropproxy()
{
	local name=$1 mnt=$2 port=$3 user=$4 pwfile=$5 line opts=()
	shift 5
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		opts+=("$1")
		shift
	done
	[ $# -gt 0 ] && shift
	python3 "$HARNESS/dropproxy.py" --target "127.0.0.1:$port" \
		--max-seconds 300 "${opts[@]}" >"$WORK/$name.out" \
		2>"$WORK/$name.err" &
	DROP_PID=$!
	BG_PIDS+=("$DROP_PID")
	line=$(first_line "$WORK/$name.out")
	if [ -z "$line" ]; then
		fail "dropproxy.py did not start: $(oneline <"$WORK/$name.err")"
	elif mount_imapfs "$mnt" "imap://$user@localhost:${line#PORT=}/" \
		-o allow_plaintext -o "password_file=$pwfile" -o timeout=5 "$@"; then
		return 0
	else
		fail "mount through dropproxy.py: $MOUNT_ERROR"
	fi
	stop_dropproxy
	return 1
}

# mv_until_dropped NAME MNT DST WHAT: moves, in the background, the first
# message of INBOX not flagged \Deleted from MNT to MNT/DST, through the
# dropproxy.py that mount_via_dropproxy NAME started, and waits until the
# proxy has dropped the command it was told to (WHAT names it in the
# failure). Sets MV_UID, MV_ID (the message's id for ft.py) and MV_PID; the
# mv's stderr goes to WORK/NAME.mv.
mv_until_dropped()
{
	local name=$1 mnt=$2 dst=$3 what=$4
	ft where >"$WORK/where.before"
	MV_UID=$(awk -F'\t' '$2 == "INBOX" && $4 == 0 { print $3; exit }' \
		"$WORK/where.before")
	MV_ID=$(msgid_of INBOX "$MV_UID")
	names_in "$mnt/$dst" >/dev/null
	t mv "$mnt/INBOX/$MV_UID.eml" "$mnt/$dst/" 2>"$WORK/$name.mv" &
	MV_PID=$!
	wait_for 10 grep -q DROPPED "$WORK/$name.out" && return 0
	fail "the proxy saw no $what"
	return 1
}

stop_dropproxy()
{
	kill -TERM "$DROP_PID" 2>/dev/null
	wait "$DROP_PID" 2>/dev/null
}

# The server without MOVE. Dovecot is given its whole capability list
# (FT_NOMOVE_CAPS: e.g. also without UIDPLUS). Cyrus cannot be: it is told
# which capabilities to leave out (FT_NOMOVE_SUPPRESS, e.g. "MOVE
# UIDPLUS"); it still accepts a MOVE command, but the daemon only goes by
# what is advertised, and check_move_without_move's dropproxy sees which
# commands it sends.
case $IMAP_SERVER in
dovecot)
	NOMOVE_OPTS=(--capability "${FT_NOMOVE_CAPS:-IMAP4rev1 LITERAL+ UIDPLUS ENABLE IDLE ESEARCH CONDSTORE QRESYNC}")
	;;
cyrus)
	NOMOVE_OPTS=(--suppress-capabilities "${FT_NOMOVE_SUPPRESS:-MOVE}")
	;;
esac

# Without MOVE, mv is a COPY and then the expunge of the original once the
# copy is confirmed; cut in between, the check on the new connection must
# finish the move, not copy again. A second server that does not offer
# MOVE: mv under cuts, and mv with the cut at the worst moment (also while
# another client makes the source folder again).
check_move_without_move()
{
	local dir=$WORK/dovecot-nomove ENVF=$WORK/nomove.env user ca port pport
	if ! start_imap_server "$dir" "$ENVF" "${NOMOVE_OPTS[@]}"; then
		fail "$IMAP_SERVER without MOVE did not start: $SERVER_ERROR"
		return
	fi
	user=$S_USER
	ca=$S_CA_FILE
	port=$S_TLS_PORT
	pport=$S_PORT
	write_password "$WORK/nomove.password"
	read_server_env "$WORK/server.env"
	if ic capability | grep -qx MOVE; then
		fail "the second server offers MOVE"
	elif ! ic create Work >/dev/null ||
		! ft fill INBOX 10 ft-nomove >/dev/null; then
		fail "seeding the server without MOVE failed"
	else
		nomove_under_cuts
		nomove_cut_before_expunge
		nomove_source_recreated
	fi
	stop_imap_server "$dir"
}

# mv INBOX -> Work through a proxy that resets (RST, whatever FT_RESET
# says, so that a run has both kinds of cut) every connection: each message
# exactly once, in Work (or in INBOX if its mv failed). Cuts come less
# often than on the main proxy: without MOVE, the check after a cut
# (SEARCH, and FETCH of both copies when the original is still there)
# takes several round trips on a fresh connection, and cut every 0.3-0.7 s
# a mv then takes up to a minute.
nomove_under_cuts()
{
	local MNT=$WORK/mnt-nomove CUT_PID CUT_MS="600 800 1000 1200"
	start_side_proxy nomove "$port" --delay-ms "$FT_DELAY_MS" --reset ||
		return
	CUT_PID=$SIDE_PID
	if mount_imapfs "$MNT" "imaps://$user@localhost:$SIDE_PORT/" \
		-o "tls_ca_file=$ca" -o "password_file=$WORK/nomove.password" \
		-o dir_cache_timeout=1 -o timeout=20; then
		names_in "$MNT/Work" >/dev/null
		mv_batch INBOX Work 7
		unmount_imapfs "$MNT"
	else
		fail "mount: $MOUNT_ERROR"
	fi
	stop_side_proxy
}

# The cut at the worst moment, every time: the COPY has landed and the UID
# EXPUNGE of the original never reaches the server (dropproxy.py cuts
# there, and refuses connections until SIGUSR1). The check on the new
# connection must find the copy and expunge the original: once, in Work.
nomove_cut_before_expunge()
{
	local mnt=$WORK/mnt-nomove-drop id places
	mount_via_dropproxy nmdrop "$mnt" "$pport" "$user" \
		"$WORK/nomove.password" --drop '^\S+ (UID )?EXPUNGE' || return
	mv_until_dropped nmdrop "$mnt" Work "UID EXPUNGE"
	id=$MV_ID
	kill -USR1 "$DROP_PID"
	wait "$MV_PID" || fail "mv failed: $(oneline <"$WORK/nmdrop.mv")"
	# Counted with copies flagged \Deleted: the original must be gone.
	places=$(ft where | awk -F'\t' -v i="$id" '$1 == i {
		print $2 ($4 ? " (\\Deleted)" : "") }')
	[ "$places" = Work ] || fail "$id (cut before its EXPUNGE) is in" \
		"[$(oneline <<<"$places")], want [Work]"
	unmount_imapfs "$mnt"
	stop_dropproxy
}

# The same cut before the EXPUNGE, while another client deletes the
# source folder and creates it again with the same message, which gets the
# moved one's UID under a new UIDVALIDITY: the move is complete (the
# original went with the old folder) and the new copy is another message,
# so it stays.
nomove_source_recreated()
{
	local mnt=$WORK/mnt-nomove-again msg=$WORK/again.eml pid v1 v2 n
	printf '%s\r\n' 'Message-ID: <again@ft>' 'Subject: again' '' \
		'moved while its folder was made again' >"$msg"
	if ! ic create ft-again >/dev/null ||
		! ic append ft-again "$msg" >/dev/null; then
		fail "seeding ft-again failed"
		return
	fi
	v1=$(ic status ft-again | awk '{ print $6 }')
	mount_via_dropproxy nmagain "$mnt" "$pport" "$user" \
		"$WORK/nomove.password" --drop '^\S+ (UID )?EXPUNGE' || return
	names_in "$mnt/Work" >/dev/null
	[ "$(names_in "$mnt/ft-again")" = 1.eml ] ||
		fail "ft-again lists [$(names_in "$mnt/ft-again" | oneline)]"
	t mv "$mnt/ft-again/1.eml" "$mnt/Work/" 2>"$WORK/nmagain.mv" &
	pid=$!
	if wait_for 10 grep -q DROPPED "$WORK/nmagain.out"; then
		{ ic delete ft-again && ic create ft-again &&
			ic append ft-again "$msg"; } >/dev/null ||
			fail "making ft-again again failed"
		v2=$(ic status ft-again | awk '{ print $6 }')
		[ "$v1" != "$v2" ] || fail "UIDVALIDITY stayed $v1"
	else
		fail "the proxy saw no EXPUNGE"
	fi
	kill -USR1 "$DROP_PID"
	wait "$pid" || fail "mv failed: $(oneline <"$WORK/nmagain.mv")"
	n=$(ic count ft-again)
	[ "$n" = 1 ] || fail "ft-again holds $n messages, want the new one"
	n=$(ic search Work 'moved while its folder' | wc -l)
	[ "$n" -eq 1 ] || fail "Work holds $n copies of the moved message"
	unmount_imapfs "$mnt"
	stop_dropproxy
	ic delete ft-again >/dev/null
}

# -o reconnect=no: a read cut mid-body (this proxy cuts each connection
# after 200 kB from the server) fails at once with EIO and a log line,
# without a retry; the next read, on a new connection, works.
check_no_reconnect()
{
	local mnt=$WORK/mnt-noretry log=$WORK/noretry.log pid big small uid
	big=$(awk -F'\t' '$2 > 1000000 { print $1; exit }' "$MANIFEST")
	small=$(awk -F'\t' '$2 < 20000 { print $1; exit }' "$MANIFEST")
	start_side_proxy noretry "$S_TLS_PORT" --cut-every 200000 || return
	mkdir -p "$mnt"
	MOUNTS+=("$mnt")
	"$IMAPFS" -f -o "tls_ca_file=$S_CA_FILE" \
		-o "password_file=$WORK/password" -o reconnect=no \
		-o log_level=info "imaps://$S_USER@localhost:$SIDE_PORT/" \
		"$mnt" </dev/null >/dev/null 2>"$log" &
	pid=$!
	BG_PIDS+=("$pid")
	if wait_for 10 is_mounted "$mnt"; then
		expect_error "cat $big, cut after 200 kB" \
			'Input/output error' t cat "$mnt/$big"
		! grep -q retrying "$log" ||
			fail "the daemon retried: $(grep -m1 retrying "$log")"
		uid=${big##*/}
		grep -qE "^imapfs: warning: read ${big%/*} UID ${uid%.eml} failed \(Input/output error\): " \
			"$log" || fail "no log line for the failed read:" \
			"$(oneline <"$log")"
		t cat "$mnt/$small" >"$WORK/noretry.got" 2>&1
		same_bytes "cat $small after the failed read" "$REF/$small" \
			"$WORK/noretry.got"
		t fusermount3 -u "$mnt"
		wait_gone 5 "$pid" || fail "the daemon is still running"
	else
		fail "not mounted: $(oneline <"$log")"
	fi
	stop_side_proxy
	grep -qE ' [1-9][0-9]* cut$' "$WORK/noretry.err" ||
		fail "the proxy cut nothing: $(oneline <"$WORK/noretry.err")"
}

# Whether ls DIR shows exactly the server's UIDS (newline-separated).
lists_uids()
{
	[ "$(names_in "$1" | grep '\.eml$' | sed 's/\.eml$//' | sort)" = \
		"$(sort <<<"$2")" ]
}

# Polls ls DIR every SECONDS (longer than dir_cache_timeout: a directory
# listed more often than that may not be refreshed at all) up to 3 times
# until it shows UIDS.
wait_listing()
{
	local dir=$1 uids=$2 secs=$3 i
	for i in 1 2 3; do
		lists_uids "$dir" "$uids" && return 0
		sleep "$secs"
	done
	lists_uids "$dir" "$uids"
}

# The mount, once faults stop, lists what the server holds.
check_listing()
{
	local box uids
	need_mount || return
	for box in INBOX Work Archive; do
		uids=$(ic uids "$box")
		wait_listing "$MNT/$box" "$uids" 1.5 ||
			same_list "ls $box vs server" \
				"$(awk '{ print $0 ".eml" }' <<<"$uids")" \
				"$(names_in "$MNT/$box")"
	done
}

# No faults needed: another client adds a message to Work, then, before
# the mount refreshes Work, a mv into Work inserts its COPYUID locally. The
# next refresh must still show the other client's message.
check_added_before_local_insert()
{
	local mnt=$WORK/mnt-sync uid other dst_uids
	if ! mount_imapfs "$mnt" "imaps://$S_USER@localhost:$S_TLS_PORT/" \
		-o "tls_ca_file=$S_CA_FILE" -o "password_file=$WORK/password" \
		-o dir_cache_timeout=3; then
		fail "$MOUNT_ERROR"
		return
	fi
	names_in "$mnt/Work" >/dev/null
	uid=$(ic uids INBOX | sed -n 1p)
	ft make ft-other "$WORK/ft-other.eml" || fail "ft.py make failed"
	other=$(ic append Work "$WORK/ft-other.eml") ||
		fail "append by the other client failed"
	expect_ok "mv INBOX/$uid.eml Work/" t mv "$mnt/INBOX/$uid.eml" \
		"$mnt/Work/"
	dst_uids=$(ic uids Work)
	sleep 4
	if ! wait_listing "$mnt/Work" "$dst_uids" 4; then
		same_list "ls Work vs server (other client's UID $other)" \
			"$(awk '{ print $0 ".eml" }' <<<"$dst_uids")" \
			"$(names_in "$mnt/Work" | grep '\.eml$')"
	fi
	unmount_imapfs "$mnt"
}

# The server stores an upload but its answer is lost, and then it is out
# of reach until the cp has failed: the retry when the folder is next
# listed must find the copy that arrived, not send a second one, even when
# the listing was refreshed (and holds that copy) in between.
check_lost_append_answer()
{
	local mnt=$WORK/mnt-drop n
	mount_via_dropproxy drop "$mnt" "$S_PORT" "$S_USER" \
		"$WORK/password" -- -o dir_cache_timeout=1 || return
	names_in "$mnt/INBOX" >/dev/null
	ft make ft-lost-answer "$WORK/ft-lost-answer.eml" || fail "ft.py make"
	if t cp "$WORK/ft-lost-answer.eml" "$mnt/INBOX/" 2>"$WORK/drop.cp"; then
		fail "cp succeeded although the server was out of reach"
	fi
	n=$(server_places | grep -c '^ft-lost-answer	INBOX$')
	[ "$n" -eq 1 ] || fail "after the lost answer the server has $n copies"
	kill -USR1 "$DROP_PID"
	sleep 2
	# A lookup refreshes the listing, which now holds the arrived copy.
	stat "$mnt/INBOX/no-such-message.eml" >/dev/null 2>&1
	names_in "$mnt/INBOX" >/dev/null
	names_in "$mnt/INBOX" >/dev/null
	n=$(server_places | grep -c '^ft-lost-answer	INBOX$')
	[ "$n" -eq 1 ] || fail "after the retry the server has $n copies"
	names_in "$mnt/INBOX" | grep -q '^ft-lost-answer.eml$\|^[0-9]*\.eml$' ||
		fail "nothing listed in INBOX"
	unmount_imapfs "$mnt"
	stop_dropproxy
}

# A move whose command never reached the server (the proxy drops UID MOVE
# and cuts), while another client puts a message of the same size and
# INTERNALDATE into the destination: the check after reconnecting must not
# take that one for the moved copy and expunge the original.
check_move_lookalike()
{
	local mnt=$WORK/mnt-twin id twin places
	mount_via_dropproxy twin "$mnt" "$S_PORT" "$S_USER" \
		"$WORK/password" --drop '^\S+ UID MOVE ' || return
	mv_until_dropped twin "$mnt" Archive "UID MOVE"
	id=$MV_ID
	twin=$(ft lookalike INBOX "$MV_UID" Archive) || fail "ft.py lookalike"
	kill -USR1 "$DROP_PID"
	wait "$MV_PID" || fail "mv failed: $(oneline <"$WORK/twin.mv")"
	places=$(server_places)
	[ "$(grep -c "^$id	" <<<"$places")" -eq 1 ] ||
		fail "$id is on the server $(grep -c "^$id	" <<<"$places") times"
	grep -q "^$id	Archive$" <<<"$places" ||
		fail "$id is not in Archive: $(grep "^$id	" <<<"$places")"
	grep -q "^$twin	Archive$" <<<"$places" ||
		fail "the other client's $twin is gone from Archive"
	unmount_imapfs "$mnt"
	stop_dropproxy
}

# rmdir of an empty folder whose DELETE never reached the server (the
# proxy drops it and cuts), while another client delivers a message into
# the folder: IMAP's DELETE takes the messages with it, so the retry must
# count them again and refuse, leaving the folder and the message.
check_rmdir_refilled()
{
	local mnt=$WORK/mnt-refill pid
	ic create ft-refill >/dev/null || {
		fail "creating ft-refill failed"
		return
	}
	mount_via_dropproxy refill "$mnt" "$S_PORT" "$S_USER" \
		"$WORK/password" --drop '^\S+ DELETE ' || return
	[ -z "$(names_in "$mnt/ft-refill")" ] || fail "ft-refill is not empty"
	t rmdir "$mnt/ft-refill" 2>"$WORK/refill.rmdir" &
	pid=$!
	if wait_for 10 grep -q DROPPED "$WORK/refill.out"; then
		printf 'Subject: refill\r\n\r\ndelivered during rmdir\r\n' |
			ic append ft-refill - >/dev/null ||
			fail "delivering into ft-refill failed"
	else
		fail "the proxy saw no DELETE"
	fi
	kill -USR1 "$DROP_PID"
	if wait "$pid"; then
		fail "rmdir succeeded on a folder holding a message"
	else
		grep -q 'Directory not empty' "$WORK/refill.rmdir" ||
			fail "rmdir: $(oneline <"$WORK/refill.rmdir"), want" \
				"Directory not empty"
	fi
	server_folders | grep -qx ft-refill || fail "ft-refill is gone"
	[ "$(ic count ft-refill 2>/dev/null)" = 1 ] ||
		fail "ft-refill holds $(ic count ft-refill 2>&1) messages, want 1"
	unmount_imapfs "$mnt"
	stop_dropproxy
	ic delete ft-refill >/dev/null
}

# make_folder_again FOLDER UID FILE: creates FOLDER (just deleted) and
# fills it until FILE, appended last, gets UID; fails if it cannot.
make_folder_again()
{
	local box=$1 uid=$2 file=$3 next got
	ic create "$box" >/dev/null || {
		fail "creating $box again failed"
		return 1
	}
	next=$(ic status "$box" | awk '{ print $4 }')
	while [ -n "$next" ] && [ "$next" -lt "$uid" ]; do
		printf 'Subject: filler\r\n\r\nfiller\r\n' |
			ic append "$box" - >/dev/null || break
		next=$(ic status "$box" | awk '{ print $4 }')
	done
	got=$(ic append "$box" "$file")
	[ "$got" = "$uid" ] || {
		fail "$box made again gave UID ${got:-none}, want $uid"
		return 1
	}
}

# rm_while_folder_goes HOW: rm of a message, cut before its UID EXPUNGE
# (the message is already flagged \Deleted). Meanwhile another client
# deletes the folder and, with HOW "again", creates it again with another
# message under the same UID (a new UIDVALIDITY). The removed message went
# with the old folder: rm succeeds, and the new message stays.
rm_while_folder_goes()
{
	local how=$1 box=ft-rm$1 mnt=$WORK/mnt-rm$1 msg=$WORK/rm$1.eml
	local pid uid v1 v2 n
	printf '%s\r\n' "Message-ID: <rm$how@ft>" 'Subject: rm' '' \
		"removed while its folder went ($how)" >"$msg"
	# Not UID 1: a folder made again may go on counting UIDs where the
	# old one stopped (Dovecot sometimes does), but starts below 6.
	if ! ic create "$box" >/dev/null ||
		! ft fill "$box" 5 "rm$how" >/dev/null ||
		! uid=$(ic append "$box" "$msg"); then
		fail "seeding $box failed"
		return
	fi
	v1=$(ic status "$box" | awk '{ print $6 }')
	mount_via_dropproxy "rm$how" "$mnt" "$S_PORT" "$S_USER" \
		"$WORK/password" --drop '^\S+ (UID )?EXPUNGE' || return
	names_in "$mnt/$box" | grep -qx "$uid.eml" ||
		fail "$box lists [$(names_in "$mnt/$box" | oneline)]"
	t rm "$mnt/$box/$uid.eml" 2>"$WORK/rm$how.rm" &
	pid=$!
	if ! wait_for 10 grep -q DROPPED "$WORK/rm$how.out"; then
		fail "the proxy saw no EXPUNGE"
	elif ! ic delete "$box" >/dev/null; then
		fail "deleting $box failed"
	elif [ "$how" = again ] && make_folder_again "$box" "$uid" "$msg"; then
		v2=$(ic status "$box" | awk '{ print $6 }')
		[ -n "$v2" ] && [ "$v1" != "$v2" ] ||
			fail "UIDVALIDITY was $v1, is ${v2:-unknown}"
	fi
	kill -USR1 "$DROP_PID"
	wait "$pid" || fail "rm ($how) failed: $(oneline <"$WORK/rm$how.rm")"
	if [ "$how" = again ]; then
		n=$(ic search "$box" "removed while its folder went")
		[ "$n" = "$uid" ] ||
			fail "$box holds the new message at [$(oneline <<<"$n")]," \
				"want $uid"
		n=$(ic flags "$box" "$uid")
		[[ $n != *Deleted* ]] || fail "the new message is flagged $n"
		ic delete "$box" >/dev/null
	else
		server_folders | grep -qx "$box" && fail "$box is back"
	fi
	unmount_imapfs "$mnt"
	stop_dropproxy
}

check_rm_folder_gone()
{
	rm_while_folder_goes again
	rm_while_folder_goes gone
}

# A server that stops answering mid-response (every connection stalls
# after 300 kB): reads must end within the daemon's timeout, with the right
# bytes or an error, and the mount must go on working.
check_stall()
{
	local mnt=$WORK/mnt-stall pid line port small big t0 secs i f outcome
	"$FAULTPROXY" --target "127.0.0.1:$S_TLS_PORT" --stall-after 300000 \
		--max-seconds 600 >"$WORK/stall.out" 2>/dev/null &
	pid=$!
	STALL_PID=$pid
	line=$(first_line "$WORK/stall.out")
	port=${line#PORT=}
	if ! mount_imapfs "$mnt" "imaps://$S_USER@localhost:$port/" \
		-o "tls_ca_file=$S_CA_FILE" -o "password_file=$WORK/password" \
		-o timeout=5; then
		fail "$MOUNT_ERROR"
		return
	fi
	small=$(awk -F'\t' '$2 < 20000 { print $1; exit }' "$MANIFEST")
	big=$(awk -F'\t' '$2 > 1000000 { print $1; exit }' "$MANIFEST")
	for f in "$small" "$big" "$small"; do
		t0=$(date +%s)
		if t cat "$mnt/$f" >"$WORK/stall.got" 2>"$WORK/stall.err"; then
			cmp -s "$REF/$f" "$WORK/stall.got" ||
				fail "cat $f through a stalling server: wrong bytes"
			outcome="read, right bytes"
		else
			[ "$f" = "$small" ] &&
				fail "cat $f: $(oneline <"$WORK/stall.err")"
			outcome="error: $(oneline <"$WORK/stall.err")"
		fi
		secs=$(($(date +%s) - t0))
		echo "# stall: cat $f ($(stat -c %s "$REF/$f") bytes): $secs s," \
			"${outcome:0:120}"
		# Hung for good is a failure; a read that fails must do so
		# within four timeouts (a timeout, one retry, its timeout).
		[ "$secs" -lt "$MT_TIMEOUT" ] ||
			fail "cat $f hung ($secs s, timeout=5)"
		[ "$secs" -le 20 ] || unexpected "cat $f took $secs s (timeout=5)"
	done
	unmount_imapfs "$mnt"
	# A hang here says nothing about the main mount.
	rm -f "$MT_HUNG_FLAG"
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	STALL_PID=
}

STRESS_OUT=

check_stress()
{
	local line
	need_mount || return
	mkdir -p "$WORK/stress"
	echo "# stress: $FT_OPS operations, seed $FT_SEED (FT_SEED=...)"
	start_cutter
	STRESS_OUT=$(FT_DOVECOT_LOG=$DOVECOT_LOG \
		MT_TIMEOUT=$((FT_OPS * 10 + 120)) ft stress "$MNT" \
		"$WORK/stress" "$FT_OPS" "$FT_SEED" 2>&1)
	stop_cutter
	while IFS= read -r line; do
		case $line in
		COUNTS* | ERRORS* | MESSAGES*) echo "# $line" ;;
		PROBLEM*) fail "${line#PROBLEM }" ;;
		HISTORY*) echo "# $line" ;;
		GAP*) ;;
		*) fail "ft.py: $line" ;;
		esac
	done <<<"$STRESS_OUT"
}

# A failed mv must not leave the message in both folders (after a cut the
# daemon checks where it is before it moves again).
check_stress_duplicates()
{
	local line
	while IFS= read -r line; do
		case $line in
		GAP*) fail "${line#GAP }" ;;
		esac
	done <<<"$STRESS_OUT"
}

check_unmount()
{
	local pids
	pids=$(imapfs_pids_for "$MNT")
	t fusermount3 -u "$MNT" 2>/dev/null || fail "fusermount3 -u failed"
	# shellcheck disable=SC2086
	if [ -n "$pids" ] && ! wait_gone 5 $pids; then
		fail "imapfs (pid $pids) still running 5 s after unmount"
	fi
	is_mounted "$MNT" && fail "$MNT still mounted"
}

# --- main ----------------------------------------------------------------

# FT_ONLY=PATTERN (a case pattern such as 'check_cp|check_stall') runs only
# the matching checks, besides seeding and mounting: for debugging.
if [ -n "${FT_ONLY:-}" ]; then
	eval "$(declare -f run_check | sed '1s/run_check/run_every_check/')"
	run_check()
	{
		# shellcheck disable=SC2254 # FT_ONLY is a pattern
		case $2 in
		check_seed | check_mounts | check_sanitizer_reports | @($FT_ONLY))
			run_every_check "$@"
			;;
		esac
	}
fi

write_mt_py "$WORK/mt.py"
write_ft_py "$WORK/ft.py"
# For the stress's history of a troubled message: Dovecot's mail_log. Cyrus
# has no counterpart outside syslog (auditlog), which a test cannot count on.
SERVER_OPTS=()
DOVECOT_LOG=
if [ "$IMAP_SERVER" = dovecot ]; then
	cat >"$WORK/extra.conf" <<'EOF'
mail_plugins = $mail_plugins mail_log notify
plugin {
  mail_log_events = delete undelete expunge copy save mailbox_delete
  mail_log_fields = uid box msgid
}
EOF
	SERVER_OPTS=(--extra-conf "$WORK/extra.conf")
	DOVECOT_LOG=$DOVE/dovecot.log
fi
start_main_server "$DOVE" "$ENVF" "${SERVER_OPTS[@]}"
echo "# server: $IMAP_SERVER, delimiter '$S_DELIMITER'"
write_password "$WORK/password"

run_check "seed the server" check_seed
run_check "mount through faultproxy" check_mounts
if [ "$FAILED" -ne 0 ]; then
	cleanup
	echo "Bail out! cannot set up"
	echo "$PASSED passed, $FAILED failed"
	exit 1
fi
run_check "grep -rl NEEDLE under cuts: right files" check_grep
run_check "grep -rl NEEDLE under cuts: no read errors" unexpected_problems
run_check "rsync under cuts: what it copied is byte-identical" check_rsync
run_check "rsync under cuts: no read errors" unexpected_problems
run_check "cat of every message under cuts: right bytes" check_cat
run_check "cat of every message under cuts: no errors" unexpected_problems
run_check "reconnect=no: a cut read fails with EIO, no retry" \
	check_no_reconnect
run_check "cp in under cuts: each message at most once" check_cp
run_check "cp in under cuts: every cp succeeds" unexpected_problems
run_check "mv between folders under cuts: once, in src or dst" check_mv
run_check "mv between folders under cuts: every mv succeeds" \
	unexpected_problems
run_check "rm under cuts: removed or still there once" check_rm
run_check "rm under cuts: every rm succeeds" unexpected_problems
run_check "mkdir, mv and rmdir of folders under cuts: exact folders" \
	check_folders
run_check "mkdir, mv and rmdir of folders under cuts: all succeed" \
	unexpected_problems
run_check "listings match the server after cuts" check_listing
run_check "no faults: a UID added elsewhere survives a local mv in" \
	check_added_before_local_insert
run_check "an APPEND whose answer was lost is not sent twice" \
	check_lost_append_answer
run_check "a move cut before it reached the server, with a look-alike" \
	check_move_lookalike
run_check "rmdir cut before DELETE, a message delivered meanwhile: kept" \
	check_rmdir_refilled
run_check "rm cut before its EXPUNGE, the folder deleted or made again: done, new message kept" \
	check_rm_folder_gone
run_check "mv without MOVE (COPY, EXPUNGE), under cuts, cut before the EXPUNGE, source made again: once" \
	check_move_without_move
run_check "mv without MOVE (COPY, EXPUNGE) under cuts: every mv succeeds" \
	unexpected_problems
run_check "a stalling server: reads end, right bytes, mount recovers" \
	check_stall
run_check "a stalling server: a read fails within 4 timeouts" \
	unexpected_problems
run_check "stress: random mv/rm/cp under cuts, nothing lost" check_stress
run_check "stress: no duplicate left by a failed mv" \
	check_stress_duplicates
run_check "listings match the server after the stress" check_listing
run_check "unmount" check_unmount
stop_proxy
echo "# $(cut_count) cut signals sent; proxy: $(oneline \
	<"$WORK/proxy.err" 2>/dev/null)"

cleanup
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
