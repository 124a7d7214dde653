#!/bin/bash
# quirks_test.sh - imapfs on Dovecot dressed up as other servers' quirks:
# Courier's namespace (every folder below "INBOX.", '.' as the delimiter)
# and a server without IDLE (Yahoo), which must be polled. What the mount
# shows and does is checked against the server with imapcheck.py.
#
#   quirks_test.sh BUILDDIR SOURCEDIR
#
# Prints "ok - NAME" or "FAIL - NAME: details" per check. Exit 0 if all
# passed, 1 if not, 77 if it cannot run here (not root, no /dev/fuse,
# fusermount3, dovecot or daemon binary).
# shellcheck disable=SC2016 # single-quoted strings for eval
# shellcheck source-path=SCRIPTDIR
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init quirks "$@"
require_fuse "FUSE mounts, Dovecot"
require_tools dovecot
require_imapfs

make_workdir
# The daemon's persistent cache goes here, not into the real home.
export XDG_CACHE_HOME=$WORK/xdg-cache
ENVF=

# start_server NAME [dovecot.sh options]: a server in WORK/NAME; sets ENVF
# and the S_* variables, the password in WORK/NAME.pw.
start_server()
{
	local name=$1
	shift
	ENVF=$WORK/$name.env
	if ! start_imap_server "$WORK/$name" "$ENVF" "$@"; then
		fail "dovecot did not start: $SERVER_ERROR"
		return 1
	fi
	write_password "$WORK/$name.pw"
}

# mount_server NAME MNT [imapfs options]: STARTTLS on the plain port.
mount_server()
{
	local name=$1 mnt=$2
	shift 2
	mount_imapfs "$mnt" "imap://alice@localhost:$S_PORT/" \
		-o "tls_ca_file=$S_CA_FILE" -o "password_file=$WORK/$name.pw" \
		"$@" || {
		fail "$MOUNT_ERROR"
		return 1
	}
}

# Courier: "INBOX" and "INBOX.Sent"...; the namespace's prefix is INBOX.,
# so every folder is a directory inside /INBOX and nothing else is at the
# top. A '.' cannot be in a folder's name.
check_courier()
{
	local mnt=$WORK/mnt-courier uid got
	printf 'namespace inbox {\n  separator = .\n  prefix = INBOX.\n}\n' \
		>"$WORK/courier.conf"
	start_server courier --extra-conf "$WORK/courier.conf" || return
	ic create INBOX.Sent || fail "CREATE INBOX.Sent"
	printf 'Subject: sent\r\n\r\nhello\r\n' >"$WORK/sent.eml"
	uid=$(ic append INBOX.Sent "$WORK/sent.eml") || fail "APPEND"
	mount_server courier "$mnt" -o dir_cache_timeout=1 || return
	got=$(names_in "$mnt")
	[ "$got" = INBOX ] || fail "ls MNT: [$(oneline <<<"$got")], want INBOX"
	names_in "$mnt/INBOX" | grep -qx Sent || fail "ls INBOX lacks Sent"
	t cat "$mnt/INBOX/Sent/$uid.eml" >"$WORK/sent.got" 2>&1
	same_bytes "cat INBOX/Sent/$uid.eml" "$WORK/sent.eml" "$WORK/sent.got"
	expect_ok "mkdir INBOX/Projects" t mkdir "$mnt/INBOX/Projects"
	ic list | grep -qx INBOX.Projects ||
		fail "server lacks INBOX.Projects: $(ic list | oneline)"
	expect_ok "mkdir INBOX/Projects/2024" t mkdir "$mnt/INBOX/Projects/2024"
	ic list | grep -qx INBOX.Projects.2024 ||
		fail "server lacks INBOX.Projects.2024"
	expect_error "mkdir with a '.' in the name" 'Invalid argument' \
		t mkdir "$mnt/INBOX/a.b"
	# Outside the namespace: the server refuses, nothing is created.
	t mkdir "$mnt/Top" 2>/dev/null && fail "mkdir /Top succeeded"
	ic list | grep -qx Top && fail "server has a folder Top"
	expect_ok "mv to INBOX/Projects" t mv "$mnt/INBOX/Sent/$uid.eml" \
		"$mnt/INBOX/Projects/"
	[ "$(ic count INBOX.Projects)" = 1 ] ||
		fail "INBOX.Projects holds $(ic count INBOX.Projects) messages"
	[ "$(ic count INBOX.Sent)" = 0 ] || fail "INBOX.Sent still holds it"
	expect_ok "rmdir INBOX/Projects/2024" t rmdir "$mnt/INBOX/Projects/2024"
	ic list | grep -qx INBOX.Projects.2024 && fail "2024 still there"
	unmount_imapfs "$mnt"
}

# Yahoo has no IDLE: another client's changes must still show, by polling.
check_no_idle()
{
	local mnt=$WORK/mnt-noidle uid
	start_server noidle --capability "IMAP4rev1 LITERAL+ UIDPLUS MOVE" ||
		return
	ic capability | grep -qx IDLE && fail "the server still offers IDLE"
	mount_server noidle "$mnt" || return
	names_in "$mnt/INBOX" >/dev/null
	printf 'Subject: elsewhere\r\n\r\nnew\r\n' >"$WORK/new.eml"
	uid=$(ic append INBOX "$WORK/new.eml") || fail "APPEND"
	wait_for 15 eval 'eml_names "$mnt/INBOX" | grep -qx "$uid.eml"' ||
		fail "a message appended elsewhere is not listed after 15 s"
	unmount_imapfs "$mnt"
}

run_check "Courier namespace (INBOX. prefix, '.' delimiter)" check_courier
run_check "no IDLE (Yahoo): changes found by polling" check_no_idle

cleanup
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
