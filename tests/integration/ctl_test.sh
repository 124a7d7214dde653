#!/bin/bash
# ctl_test.sh - `imapfs status` and `imapfs prefetch` against a real Dovecot
# (or Cyrus, with IMAP_SERVER=cyrus) and real mounts: status names every mailbox with the server's message
# counts, when and how each was last synced, follows the body cache, and
# tells connected from reconnecting, unreachable and offline; prefetch
# caches every body of a folder tree (readable with the server gone, byte
# for byte, never \Seen), skips what is cached, stops on SIGINT and
# resumes, prints periodic lines when not on a terminal and a progress bar
# on one, refuses a tree larger than cache_size, and both fail clearly
# outside an imapfs mount.
#
#   ctl_test.sh BUILDDIR SOURCEDIR
#
# Prints "ok - NAME" / "FAIL - NAME: details", then "N passed, M failed";
# exits 77 where it cannot run (not root, no /dev/fuse, no server).
# shellcheck source-path=SCRIPTDIR
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init ctl "$@"
require_fuse "FUSE mounts, Dovecot"
select_imap_server
command -v getfattr >/dev/null || skip "getfattr (attr) is not installed"
require_imapfs
require_faultproxy

make_workdir
SERVER_DIR=$WORK/server
ENVF=$WORK/server.env
MNT=$WORK/mnt   # the main mount, straight to the server
SLOW=$WORK/slow # through faultproxy, with latency
TINY=$WORK/tiny # cache_size far below the Slow folder
VIA=$WORK/via   # through faultproxy, to cut and refuse connections
SYNC=$WORK/sync # every listing synced again
OFF=$WORK/off   # -o offline, on VIA's cache
REF=$WORK/ref   # the server's bytes of every message
PROXY_PID=
# Messages in Slow: enough batches that a prefetch through the proxy's
# latency spans several seconds (see check_interrupt_resume).
SLOW_COUNT=300

teardown()
{
	end_mounts
	if [ -n "$PROXY_PID" ]; then
		kill -TERM "$PROXY_PID" 2>/dev/null
		wait "$PROXY_PID" 2>/dev/null
	fi
	stop_imap_servers
	remove_workdir
}

srv() { t python3 "$WORK/srv.py" "$HARNESS" "$ENVF" "$@"; }

# mount_lib.sh's ic, with the mailbox (first argument) written with '/' as
# on the mount and translated to the server's delimiter (Cyrus: '.').
ic()
{
	local cmd=$1
	shift
	[ $# -ge 1 ] && set -- "${1//\//$S_DELIMITER}" "${@:2}"
	t python3 "$HARNESS/imapcheck.py" --env "$ENVF" "$cmd" "$@"
}
imapfs() { t "$IMAPFS" "$@"; }

# srv.py - the server's side of the checks, through imaplib.
write_srv_py()
{
	cat >"$1" <<'PYEOF'
"""srv.py HARNESS ENV COMMAND ...

  seed SLOW_COUNT        folders INBOX, Archive, Archive/2023, Slow, Empty
  dump DIR               BODY.PEEK[] of every message to DIR/MBOX/UID.eml
  seen                   "MBOX UID" of every message flagged \\Seen
  check-status FILE      FILE (imapfs status --json) lists exactly the
                         selectable mailboxes with the server's counts
  check-cached FILE MBOX...  in FILE every MBOX has all bodies cached
Mailbox names are written with "/", whatever the server's delimiter;
imapfs status --json names them as the server does (Cyrus: "Archive.2023").
"""
import imaplib
import json
import os
import re
import sys

sys.path.insert(0, sys.argv[1])
import imapcheck as ic  # noqa: E402


# The server's hierarchy delimiter (Cyrus's harness: ".").
DELIM = "/"


def connect(envfile):
    e = ic.read_env(envfile)
    return ic.connect(e["HOST"], e["PORT"], e["USER"], e["PASSWORD"],
                      e["CA_FILE"], "plain")


def wire(mbox):
    return mbox.replace("/", DELIM)


def selectable(conn):
    return sorted(n.replace(DELIM, "/") for n, a in ic.list_with_attrs(conn)
                  if "\\noselect" not in a.lower()
                  and "\\nonexistent" not in a.lower())


def uids(conn, mbox):
    ic.select(conn, wire(mbox))
    return ic.search_uids(conn, "ALL")


def seed(conn, slow_count):
    for mbox in ["Archive", "Archive/2023", "Slow", "Empty"]:
        ic.ok(conn.create(ic.wire_mailbox(wire(mbox))), "CREATE " + mbox)
    plan = [("INBOX", 12, 2000), ("Archive", 20, 5000),
            ("Archive/2023", 15, 30000), ("Slow", int(slow_count), 3000)]
    caps = ic.ok(conn.capability(), "CAPABILITY")[0].decode().split()
    for mbox, n, size in plan:
        msgs = []
        for i in range(n):
            text = ("%s message %d " % (mbox, i)) * (size // 24 + i)
            msgs.append(("From: a@example.org\r\nSubject: %s %d\r\n"
                         "Message-ID: <%s-%d@ctl-test>\r\n\r\n%s\r\n"
                         % (mbox, i, mbox.replace("/", "-"), i,
                            text)).encode())
        if "MULTIAPPEND" in caps and "LITERAL+" in caps:
            # One APPEND of all (RFC 3502): Cyrus syncs each APPEND to
            # disk, which makes single ones take half a minute here.
            tag = conn._new_tag()
            conn.send(tag + b" APPEND " + ic.wire_mailbox(wire(mbox))
                      .encode() + b"".join(
                          b" %s {%d+}\r\n%s"
                          % (imaplib.Time2Internaldate(1600000000 + i)
                             .encode(), len(m), m)
                          for i, m in enumerate(msgs)) + b"\r\n")
            ic.ok(conn._get_tagged_response(tag), "MULTIAPPEND " + mbox)
        else:
            for i, m in enumerate(msgs):
                ic.append(conn, wire(mbox), m, None, 1600000000 + i)


def dump(conn, top):
    for mbox in selectable(conn):
        os.makedirs(os.path.join(top, mbox), exist_ok=True)
        for uid in uids(conn, mbox):
            for _, lit in ic.fetch_items(conn, uid, "(UID BODY.PEEK[])"):
                if lit is not None:
                    with open(os.path.join(top, mbox, "%s.eml" % uid),
                              "wb") as f:
                        f.write(lit)


def seen(conn):
    for mbox in selectable(conn):
        ic.select(conn, wire(mbox))
        for uid in ic.search_uids(conn, "SEEN"):
            print(mbox, uid)


def status_mailboxes(path):
    with open(path) as f:
        st = json.load(f)
    return st, {m["name"]: m for m in st["mailboxes"]}


def check_status(conn, path):
    st, shown = status_mailboxes(path)
    problems = []
    server = selectable(conn)
    if sorted(shown) != sorted(wire(m) for m in server):
        problems.append("status lists %s, the server has %s"
                        % (sorted(shown), server))
    for mbox in server:
        n = len(uids(conn, mbox))
        m = shown.get(wire(mbox), {})
        if m.get("messages") != n:
            problems.append("%s: status says %s messages, server %d"
                            % (mbox, m.get("messages"), n))
        if not m.get("uidvalidity"):
            problems.append("%s: no UIDVALIDITY" % mbox)
    if st["mailboxes_total"] != len(server):
        problems.append("mailboxes_total %s" % st["mailboxes_total"])
    print("; ".join(problems))
    return 1 if problems else 0


def check_cached(path, mboxes):
    _, shown = status_mailboxes(path)
    problems = []
    for mbox in mboxes:
        m = shown.get(wire(mbox))
        if m is None:
            problems.append("%s not in the status" % mbox)
        elif m.get("bodies_cached") != m.get("messages"):
            problems.append("%s: %s of %s bodies cached"
                            % (mbox, m.get("bodies_cached"),
                               m.get("messages")))
    print("; ".join(problems))
    return 1 if problems else 0


def main():
    global DELIM
    envfile, cmd, args = sys.argv[2], sys.argv[3], sys.argv[4:]
    DELIM = ic.read_env(envfile).get("DELIMITER") or "/"
    if cmd == "check-cached":
        return check_cached(args[0], args[1:])
    conn = connect(envfile)
    try:
        if cmd == "seed":
            return seed(conn, args[0]) or 0
        if cmd == "dump":
            return dump(conn, args[0]) or 0
        if cmd == "seen":
            return seen(conn) or 0
        if cmd == "check-status":
            return check_status(conn, args[0])
        print("unknown command " + cmd, file=sys.stderr)
        return 2
    finally:
        conn.logout()


if __name__ == "__main__":
    sys.exit(main())
PYEOF
}

start_server()
{
	start_imap_server "$SERVER_DIR" "$ENVF" || return 1
	write_password "$WORK/password"
}

# mount_at MNT PORT CACHEDIR [options...]
mount_at()
{
	local mnt=$1 port=$2 cache=$3
	shift 3
	mount_imapfs "$mnt" "imaps://$S_USER@$S_CERT_NAME:$port/" \
		-o "password_file=$WORK/password" -o "tls_ca_file=$S_CA_FILE" \
		-o "cache_dir=$cache" "$@" || {
		fail "mount $mnt: $MOUNT_ERROR"
		return 1
	}
}

start_proxy()
{
	local line
	coproc PROXY { exec "$FAULTPROXY" --target "127.0.0.1:$S_TLS_PORT" \
		--delay-ms 150 --max-seconds 3000 2>"$WORK/proxy.err"; }
	read -r -t 10 line <&"${PROXY[0]}" || line=
	case $line in
	PORT=*) PROXY_PORT=${line#PORT=} ;;
	*) return 1 ;;
	esac
}

status_json() { imapfs status --json "$1" >"$2" 2>"$WORK/status.err"; }

# json FILE EXPR: a value of the JSON in FILE (EXPR in Python, as j).
json()
{
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# mbox_field FILE MBOX KEY: KEY of MBOX's entry in a status --json FILE.
mbox_field()
{
	python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
print(*[m.get(sys.argv[3]) for m in j["mailboxes"] if m["name"] == sys.argv[2]])' "$@"
}

# A mailbox ('/'-separated, as on the mount) as imapfs status --json names
# it: as the server does, with its delimiter. (The table shows the mount's
# names.)
sname() { printf '%s' "${1//\//$S_DELIMITER}"; }

# "N fetched now" and "N were cached already" of a prefetch summary.
fetched_now() { sed -n 's/.* \([0-9][0-9]*\) fetched now.*/\1/p' "$1" | tail -1; }
cached_before() { sed -n 's/.* \([0-9][0-9]*\) were cached already.*/\1/p' "$1" | tail -1; }

# --- checks --------------------------------------------------------------

check_setup()
{
	srv seed "$SLOW_COUNT" || fail "seeding the server"
	[ "$(ic count Slow)" = "$SLOW_COUNT" ] ||
		fail "Slow holds $(ic count Slow)"
	srv dump "$REF" || fail "dumping the server's messages"
	mount_at "$MNT" "$S_TLS_PORT" "$WORK/cache" || return
	start_proxy || fail "faultproxy did not start: $(oneline <"$WORK/proxy.err")"
}

check_status_counts()
{
	local m n t0 t1 at when
	# Listing each folder is what loads it; then counts must be exact.
	t0=$(date +%s)
	for m in INBOX Archive Archive/2023 Slow Empty; do
		ls "$MNT/$m" >/dev/null || fail "ls $m"
	done
	status_json "$MNT" "$WORK/st1.json" ||
		{ fail "status --json: $(oneline <"$WORK/status.err")"; return; }
	t1=$(date +%s)
	srv check-status "$WORK/st1.json" >"$WORK/check" ||
		fail "$(oneline <"$WORK/check")"
	[ "$(json "$WORK/st1.json" 'j["cache"]["mode"]')" = full ] ||
		fail "cache mode $(json "$WORK/st1.json" 'j["cache"]["mode"]')"
	[ "$(json "$WORK/st1.json" 'j["cache"]["dir"]')" = "$WORK/cache" ] ||
		fail "cache dir $(json "$WORK/st1.json" 'j["cache"]["dir"]')"
	[ "$(json "$WORK/st1.json" 'j["mountpoint"]')" = "$MNT" ] ||
		fail "mountpoint $(json "$WORK/st1.json" 'j["mountpoint"]')"
	[ "$(json "$WORK/st1.json" 'j["connection"]["state"]')" = connected ] ||
		fail "connection $(json "$WORK/st1.json" 'j["connection"]')"
	# The table for people: every mailbox, named as on the mount, with its
	# count.
	imapfs status "$MNT" >"$WORK/table" 2>"$WORK/status.err" ||
		fail "status: $(oneline <"$WORK/status.err")"
	for m in INBOX Archive Archive/2023 Slow Empty; do
		grep -qE "^$m +$(ic count "$m") " "$WORK/table" ||
			fail "table has no line '$m $(ic count "$m")': $(oneline <"$WORK/table")"
	done
	# Last sync per mailbox: this session's first look at each, so a full
	# UID FETCH, between the first ls and the status; the table shows the
	# same time (local) and how.
	for m in INBOX Archive Archive/2023 Slow Empty; do
		n=$(sname "$m")
		at=$(mbox_field "$WORK/st1.json" "$n" synced_at)
		[ "$(mbox_field "$WORK/st1.json" "$n" sync)" = full ] ||
			fail "$m: last sync by '$(mbox_field "$WORK/st1.json" "$n" sync)', not full"
		case $at in
		'' | *[!0-9]*) fail "$m: synced_at '$at'"; continue ;;
		esac
		[ "$at" -ge "$t0" ] && [ "$at" -le "$t1" ] ||
			fail "$m: synced_at $at outside $t0..$t1"
		when=$(date -d "@$at" '+%Y-%m-%d %H:%M:%S')
		grep -qE "^$m +[0-9]+ +[0-9]+  $when  full " "$WORK/table" ||
			fail "table has no '$m ... $when  full': $(grep -F "$m " "$WORK/table" | oneline)"
	done
	grep -q "^Account: *$S_USER@$S_CERT_NAME:$S_TLS_PORT" "$WORK/table" ||
		fail "no account line: $(head -3 "$WORK/table" | oneline)"
}

check_status_follows_cache()
{
	local uid before after bytes0 bytes1 size
	uid=$(ic uids INBOX | sed -n 3p)
	status_json "$MNT" "$WORK/st-a.json" || { fail "status"; return; }
	cat "$MNT/INBOX/$uid.eml" >/dev/null || fail "cat INBOX/$uid.eml"
	status_json "$MNT" "$WORK/st-b.json" || { fail "status"; return; }
	before=$(json "$WORK/st-a.json" 'j["cache"]["bodies"]')
	after=$(json "$WORK/st-b.json" 'j["cache"]["bodies"]')
	[ "$after" = $((before + 1)) ] ||
		fail "cached bodies went from $before to $after after one read"
	bytes0=$(json "$WORK/st-a.json" 'j["cache"]["bytes"]')
	bytes1=$(json "$WORK/st-b.json" 'j["cache"]["bytes"]')
	size=$(stat -c %s "$REF/INBOX/$uid.eml")
	[ "$bytes1" = $((bytes0 + size)) ] ||
		fail "cache bytes went from $bytes0 to $bytes1, message is $size"
	before=$(json "$WORK/st-a.json" '[m for m in j["mailboxes"] if m["name"] == "INBOX"][0]["bodies_cached"]')
	after=$(json "$WORK/st-b.json" '[m for m in j["mailboxes"] if m["name"] == "INBOX"][0]["bodies_cached"]')
	[ "$after" = $((before + 1)) ] ||
		fail "INBOX bodies_cached went from $before to $after"
}

check_prefetch_folder()
{
	local n
	n=$(($(ic count Archive) + $(ic count Archive/2023)))
	imapfs prefetch "$MNT/Archive" >"$WORK/pf1.out" 2>"$WORK/pf1.err" ||
		fail "prefetch Archive exited $?: $(oneline <"$WORK/pf1.err")"
	[ "$(fetched_now "$WORK/pf1.out")" = "$n" ] ||
		fail "fetched $(fetched_now "$WORK/pf1.out") of $n: $(oneline <"$WORK/pf1.out")"
	status_json "$MNT" "$WORK/st2.json" || { fail "status"; return; }
	srv check-cached "$WORK/st2.json" Archive Archive/2023 >"$WORK/check" ||
		fail "$(oneline <"$WORK/check")"
	# Not the rest: Slow was not asked for.
	[ "$(json "$WORK/st2.json" '[m for m in j["mailboxes"] if m["name"] == "Slow"][0]["bodies_cached"]')" = 0 ] ||
		fail "prefetch of Archive cached bodies of Slow"
	srv seen >"$WORK/seen" || fail "seen"
	[ -s "$WORK/seen" ] && fail "messages now \\Seen: $(oneline <"$WORK/seen")"
	# Again: everything is cached, nothing is fetched.
	imapfs prefetch "$MNT/Archive" >"$WORK/pf2.out" 2>"$WORK/pf2.err" ||
		fail "second prefetch exited $?: $(oneline <"$WORK/pf2.err")"
	[ "$(fetched_now "$WORK/pf2.out")" = 0 ] &&
		[ "$(cached_before "$WORK/pf2.out")" = "$n" ] ||
		fail "second prefetch: $(oneline <"$WORK/pf2.out")"
}

# Through the proxy's latency the Slow folder takes several seconds (each
# of its ~10 batches waits for at least two delayed round trips), so the
# signal lands mid-way and the output has periodic lines.
check_interrupt_resume()
{
	local pid rc i v n1 n2 c2 lines
	mount_at "$SLOW" "$PROXY_PORT" "$WORK/cache-slow" || return
	"$IMAPFS" prefetch "$SLOW/Slow" >"$WORK/int1.out" 2>"$WORK/int1.err" &
	pid=$!
	for i in $(seq 1 600); do
		v=$(getfattr --only-values -n user.imapfs.prefetch "$SLOW/Slow" 2>/dev/null)
		case $v in
		*'"messages_fetched":0,'* | '') sleep 0.1 ;;
		*) break ;;
		esac
	done
	kill -INT "$pid"
	wait "$pid"
	rc=$?
	[ "$rc" -ne 0 ] || fail "interrupted prefetch exited 0: $(oneline <"$WORK/int1.out")"
	grep -q "interrupted" "$WORK/int1.err" ||
		fail "no 'interrupted' message: $(oneline <"$WORK/int1.err")"
	n1=$(fetched_now "$WORK/int1.out")
	[ -n "$n1" ] && [ "$n1" -gt 0 ] && [ "$n1" -lt "$SLOW_COUNT" ] ||
		{ fail "interrupted run fetched '$n1' of $SLOW_COUNT: $(oneline <"$WORK/int1.out")"; return; }
	getfattr --only-values -n user.imapfs.prefetch "$SLOW/Slow" 2>/dev/null |
		grep -q '"state":"cancelled"' ||
		fail "the daemon's job was not cancelled: $(getfattr --only-values -n user.imapfs.prefetch "$SLOW/Slow" 2>&1 | oneline)"
	imapfs prefetch "$SLOW/Slow" >"$WORK/int2.out" 2>"$WORK/int2.err" ||
		fail "resumed prefetch exited $?: $(oneline <"$WORK/int2.err")"
	n2=$(fetched_now "$WORK/int2.out")
	c2=$(cached_before "$WORK/int2.out")
	[ "$c2" = "$n1" ] && [ "$n2" = $((SLOW_COUNT - n1)) ] ||
		fail "resume: $c2 cached already and $n2 fetched, after $n1 of $SLOW_COUNT"
	# Not a terminal: progress lines every 2 s, then the summary.
	lines=$(cat "$WORK/int1.out" "$WORK/int2.out" |
		grep -cE '^prefetch Slow: (listing|fetching), [0-9]+/[0-9]+ messages')
	[ "$lines" -ge 1 ] ||
		fail "no periodic progress lines: $(oneline <"$WORK/int2.out")"
	grep -q $'\r\|\033' "$WORK/int1.out" "$WORK/int2.out" &&
		fail "terminal control characters in non-terminal output"
	status_json "$SLOW" "$WORK/st3.json" || { fail "status"; return; }
	srv check-cached "$WORK/st3.json" Slow >"$WORK/check" ||
		fail "$(oneline <"$WORK/check")"
	unmount_imapfs "$SLOW"
}

check_prefetch_root()
{
	imapfs prefetch "$MNT" >"$WORK/root.out" 2>"$WORK/root.err" ||
		fail "prefetch of the root exited $?: $(oneline <"$WORK/root.err")"
	grep -q "(all folders): done" "$WORK/root.out" ||
		fail "summary: $(oneline <"$WORK/root.out")"
	status_json "$MNT" "$WORK/st4.json" || { fail "status"; return; }
	srv check-cached "$WORK/st4.json" INBOX Archive Archive/2023 Slow Empty \
		>"$WORK/check" || fail "$(oneline <"$WORK/check")"
	srv seen >"$WORK/seen" || fail "seen"
	[ -s "$WORK/seen" ] && fail "messages now \\Seen: $(oneline <"$WORK/seen")"
	return 0
}

check_too_big()
{
	mount_at "$TINY" "$S_TLS_PORT" "$WORK/cache-tiny" -o cache_size=100K ||
		return
	imapfs prefetch "$TINY/Slow" >"$WORK/big.out" 2>"$WORK/big.err" &&
		fail "prefetch of a folder larger than cache_size exited 0"
	grep -q "cache_size" "$WORK/big.err" ||
		fail "no word of cache_size: $(oneline <"$WORK/big.err")"
	status_json "$TINY" "$WORK/st5.json" || { fail "status"; return; }
	[ "$(json "$WORK/st5.json" 'j["cache"]["bodies"]')" = 0 ] ||
		fail "bodies were fetched anyway"
	unmount_imapfs "$TINY"
}

# With dir_cache_timeout=0 each listing syncs again; the status says how:
# full the first time, "status" when STATUS shows no change, qresync after
# a new message. No IDLE, or the watcher could take in the new message
# first and leave the listing nothing to do.
check_sync_kinds()
{
	local s1 s3
	mount_at "$SYNC" "$S_TLS_PORT" "$WORK/cache-sync" -o dir_cache_timeout=0 \
		-o no_watch -o max_conns=1 || return
	ls "$SYNC/Empty" >/dev/null || fail "ls Empty"
	status_json "$SYNC" "$WORK/sk1.json" || { fail "status"; return; }
	[ "$(mbox_field "$WORK/sk1.json" Empty sync)" = full ] ||
		fail "first sync of Empty by '$(mbox_field "$WORK/sk1.json" Empty sync)'"
	ls "$SYNC/Empty" >/dev/null || fail "ls Empty again"
	status_json "$SYNC" "$WORK/sk2.json" || { fail "status"; return; }
	[ "$(mbox_field "$WORK/sk2.json" Empty sync)" = status ] ||
		fail "unchanged Empty synced by '$(mbox_field "$WORK/sk2.json" Empty sync)'"
	printf 'Subject: new\r\n\r\nnew\r\n' | ic append Empty - >/dev/null ||
		fail "append to Empty"
	[ "$(ls "$SYNC/Empty" | wc -l)" = 1 ] || fail "ls Empty: $(ls "$SYNC/Empty" | oneline)"
	status_json "$SYNC" "$WORK/sk3.json" || { fail "status"; return; }
	[ "$(mbox_field "$WORK/sk3.json" Empty sync)" = qresync ] &&
		[ "$(mbox_field "$WORK/sk3.json" Empty messages)" = 1 ] ||
		fail "after a new message: $(json "$WORK/sk3.json" '[m for m in j["mailboxes"] if m["name"] == "Empty"]')"
	s1=$(mbox_field "$WORK/sk1.json" Empty synced_at)
	s3=$(mbox_field "$WORK/sk3.json" Empty synced_at)
	[ "$s3" -ge "$s1" ] 2>/dev/null || fail "synced_at went from $s1 to $s3"
	imapfs status "$SYNC" >"$WORK/table" 2>"$WORK/status.err" ||
		fail "status: $(oneline <"$WORK/status.err")"
	grep -qE "^Empty +1 +[0-9]+  [0-9-]+ [0-9:]+  qresync " "$WORK/table" ||
		fail "table: $(grep '^Empty ' "$WORK/table" | oneline)"
	unmount_imapfs "$SYNC"
}

# On a terminal prefetch redraws one line: "\r[###---] DONE/TOTAL msgs
# BYTES  RATE/s, ETA M:SS" cleared to its end, and after the last one
# (every message done, the bar full) a newline and the summary. Through
# the proxy's latency the fetch takes well over the 0.2 s below which no
# rate is shown.
check_prefetch_tty()
{
	local n
	n=$(ic count Archive/2023)
	# Few connections: with MNT's six, Dovecot allows ten per user.
	mount_at "$VIA" "$PROXY_PORT" "$WORK/cache-via" -o max_conns=2 \
		-o no_watch || return
	t script -qec "$(printf '%q prefetch %q' "$IMAPFS" "$VIA/Archive/2023")" \
		/dev/null </dev/null >"$WORK/tty.out" 2>&1 ||
		fail "prefetch under a pty exited $?: $(oneline <"$WORK/tty.out")"
	python3 - "$WORK/tty.out" "$n" >"$WORK/check" <<'PYEOF' ||
import re
import sys

out = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
n = sys.argv[2]
# GLib puts a no-break space between a size and its unit.
size = r"[0-9.]+[ \u00a0](?:bytes|[KMG]iB)"
bar = re.compile(r"\r\[([#-]+)\] (\d+)/(\d+) msgs  (%s)  (%s/s, ETA \d+:\d\d|"
                 r"--[ \u00a0]B/s, ETA --)\x1b\[K" % (size, size))
bars = list(bar.finditer(out))
problems = []
if not bars:
    problems.append("no progress bar")
else:
    last = bars[-1]
    if (last.group(2, 3) != (n, n) or "-" in last.group(1)
            or last.group(5).startswith("--")):
        problems.append("last bar %r" % last.group(0))
    rest = out[last.end():]
    m = re.match(r"\r\nprefetch Archive/2023: done after [0-9.]+ s: "
                 r"(\d+) of (\d+) messages cached, (\d+) fetched now "
                 r"\(\d+ bytes, ([^)]*)\), 0 were cached already\r\n$", rest)
    if not m:
        problems.append("after the last bar: %r" % rest)
    elif m.group(1, 2, 3) != (n, n, n) or m.group(4) != last.group(4):
        problems.append("summary %r after bar %r" % (m.group(0),
                                                      last.group(0)))
    done = [int(b.group(2)) for b in bars]
    if done != sorted(done):
        problems.append("done went back: %s" % done)
# Every redraw starts at the line's start and clears what it overwrote.
for seg in out.split("\r")[1:]:
    if seg and not seg.startswith("\n") and "\x1b[K" not in seg:
        problems.append("a redraw without ESC[K: %r" % seg)
        break
if "fetching, " in out:
    problems.append("periodic lines on a terminal")
print("; ".join(problems))
sys.exit(1 if problems else 0)
PYEOF
		fail "$(oneline <"$WORK/check")"
}

# state_is MNT STATE: imapfs status --json MNT says the connection is STATE.
state_is()
{
	status_json "$1" "$WORK/st-conn.json" &&
		[ "$(json "$WORK/st-conn.json" 'j["connection"]["state"]')" = "$2" ]
}

left_connected() { ! state_is "$1" connected; }

# The proxy accepts and at once closes every new connection, and cuts the
# open ones: the server is there but the link is not, so work is retried
# and the status says reconnecting until the link is back.
check_reconnecting()
{
	local pid rc n
	n=$(ic count Archive)
	state_is "$VIA" connected || fail "not connected before: $(oneline <"$WORK/st-conn.json")"
	kill -USR2 "$PROXY_PID" && kill -USR1 "$PROXY_PID" ||
		{ fail "signalling the proxy"; return; }
	ls "$VIA/Archive" >"$WORK/rc.ls" 2>"$WORK/rc.err" &
	pid=$!
	wait_for 10 left_connected "$VIA"
	[ "$(json "$WORK/st-conn.json" 'j["connection"]["state"]')" = reconnecting ] ||
		fail "with the link down: $(json "$WORK/st-conn.json" 'j["connection"]' | oneline)"
	imapfs status "$VIA" >"$WORK/table" 2>"$WORK/status.err"
	grep -q '^Connection: *reconnecting; ' "$WORK/table" ||
		fail "table: $(grep '^Connection' "$WORK/table" | oneline)"
	kill -USR2 "$PROXY_PID" || fail "signalling the proxy"
	wait "$pid"
	rc=$?
	[ $rc = 0 ] || fail "ls through the cut exited $rc: $(oneline <"$WORK/rc.err")"
	[ "$(grep -c '\.eml$' "$WORK/rc.ls")" = "$n" ] ||
		fail "ls through the cut: $(oneline <"$WORK/rc.ls")"
	state_is "$VIA" connected ||
		fail "link back: $(json "$WORK/st-conn.json" 'j["connection"]' | oneline)"
}

# The proxy goes away, so connects are refused: unreachable, since when.
check_unreachable()
{
	local pid t0 t1 since when
	kill -TERM "$PROXY_PID"
	wait "$PROXY_PID" 2>/dev/null
	PROXY_PID=
	t0=$(date +%s)
	ls "$VIA/Slow" >/dev/null 2>"$WORK/un.err" &
	pid=$!
	wait_for 20 state_is "$VIA" unreachable ||
		fail "state: $(json "$WORK/st-conn.json" 'j["connection"]' | oneline)"
	t1=$(date +%s)
	since=$(json "$WORK/st-conn.json" 'j["connection"]["since"]')
	[ "$since" -ge "$t0" ] 2>/dev/null && [ "$since" -le "$t1" ] ||
		fail "unreachable since '$since', not within $t0..$t1"
	imapfs status "$VIA" >"$WORK/table" 2>"$WORK/status.err"
	when=$(date -d "@$since" '+%Y-%m-%d %H:%M:%S')
	grep -q "^Connection: *unreachable since $when; " "$WORK/table" ||
		fail "table: $(grep '^Connection' "$WORK/table" | oneline)"
	wait "$pid" && fail "ls of an unlisted folder without a server succeeded"
	unmount_imapfs "$VIA"
}

# From the cache alone: offline, no pool; folders listed before are there.
check_offline()
{
	mount_at "$OFF" 1 "$WORK/cache-via" -o offline || return
	ls "$OFF/Archive/2023" >"$WORK/off.ls" || fail "ls offline"
	[ "$(wc -l <"$WORK/off.ls")" = "$(ic count Archive/2023)" ] ||
		fail "offline listing: $(oneline <"$WORK/off.ls")"
	state_is "$OFF" offline ||
		fail "state: $(json "$WORK/st-conn.json" 'j["connection"]' | oneline)"
	imapfs status "$OFF" >"$WORK/table" 2>"$WORK/status.err"
	grep -qx 'Connection: *offline' "$WORK/table" ||
		fail "table: $(grep '^Connection' "$WORK/table" | oneline)"
	unmount_imapfs "$OFF"
}

check_not_imapfs()
{
	mkdir -p "$WORK/plain"
	imapfs status "$WORK/plain" >/dev/null 2>"$WORK/e1" &&
		fail "status of a plain directory exited 0"
	grep -q "not inside an imapfs mount" "$WORK/e1" ||
		fail "status: $(oneline <"$WORK/e1")"
	imapfs prefetch "$WORK/plain" >/dev/null 2>"$WORK/e2" &&
		fail "prefetch of a plain directory exited 0"
	grep -q "not inside an imapfs mount" "$WORK/e2" ||
		fail "prefetch: $(oneline <"$WORK/e2")"
	imapfs prefetch "$WORK/nowhere" >/dev/null 2>"$WORK/e3" &&
		fail "prefetch of a missing path exited 0"
	grep -q "No such file" "$WORK/e3" || fail "missing: $(oneline <"$WORK/e3")"
	imapfs prefetch "$MNT/INBOX/$(ls "$MNT/INBOX" | head -1)" \
		>/dev/null 2>"$WORK/e4" && fail "prefetch of a message exited 0"
	grep -q "not a folder" "$WORK/e4" || fail "message: $(oneline <"$WORK/e4")"
	imapfs status >/dev/null 2>&1
	[ $? = 2 ] || fail "status without a path did not exit 2"
}

# Last: the server goes away for good. What prefetch fetched is all there.
check_server_gone()
{
	local f rel bad=0
	stop_imap_server "$SERVER_DIR"
	while IFS= read -r f; do
		rel=${f#"$REF"/}
		if ! t cmp -s "$f" "$MNT/$rel"; then
			bad=$((bad + 1))
			[ $bad -le 3 ] && fail "$rel differs or is unreadable"
		fi
	done < <(find "$REF" -name '*.eml' | sort)
	[ $bad -eq 0 ] || fail "$bad messages unreadable without the server"
	[ "$(find "$REF" -name '*.eml' | wc -l)" -gt "$SLOW_COUNT" ] ||
		fail "too few reference messages"
}

write_srv_py "$WORK/srv.py"
start_server || { echo "FAIL - $IMAP_SERVER: $SERVER_ERROR"; exit 1; }

run_check "seed, mount, proxy" check_setup
run_check "status lists every mailbox with the server's counts" check_status_counts
run_check "status follows the body cache" check_status_follows_cache
run_check "prefetch of a folder tree caches every body, sets no \\Seen" check_prefetch_folder
run_check "prefetch stops on SIGINT and resumes" check_interrupt_resume
run_check "prefetch of the root covers every folder" check_prefetch_root
run_check "a tree larger than cache_size is refused" check_too_big
run_check "status tells how each mailbox was last synced" check_sync_kinds
run_check "prefetch on a terminal draws a progress bar" check_prefetch_tty
run_check "status: reconnecting while the link is cut" check_reconnecting
run_check "status: unreachable when connects are refused" check_unreachable
run_check "status: offline with -o offline" check_offline
run_check "outside an imapfs mount: clear errors" check_not_imapfs
run_check "prefetched mail reads without the server" check_server_gone

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
