#!/bin/bash
# ctl_test.sh - `imapfs status` and `imapfs prefetch` against a real Dovecot
# and real mounts: status names every mailbox with the server's message
# counts and follows the body cache; prefetch caches every body of a folder
# tree (readable with the server gone, byte for byte, never \Seen), skips
# what is cached, stops on SIGINT and resumes, prints periodic lines when
# not on a terminal, refuses a tree larger than cache_size, and both fail
# clearly outside an imapfs mount.
#
#   ctl_test.sh BUILDDIR SOURCEDIR
#
# Prints "ok - NAME" / "FAIL - NAME: details", then "N passed, M failed";
# exits 77 where it cannot run (not root, no /dev/fuse or dovecot).
# shellcheck source-path=SCRIPTDIR
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init ctl "$@"
require_fuse "FUSE mounts, Dovecot"
require_tools dovecot
command -v getfattr >/dev/null || skip "getfattr (attr) is not installed"
require_imapfs
require_faultproxy

make_workdir
DOVE=$WORK/dovecot
ENVF=$WORK/server.env
MNT=$WORK/mnt   # the main mount, straight to Dovecot
SLOW=$WORK/slow # through faultproxy, with latency
TINY=$WORK/tiny # cache_size far below the Slow folder
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
"""
import json
import os
import re
import sys

sys.path.insert(0, sys.argv[1])
import imapcheck as ic  # noqa: E402


def connect(envfile):
    e = ic.read_env(envfile)
    return ic.connect(e["HOST"], e["PORT"], e["USER"], e["PASSWORD"],
                      e["CA_FILE"], "plain")


def selectable(conn):
    return sorted(n for n, a in ic.list_with_attrs(conn)
                  if "\\noselect" not in a.lower()
                  and "\\nonexistent" not in a.lower())


def uids(conn, mbox):
    ic.select(conn, mbox)
    return ic.search_uids(conn, "ALL")


def seed(conn, slow_count):
    for mbox in ["Archive", "Archive/2023", "Slow", "Empty"]:
        ic.ok(conn.create(ic.wire_mailbox(mbox)), "CREATE " + mbox)
    plan = [("INBOX", 12, 2000), ("Archive", 20, 5000),
            ("Archive/2023", 15, 30000), ("Slow", int(slow_count), 3000)]
    for mbox, n, size in plan:
        for i in range(n):
            text = ("%s message %d " % (mbox, i)) * (size // 24 + i)
            msg = ("From: a@example.org\r\nSubject: %s %d\r\n"
                   "Message-ID: <%s-%d@ctl-test>\r\n\r\n%s\r\n"
                   % (mbox, i, mbox.replace("/", "-"), i, text)).encode()
            ic.append(conn, mbox, msg, None, 1600000000 + i)


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
        ic.select(conn, mbox)
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
    if sorted(shown) != server:
        problems.append("status lists %s, the server has %s"
                        % (sorted(shown), server))
    for mbox in server:
        n = len(uids(conn, mbox))
        m = shown.get(mbox, {})
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
        m = shown.get(mbox, {})
        if m.get("bodies_cached") != m.get("messages"):
            problems.append("%s: %s of %s bodies cached"
                            % (mbox, m.get("bodies_cached"),
                               m.get("messages")))
    print("; ".join(problems))
    return 1 if problems else 0


def main():
    envfile, cmd, args = sys.argv[2], sys.argv[3], sys.argv[4:]
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

start_dovecot()
{
	start_imap_server "$DOVE" "$ENVF" || return 1
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
	local m
	# Listing each folder is what loads it; then counts must be exact.
	for m in INBOX Archive Archive/2023 Slow Empty; do
		ls "$MNT/$m" >/dev/null || fail "ls $m"
	done
	status_json "$MNT" "$WORK/st1.json" ||
		{ fail "status --json: $(oneline <"$WORK/status.err")"; return; }
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
	# The table for people: every mailbox with its count.
	imapfs status "$MNT" >"$WORK/table" 2>"$WORK/status.err" ||
		fail "status: $(oneline <"$WORK/status.err")"
	for m in INBOX Archive Archive/2023 Slow Empty; do
		grep -qE "^$m +$(ic count "$m") " "$WORK/table" ||
			fail "table has no line '$m $(ic count "$m")': $(oneline <"$WORK/table")"
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
	stop_imap_server "$DOVE"
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
start_dovecot || { echo "FAIL - dovecot: $SERVER_ERROR"; exit 1; }

run_check "seed, mount, proxy" check_setup
run_check "status lists every mailbox with the server's counts" check_status_counts
run_check "status follows the body cache" check_status_follows_cache
run_check "prefetch of a folder tree caches every body, sets no \\Seen" check_prefetch_folder
run_check "prefetch stops on SIGINT and resumes" check_interrupt_resume
run_check "prefetch of the root covers every folder" check_prefetch_root
run_check "a tree larger than cache_size is refused" check_too_big
run_check "outside an imapfs mount: clear errors" check_not_imapfs
run_check "prefetched mail reads without the server" check_server_gone

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
