#!/bin/bash
# hostile_test.sh - imapfs against hostile and broken servers: each mode of
# tests/harness/hostile_server.py (huge and over-the-cap literals, an endless
# line, deep nesting, binary garbage, BYE mid-FETCH, a FETCH for another UID,
# lying RFC822.SIZE, a wrong COPYUID, capabilities that change at login) on
# a real mount. After each: the daemon is alive, the mount answers, its
# memory stays bounded, the affected operation failed with EIO (and a clear
# log line) or returned the right bytes, and once the server behaves the
# same file reads correctly. Then, against a real Dovecot: another client
# expunges a large message while we read it; we must get the original bytes
# or an error, never other bytes and never a silently short file.
#
# IMAP_SERVER=cyrus runs that last check against Cyrus (tests/harness/
# cyrus.sh) and only it: the hostile modes play their own server.
#
#   hostile_test.sh BUILDDIR SOURCEDIR
#
# Prints "ok - NAME" / "FAIL - NAME: details", then "N passed, M failed";
# exits 77 where it cannot run (not root, no /dev/fuse).
# shellcheck source-path=SCRIPTDIR
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init hostile "$@"
require_fuse "FUSE mounts"
# Without Dovecot the hostile modes still run; only the expunge check is
# skipped (select_imap_server would skip the whole test).
if (select_imap_server) >/dev/null 2>&1; then
	select_imap_server
fi
if [ "$IMAP_SERVER" = cyrus ]; then
	HOSTILE_ONLY=expunge_mid_read
fi
require_imapfs

make_workdir
MNT=$WORK/mnt
LOG=$WORK/daemon.log
SLOG=$WORK/server.log
DUMP=$WORK/dump
STATE=$WORK/state.json
BEHAVE=$WORK/behave
MT_TIMEOUT=90
# The daemon's resident memory after each mode must stay below this (KiB):
# the hostile replies announce or send 64 MiB and more. Under
# AddressSanitizer (shadow memory, quarantine) it is 64 MiB above what the
# daemon held right after mounting, and ASan's quarantine of freed memory
# is kept to 16 MiB (by default 256 MiB of freed blocks stay resident, so
# three 6 MB reads alone could pass the limit; seen against Cyrus in CI).
RSS_LIMIT_KB=$((64 * 1024))
ASAN=
if ldd "$IMAPFS" 2>/dev/null | grep -q libasan; then
	ASAN=1
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16
fi
SERVER_PID=
DOVE=$WORK/$IMAP_SERVER
ENVF=$WORK/$IMAP_SERVER.env

teardown()
{
	end_mounts
	stop_server
	stop_imap_servers
	remove_workdir
}

install -m 0600 /dev/null "$WORK/password"
echo "secret" >"$WORK/password"

# --- the hostile server and the mount -----------------------------------

stop_server()
{
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
	fi
	SERVER_PID=
}

# start_server MODE: a fresh server (fresh state) on a free port -> PORT.
start_server()
{
	stop_server
	rm -rf "$DUMP" "$BEHAVE" "$STATE" "$WORK/server.port"
	python3 "$HARNESS/hostile_server.py" --mode "$1" --timeout 900 \
		--dump "$DUMP" --state "$STATE" --behave-file "$BEHAVE" \
		>"$WORK/server.port" 2>"$SLOG" &
	SERVER_PID=$!
	PORT=
	for _ in $(seq 1 100); do
		PORT=$(sed -n 's/^PORT=//p' "$WORK/server.port" 2>/dev/null)
		[ -n "$PORT" ] && return 0
		sleep 0.1
	done
	fail "hostile_server.py --mode $1 did not start: $(oneline <"$SLOG")"
	return 1
}

# Mounts in the foreground (stderr to $LOG), detached; sets DPID.
mount_fg()
{
	mkdir -p "$MNT"
	MOUNTS+=("$MNT")
	rm -rf "$WORK/cache"
	rm -f "$MT_HUNG_FLAG"
	DPID=
	setsid "$IMAPFS" -f -o allow_plaintext \
		-o "password_file=$WORK/password" -o "cache_dir=$WORK/cache" \
		-o timeout=20 \
		"imap://alice@127.0.0.1:$PORT/" "$MNT" \
		</dev/null >/dev/null 2>"$LOG" &
	DPID=$!
	for _ in $(seq 1 100); do
		if is_mounted "$MNT"; then
			[ -n "$ASAN" ] && RSS_LIMIT_KB=$(($(rss_of "$DPID") +
				64 * 1024))
			return 0
		fi
		kill -0 "$DPID" 2>/dev/null || break
		sleep 0.1
	done
	fail "mount did not appear: $(tail -c 600 "$LOG" | oneline)"
	return 1
}

umount_fg()
{
	unmount_imapfs "$MNT"
	wait "$DPID" 2>/dev/null
}

# Resident memory of process PID in KiB.
rss_of() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# The daemon is alive, answers at its root, and stays within RSS_LIMIT_KB.
check_daemon_healthy()
{
	local rss
	if ! kill -0 "$DPID" 2>/dev/null; then
		fail "the daemon died: $(tail -c 400 "$LOG" | oneline)"
		return 1
	fi
	rss=$(rss_of "$DPID")
	[ -n "$rss" ] && [ "$rss" -lt "$RSS_LIMIT_KB" ] ||
		fail "daemon RSS ${rss:-?} KiB, limit $RSS_LIMIT_KB KiB"
	names_in "$MNT" >"$WORK/root.ls" 2>&1 ||
		fail "ls of the root failed afterwards: $(oneline <"$WORK/root.ls")"
	grep -qx INBOX "$WORK/root.ls" ||
		fail "the root no longer lists INBOX: $(oneline <"$WORK/root.ls")"
}

# The server really did what the mode is about.
check_injected()
{
	grep -q "^HOSTILE $1" "$SLOG" ||
		fail "the server never injected $1 (was the operation served from elsewhere?)"
	grep -q "^SERVER ERROR" "$SLOG" &&
		fail "hostile_server.py failed: $(grep '^SERVER ERROR' "$SLOG" | head -3 | oneline)"
	return 0
}

# expect_bytes_or_error LABEL EXPECTED ERRNO_RE COMMAND...: the command
# prints exactly EXPECTED, or fails with an error matching ERRNO_RE (and
# then its stdout must still be a prefix of EXPECTED). Sets OP_FAILED.
expect_bytes_or_error()
{
	local label=$1 want=$2 errre=$3 rc
	shift 3
	OP_FAILED=
	t "$@" >"$WORK/op.out" 2>"$WORK/op.err"
	rc=$?
	if [ $rc -eq 0 ]; then
		cmp -s "$WORK/op.out" "$want" ||
			fail "$label returned wrong bytes ($(stat -c %s "$WORK/op.out") bytes, want $(stat -c %s "$want"); first: $(head -c 80 "$WORK/op.out" | oneline))"
		return 0
	fi
	OP_FAILED=1
	grep -qE "$errre" "$WORK/op.err" ||
		fail "$label failed (rc $rc) without $errre: $(oneline <"$WORK/op.err")"
	cmp -s "$WORK/op.out" "$want" 2>/dev/null ||
		cmp -s "$WORK/op.out" <(head -c "$(stat -c %s "$WORK/op.out")" "$want") ||
		fail "$label: the bytes before the error are not the message's"
}

EIO_RE='Input/output error'

# body_mode MODE LOG_RE [ERRNO_RE]: cat of INBOX/2.eml, attacked by MODE,
# gives the real bytes or an error; an error is logged matching LOG_RE.
# Once the server behaves, the same file reads correctly.
body_mode()
{
	local mode=$1 logre=$2 errre=${3:-$EIO_RE}
	start_server "$mode" || return
	mount_fg || return
	names_in "$MNT/INBOX" >"$WORK/inbox.ls"
	grep -qx 2.eml "$WORK/inbox.ls" ||
		{ fail "INBOX lists $(oneline <"$WORK/inbox.ls")"; return; }
	expect_bytes_or_error "cat 2.eml" "$DUMP/INBOX/2.eml" "$errre" \
		cat "$MNT/INBOX/2.eml"
	check_injected "$mode"
	if [ -n "$OP_FAILED" ] && [ -n "$logre" ]; then
		grep -qE "$logre" "$LOG" ||
			fail "no log line matching '$logre': $(grep -v debug "$LOG" | tail -c 500 | oneline)"
	fi
	check_daemon_healthy
	# A scan (prefetching whole bodies in batches) meets it too; the
	# other messages must still be found.
	t grep -rl MARKER "$MNT/INBOX" >"$WORK/grep.out" 2>"$WORK/grep.err"
	[ "$(grep -cE '/(1|3|4)\.eml$' "$WORK/grep.out")" = 3 ] ||
		fail "grep -r found $(oneline <"$WORK/grep.out"); $(oneline <"$WORK/grep.err")"
	check_daemon_healthy
	: >"$BEHAVE"
	t cmp "$MNT/INBOX/2.eml" "$DUMP/INBOX/2.eml" >"$WORK/cmp.out" 2>&1 ||
		fail "after the server behaves, 2.eml reads wrong: $(oneline <"$WORK/cmp.out")"
	check_daemon_healthy
	umount_fg
}

# Like body_mode, but the op must fail with EIO (no right bytes possible).
body_mode_eio()
{
	body_mode "$@"
	[ -n "$OP_FAILED" ] || [ ${#CHECK_PROBLEMS[@]} -gt 0 ] ||
		fail "cat 2.eml succeeded against $1"
}

check_huge_literal()
{
	body_mode_eio huge-literal 'literal of 99999999999 bytes for at most'
}

check_over_cap()
{
	body_mode_eio over-cap 'literal of [0-9]+ bytes for at most [0-9]+ asked'
}

check_over_cap_memory()
{
	body_mode_eio over-cap-memory 'literal of 67108865 bytes exceeds limit'
}

check_endless_line()
{
	body_mode_eio endless-line 'exceeds the line limit'
}

check_deep_nesting()
{
	body_mode_eio deep-nesting 'nested deeper than'
}

check_garbage()
{
	body_mode_eio garbage 'UID 2 failed \(Input/output error\): .*(NUL byte|CR without LF|response|unexpected|invalid)'
}

# NIL for the body (RFC 2180 4.1.3, a message expunged elsewhere) must not
# read as an empty or short file. ENOENT is logged only at debug level.
check_nil_body()
{
	body_mode_eio nil-body '' "$EIO_RE|No such file"
}

check_bye_mid_literal()
{
	body_mode bye-mid-literal 'UID 2 failed \(Input/output error\): .*(going down|closed|lost|end of|EOF)'
}

check_bye_between_items()
{
	body_mode bye-between-items 'UID 2 failed \(Input/output error\): .*(going down|closed|left open|lost)'
}

check_wrong_uid()
{
	body_mode wrong-uid 'UID 2 failed .*another message' \
		"$EIO_RE|No such file"
}

check_wrong_uid_extra()
{
	body_mode wrong-uid-extra 'UID 2 failed .*another message' \
		"$EIO_RE|No such file"
}

# RFC822.SIZE lies; cat must still give exactly the real bytes, for a small
# message (one fetch) and the 3 MB one (windows past the announced size).
size_mode()
{
	local mode=$1 uid
	start_server "$mode" || return
	mount_fg || return
	names_in "$MNT/INBOX" >/dev/null
	for uid in 2 4; do
		expect_bytes_or_error "cat $uid.eml" "$DUMP/INBOX/$uid.eml" \
			'^$' cat "$MNT/INBOX/$uid.eml"
		[ -n "$OP_FAILED" ] && fail "cat $uid.eml failed: $(oneline <"$WORK/op.err")"
	done
	check_injected "$mode"
	check_daemon_healthy
	umount_fg
}

check_size_too_big() { size_mode size-too-big; }
check_size_too_small() { size_mode size-too-small; }

# sha256 of a file.
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Where the server holds the message with these bytes: "MAILBOX UID" lines.
server_has()
{
	python3 - "$STATE" "$1" <<'EOF'
import json, sys
state = json.load(open(sys.argv[1]))
for mbox, msgs in sorted(state.items()):
    for uid, digest in msgs:
        if digest == sys.argv[2]:
            print(mbox, uid)
EOF
}

# mv INBOX/3.eml Archive/ against a lying COPYUID: the message ends up in
# exactly one place (Archive if mv succeeded), the name mv used reads the
# moved message (never Archive/1.eml's bytes), and Archive/1.eml is intact.
copyuid_mode()
{
	local mode=$1 logre=$2 where rc
	start_server "$mode" || return
	mount_fg || return
	names_in "$MNT/INBOX" >/dev/null
	names_in "$MNT/Archive" >/dev/null
	t mv "$MNT/INBOX/3.eml" "$MNT/Archive/" 2>"$WORK/mv.err"
	rc=$?
	check_injected "$mode"
	where=$(server_has "$(sha "$DUMP/INBOX/3.eml")")
	[ "$(printf '%s\n' "$where" | grep -c .)" = 1 ] ||
		fail "after mv the message is at: '$(oneline <<<"$where")'"
	if [ $rc -ne 0 ]; then
		fail "mv failed: $(oneline <"$WORK/mv.err")"
		umount_fg
		return
	fi
	grep -q '^Archive ' <<<"$where" ||
		fail "mv succeeded but the message is at '$where'"
	grep -qE "$logre" "$LOG" ||
		fail "no log line matching '$logre': $(tail -c 400 "$LOG" | oneline)"
	if ! t cat "$MNT/Archive/3.eml" >"$WORK/alias.out" 2>"$WORK/alias.err"; then
		fail "the name mv used does not reach the moved message: $(oneline <"$WORK/alias.err")"
	elif ! cmp -s "$WORK/alias.out" "$DUMP/INBOX/3.eml"; then
		fail "Archive/3.eml (the name mv used) has other bytes: $(head -c 120 "$WORK/alias.out" | oneline)"
	fi
	t cmp "$MNT/Archive/1.eml" "$DUMP/Archive/1.eml" >"$WORK/cmp.out" 2>&1 ||
		fail "Archive/1.eml changed: $(oneline <"$WORK/cmp.out")"
	t cmp "$MNT/Archive/${where#Archive }.eml" "$DUMP/INBOX/3.eml" \
		>"$WORK/cmp.out" 2>&1 ||
		fail "Archive/${where#Archive }.eml: $(oneline <"$WORK/cmp.out")"
	check_daemon_healthy
	umount_fg
}

check_copyuid_mismatch()
{
	copyuid_mode copyuid-mismatch 'malformed or inconsistent COPYUID'
}

check_copyuid_mismatch_copy()
{
	copyuid_mode copyuid-mismatch-copy 'malformed or inconsistent COPYUID'
}

check_copyuid_existing()
{
	copyuid_mode copyuid-existing 'COPYUID'
}

# Capabilities that change at login: the daemon must use the list it got
# after login (no extension that was withdrawn; one that was added is used)
# and everything still works.
caps_mode()
{
	local mode=$1 where
	start_server "$mode" || return
	mount_fg || return
	names_in "$MNT/INBOX" >"$WORK/inbox.ls"
	[ "$(grep -c '\.eml$' "$WORK/inbox.ls")" = 4 ] ||
		fail "INBOX lists $(oneline <"$WORK/inbox.ls")"
	t cmp "$MNT/INBOX/2.eml" "$DUMP/INBOX/2.eml" >"$WORK/cmp.out" 2>&1 ||
		fail "2.eml: $(oneline <"$WORK/cmp.out")"
	t mv "$MNT/INBOX/3.eml" "$MNT/Archive/" 2>"$WORK/mv.err" ||
		fail "mv failed: $(oneline <"$WORK/mv.err")"
	where=$(server_has "$(sha "$DUMP/INBOX/3.eml")")
	grep -q '^Archive ' <<<"$where" && [ "$(grep -c . <<<"$where")" = 1 ] ||
		fail "after mv the message is at: '$(oneline <<<"$where")'"
	grep -q '^VIOLATION' "$SLOG" &&
		fail "the daemon used withdrawn extensions: $(grep '^VIOLATION' "$SLOG" | sort -u | head -5 | oneline)"
	grep -q '^SERVER ERROR' "$SLOG" &&
		fail "hostile_server.py failed: $(grep '^SERVER ERROR' "$SLOG" | head -3 | oneline)"
	if [ "$mode" = caps-add ]; then
		grep -qE '^C[0-9]+: [^ ]+ CAPABILITY' "$SLOG" ||
			fail "the daemon did not ask for the capabilities after login"
		grep -qE '^C[0-9]+: [^ ]+ UID MOVE ' "$SLOG" ||
			fail "MOVE, offered after login, was not used"
	fi
	check_daemon_healthy
	umount_fg
}

check_caps_drop() { caps_mode caps-drop; }
check_caps_add() { caps_mode caps-add; }

# --- expunged by another client while we read it (real server) ----------

# Appends a message of about SIZE_MB MB whose bytes depend on SEED to
# INBOX; prints its UID and writes the bytes to FILE.
append_big()
{
	python3 - "$1" "$2" "$3" <<'EOF' || return 1
import base64, random, sys
seed, mb, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
blob = base64.b64encode(random.Random(seed).randbytes(mb * 750_000))
lines = b"\r\n".join(blob[i:i + 76] for i in range(0, len(blob), 76))
msg = (b"From: big@example.org\r\nSubject: big %d\r\n\r\n" % seed) + lines + b"\r\n"
open(path, "wb").write(msg)
EOF
	ic append INBOX "$3"
}

# reader.py FILE ORIGINAL AFTER_BYTES MARKER: reads FILE in 64 KiB
# chunks; after AFTER_BYTES bytes it creates MARKER and waits until MARKER
# is gone (the test expunges the message meanwhile). Prints "ok N", or
# "error ERRNO N"; exits 1 if bytes differ from ORIGINAL.
write_reader()
{
	cat >"$WORK/reader.py" <<'EOF'
import errno, os, sys, time
path, original, after, marker = sys.argv[1:5]
want = open(original, "rb").read()
got = bytearray()
fd = os.open(path, os.O_RDONLY)
signalled = False
result = None
while True:
    if not signalled and len(got) >= int(after):
        open(marker, "w").close()
        signalled = True
        while os.path.exists(marker):
            time.sleep(0.05)
    try:
        chunk = os.read(fd, 65536)
    except OSError as e:
        result = "error %s %d" % (errno.errorcode.get(e.errno, e.errno),
                                  len(got))
        break
    if not chunk:
        result = "ok %d" % len(got)
        break
    got += chunk
os.close(fd)
print(result)
if bytes(got) != want[:len(got)]:
    bad = next(i for i in range(len(got)) if i >= len(want) or got[i] != want[i])
    print("bytes differ from the original at offset %d" % bad)
    sys.exit(1)
EOF
}

# One read: expunge UID after AFTER bytes were read.
expunge_while_reading()
{
	local uid=$1 orig=$2 after=$3 res
	rm -f "$WORK/marker"
	python3 "$WORK/reader.py" "$MNT/INBOX/$uid.eml" "$orig" "$after" \
		"$WORK/marker" >"$WORK/reader.out" 2>&1 &
	local rpid=$!
	for _ in $(seq 1 600); do
		[ -e "$WORK/marker" ] && break
		kill -0 $rpid 2>/dev/null || break
		sleep 0.1
	done
	[ -e "$WORK/marker" ] || fail "reader of $uid.eml never got $after bytes: $(oneline <"$WORK/reader.out")"
	ic mark-deleted INBOX "$uid" >/dev/null && ic expunge INBOX >/dev/null ||
		fail "expunging UID $uid with imaplib"
	ic uids INBOX | grep -qx "$uid" && fail "UID $uid still on the server"
	rm -f "$WORK/marker"
	wait $rpid || fail "reader of $uid.eml: $(oneline <"$WORK/reader.out")"
	res=$(head -1 "$WORK/reader.out")
	case $res in
	"ok $(stat -c %s "$orig")") ;;
	"error ENOENT "* | "error EIO "*) ;;
	*) fail "reading $uid.eml while it was expunged after $after bytes: $res (size $(stat -c %s "$orig"))" ;;
	esac
	echo "# $uid.eml expunged after $after bytes: $res"
}

check_expunge_mid_read()
{
	local a b c
	if [ "$IMAP_SERVER" = dovecot ] && ! command -v dovecot >/dev/null; then
		echo "# dovecot missing: skipped"
		return
	fi
	start_imap_server "$DOVE" "$ENVF"
	case $? in
	0) ;;
	77)
		echo "# $IMAP_SERVER missing: skipped ($SERVER_ERROR)"
		return
		;;
	*)
		fail "$IMAP_SERVER: $SERVER_ERROR"
		return
		;;
	esac
	echo "# against $IMAP_SERVER"
	write_password "$WORK/dpassword"
	a=$(append_big 1 6 "$WORK/big1.eml") || { fail "append"; return; }
	b=$(append_big 2 6 "$WORK/big2.eml") || { fail "append"; return; }
	c=$(append_big 3 6 "$WORK/big3.eml") || { fail "append"; return; }
	write_reader
	mkdir -p "$MNT"
	MOUNTS+=("$MNT")
	rm -rf "$WORK/cache"
	setsid "$IMAPFS" -f -o "password_file=$WORK/dpassword" \
		-o "tls_ca_file=$S_CA_FILE" -o "cache_dir=$WORK/cache" \
		"imaps://$S_USER@$S_CERT_NAME:$S_TLS_PORT/" "$MNT" \
		</dev/null >/dev/null 2>"$LOG" &
	DPID=$!
	wait_for 10 is_mounted "$MNT" ||
		{ fail "mount: $(tail -c 400 "$LOG" | oneline)"; return; }
	[ -n "$ASAN" ] && RSS_LIMIT_KB=$(($(rss_of "$DPID") + 64 * 1024))
	names_in "$MNT/INBOX" >/dev/null
	# Early (the first window only), in the middle, and near the end.
	expunge_while_reading "$a" "$WORK/big1.eml" 65536
	expunge_while_reading "$b" "$WORK/big2.eml" $((1536 * 1024))
	expunge_while_reading "$c" "$WORK/big3.eml" $((4000 * 1024))
	check_daemon_healthy
	umount_fg
}

# HOSTILE_ONLY=REGEX runs only the checks whose function name matches.
check()
{
	[ -n "${HOSTILE_ONLY:-}" ] && ! grep -qE "$HOSTILE_ONLY" <<<"$2" &&
		return 0
	run_check "$@"
}

check "huge literal {99999999999}" check_huge_literal
check "literal one byte over the partial fetch asked" check_over_cap
check "literal just over the in-memory cap" check_over_cap_memory
check "endless line" check_endless_line
check "nesting 100000 deep" check_deep_nesting
check "binary garbage" check_garbage
check "NIL instead of the body" check_nil_body
check "BYE in the middle of a literal" check_bye_mid_literal
check "BYE between FETCH items" check_bye_between_items
check "FETCH of another UID instead" check_wrong_uid
check "FETCH of another UID before the right one" check_wrong_uid_extra
check "RFC822.SIZE too big" check_size_too_big
check "RFC822.SIZE too small" check_size_too_small
check "COPYUID with mismatched sets (MOVE)" check_copyuid_mismatch
check "COPYUID with mismatched sets (COPY)" check_copyuid_mismatch_copy
check "COPYUID naming an existing message" check_copyuid_existing
check "capabilities withdrawn after login" check_caps_drop
check "capabilities added after login" check_caps_add
stop_server
check "expunged by another client while read" check_expunge_mid_read

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
