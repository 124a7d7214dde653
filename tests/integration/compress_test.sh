#!/bin/bash
# compress_test.sh - a real mount with -o compress=yes against Dovecot with
# the imap_zlib plugin (COMPRESS=DEFLATE): cat and grep of a large message
# give exactly its bytes, the protocol log shows COMPRESS sent once per
# connection and accepted, and -o compress=no sends none.
#
#   compress_test.sh BUILDDIR SOURCEDIR
#
# Prints "ok - NAME" / "FAIL - NAME: details", then "N passed, M failed";
# exits 77 where it cannot run (not root, no /dev/fuse or dovecot).
set -u

[ $# -eq 2 ] || {
	echo "usage: compress_test.sh BUILDDIR SOURCEDIR" >&2
	exit 2
}
BUILDDIR=$1
SOURCEDIR=$(cd "$2" && pwd) || exit 2
HARNESS=$SOURCEDIR/tests/harness
PATH=$PATH:/usr/sbin:/sbin
export LC_ALL=C PYTHONUTF8=1 PYTHONIOENCODING=utf-8
unset IMAPFS_PASSWORD

skip()
{
	echo "SKIP: $*"
	exit 77
}
[ "$(id -u)" = 0 ] || skip "must run as root (FUSE mounts, Dovecot)"
[ -c /dev/fuse ] || skip "/dev/fuse is missing"
command -v fusermount3 >/dev/null || skip "fusermount3 is not installed"
command -v dovecot >/dev/null || skip "dovecot is not installed"
IMAPFS=$(realpath -m "$BUILDDIR/fs/imapfs")
[ -x "$IMAPFS" ] || skip "the daemon $IMAPFS is not built"

WORK=$(mktemp -d /tmp/imapfs-compress-test.XXXXXX) || exit 1
chmod 0755 "$WORK"
DOVE=$WORK/dovecot
MNT=$WORK/mnt
LOG=$WORK/imapfs.log
DAEMON=

cleanup()
{
	if [ -n "$DAEMON" ]; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null
		kill "$DAEMON" 2>/dev/null
		wait "$DAEMON" 2>/dev/null
	fi
	"$HARNESS/dovecot.sh" stop "$DOVE" >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

printf 'protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n' \
	>"$WORK/zlib.conf"
"$HARNESS/dovecot.sh" start "$DOVE" --extra-conf "$WORK/zlib.conf" \
	--watch-pid $$ >"$WORK/server.env" || {
	echo "FAIL - dovecot did not start"
	exit 1
}
# shellcheck disable=SC1091
. "$WORK/server.env"
printf '%s' "$PASSWORD" >"$WORK/password"
chmod 0600 "$WORK/password"

ic() { python3 "$HARNESS/imapcheck.py" --env "$WORK/server.env" "$@"; }

# A 2 MB message of text lines with one needle in the middle.
python3 - "$WORK/msg.eml" <<'EOF'
import random, sys
r = random.Random(4978)
words = "alpha bravo charlie delta echo foxtrot golf hotel india".split()
out = ["From: a@example.org", "To: b@example.org",
       "Subject: deflate me", "Date: Mon, 3 Jun 2024 10:00:00 +0000", ""]
for i in range(40000):
    out.append("%06d %s" % (i, " ".join(r.choice(words) for _ in range(6))))
    if i == 20000:
        out.append("COMPRESSNEEDLE here")
open(sys.argv[1], "wb").write(("\r\n".join(out) + "\r\n").encode())
EOF
UID1=$(ic append INBOX "$WORK/msg.eml") || {
	echo "FAIL - seeding"
	exit 1
}

PASSED=0
FAILED=0
PROBLEMS=()
fail() { PROBLEMS+=("$*"); }
report()
{
	if [ ${#PROBLEMS[@]} -eq 0 ]; then
		PASSED=$((PASSED + 1))
		echo "ok - $1"
	else
		FAILED=$((FAILED + 1))
		echo "FAIL - $1: ${PROBLEMS[*]}"
	fi
	PROBLEMS=()
}

mount_with()
{
	local i
	mkdir -p "$MNT"
	: >"$LOG"
	G_MESSAGES_DEBUG=all "$IMAPFS" -f -o debug_imap \
		-o "password_file=$WORK/password" -o "tls_ca_file=$CA_FILE" \
		-o "cache_dir=$WORK/cache-$1" -o "compress=$1" \
		"imaps://$USER@$CERT_NAME:$TLS_PORT/" "$MNT" \
		</dev/null >/dev/null 2>"$LOG" &
	DAEMON=$!
	for i in $(seq 1 100); do
		grep -qs " $MNT fuse" /proc/self/mounts && return 0
		sleep 0.1
	done
	fail "mount did not appear: $(tail -c 400 "$LOG")"
	return 1
}

unmount()
{
	fusermount3 -u "$MNT" 2>/dev/null
	timeout 20 tail --pid="$DAEMON" -f /dev/null
	DAEMON=
}

# Protocol lines: "C: A4 COMPRESS DEFLATE" and "S: A4 OK ...".
count_sent() { grep -c 'C: A[0-9]* COMPRESS DEFLATE' "$LOG"; }
count_logins() { grep -c 'C: A[0-9]* \(AUTHENTICATE\|LOGIN\) ' "$LOG"; }

check_compress_yes()
{
	local sent logins
	mount_with yes || return
	timeout 60 cmp "$MNT/INBOX/$UID1.eml" "$WORK/msg.eml" ||
		fail "cat gave other bytes than were appended"
	[ "$(timeout 60 grep -rl COMPRESSNEEDLE "$MNT/INBOX")" = \
		"$MNT/INBOX/$UID1.eml" ] || fail "grep -rl did not find the needle"
	[ "$(timeout 60 grep -c '^0[0-9]* ' "$MNT/INBOX/$UID1.eml")" = 40000 ] ||
		fail "grep -c counted other lines"
	unmount
	sent=$(count_sent)
	logins=$(count_logins)
	[ "$sent" -ge 1 ] || fail "no COMPRESS in the protocol log"
	[ "$sent" = "$logins" ] ||
		fail "$sent COMPRESS commands for $logins logins"
	[ "$(grep -c 'COMPRESS=DEFLATE active' "$LOG")" = "$sent" ] ||
		fail "not every COMPRESS was accepted"
	! grep -q 'COMPRESS refused\|corrupt' "$LOG" ||
		fail "$(grep 'COMPRESS refused\|corrupt' "$LOG" | head -1)"
}

check_compress_no()
{
	mount_with no || return
	timeout 60 cmp "$MNT/INBOX/$UID1.eml" "$WORK/msg.eml" ||
		fail "cat gave other bytes than were appended"
	unmount
	[ "$(count_logins)" -ge 1 ] || fail "no login in the protocol log"
	[ "$(count_sent)" = 0 ] || fail "COMPRESS sent with compress=no"
}

check_bad_value()
{
	local out
	mkdir -p "$MNT"
	out=$("$IMAPFS" -o compress=maybe -o "password_file=$WORK/password" \
		"imaps://$USER@$CERT_NAME:$TLS_PORT/" "$MNT" 2>&1) &&
		fail "compress=maybe was accepted"
	case $out in
	*compress=maybe*) ;;
	*) fail "no clear message: $out" ;;
	esac
}

check_compress_yes
report "mount -o compress=yes: cat, grep, COMPRESS on every connection"
check_compress_no
report "mount -o compress=no: no COMPRESS"
check_bad_value
report "-o compress=maybe is refused"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
