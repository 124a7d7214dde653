#!/bin/bash
# compress_test.sh - a real mount with -o compress=yes against Dovecot with
# the imap_zlib plugin (COMPRESS=DEFLATE): cat and grep of a large message
# give exactly its bytes, the protocol log shows COMPRESS sent once per
# connection and accepted, and -o compress=no sends none.
#
# IMAP_SERVER=cyrus runs the same checks against Cyrus (tests/harness/
# cyrus.sh), which offers COMPRESS=DEFLATE as it is configured there.
#
#   compress_test.sh BUILDDIR SOURCEDIR
#
# Prints "ok - NAME" / "FAIL - NAME: details", then "N passed, M failed";
# exits 77 where it cannot run (not root, no /dev/fuse or dovecot).
# shellcheck source-path=SCRIPTDIR
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init compress "$@"
require_fuse "FUSE mounts, Dovecot"
select_imap_server
require_imapfs

make_workdir
DOVE=$WORK/dovecot
ENVF=$WORK/server.env
MNT=$WORK/mnt
LOG=$WORK/imapfs.log
DAEMON=
# mount_with mounts MNT in the foreground; cleanup unmounts it.
MOUNTS+=("$MNT")

SERVER_OPTS=()
if [ "$IMAP_SERVER" = dovecot ]; then
	# shellcheck disable=SC2016 # $mail_plugins is Dovecot's to expand
	printf 'protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n' \
		>"$WORK/zlib.conf"
	SERVER_OPTS=(--extra-conf "$WORK/zlib.conf")
fi
start_main_server "$DOVE" "$ENVF" "${SERVER_OPTS[@]}"
echo "# $IMAP_SERVER started"
write_password "$WORK/password"

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

mount_with()
{
	local i
	mkdir -p "$MNT"
	: >"$LOG"
	G_MESSAGES_DEBUG=all "$IMAPFS" -f -o debug_imap \
		-o "password_file=$WORK/password" -o "tls_ca_file=$S_CA_FILE" \
		-o "cache_dir=$WORK/cache-$1" -o "compress=$1" \
		"imaps://$S_USER@$S_CERT_NAME:$S_TLS_PORT/" "$MNT" \
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
		"imaps://$S_USER@$S_CERT_NAME:$S_TLS_PORT/" "$MNT" 2>&1) &&
		fail "compress=maybe was accepted"
	case $out in
	*compress=maybe*) ;;
	*) fail "no clear message: $out" ;;
	esac
}

run_check "mount -o compress=yes: cat, grep, COMPRESS on every connection" \
	check_compress_yes
run_check "mount -o compress=no: no COMPRESS" check_compress_no
run_check "-o compress=maybe is refused" check_bad_value

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
