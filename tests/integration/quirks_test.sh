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

if [ $# -ne 2 ]; then
	echo "usage: quirks_test.sh BUILDDIR SOURCEDIR" >&2
	exit 2
fi
BUILDDIR=$1
SOURCEDIR=$(cd "$2" && pwd) || exit 2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
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
IMAPFS_REAL=$(readlink -f "$IMAPFS")

# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"

WORK=$(mktemp -d /tmp/imapfs-quirks-test.XXXXXX) || exit 1
chmod 0755 "$WORK"
export XDG_CACHE_HOME=$WORK/xdg-cache
MT_HUNG_FLAG=$WORK/hung
SERVERS=()
CLEANED=

cleanup()
{
	local m
	[ -n "$CLEANED" ] && return 0
	CLEANED=1
	for m in "${MOUNTS[@]}"; do
		unmount_imapfs "$m" 2>/dev/null
	done
	for m in "${SERVERS[@]}"; do
		t "$HARNESS/dovecot.sh" stop "$m" >/dev/null 2>&1
	done
	for m in "${MOUNTS[@]}"; do
		is_mounted "$m" && return 0
	done
	rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

ENVF=
ic()
{
	t python3 "$HARNESS/imapcheck.py" --env "$ENVF" "$@"
}

# start_server NAME [dovecot.sh options]: sets ENVF, S_PORT, S_CA_FILE.
start_server()
{
	local name=$1 dir=$WORK/$1
	shift
	ENVF=$WORK/$name.env
	if ! t "$HARNESS/dovecot.sh" start "$dir" --watch-pid $$ "$@" \
		>"$ENVF" 2>"$WORK/$name.err"; then
		fail "dovecot did not start: $(oneline <"$WORK/$name.err")"
		return 1
	fi
	SERVERS+=("$dir")
	S_PORT=$(sed -n 's/^PORT=//p' "$ENVF")
	S_CA_FILE=$(sed -n 's/^CA_FILE=//p' "$ENVF")
	sed -n 's/^PASSWORD=//p' "$ENVF" >"$WORK/$name.pw"
	chmod 0600 "$WORK/$name.pw"
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

# The small assertions of mount_test.sh, for the checks above.
expect_ok()
{
	local label=$1 err
	shift
	err=$("$@" 2>&1 >/dev/null) || fail "$label: $(oneline <<<"$err")"
}

expect_error()
{
	local label=$1 re=$2 err
	shift 2
	if err=$("$@" 2>&1 >/dev/null); then
		fail "$label: succeeded but must fail ($re)"
	elif ! grep -qE -- "$re" <<<"$err"; then
		fail "$label: wrong error (want $re): $(oneline <<<"$err")"
	fi
}

same_bytes()
{
	cmp -s -- "$2" "$3" || fail "$1: bytes differ"
}

eml_names()
{
	names_in "$1" | grep '\.eml$'
}

run_check "Courier namespace (INBOX. prefix, '.' delimiter)" check_courier
run_check "no IDLE (Yahoo): changes found by polling" check_no_idle

cleanup
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
