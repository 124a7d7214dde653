# mount_lib.sh - what the shell integration tests share (sourced, not run):
# their setup (arguments, environment, the checks that decide whether they
# can run here, the work directory and its cleanup on exit), throwaway IMAP
# servers, check bookkeeping, mounting and unmounting imapfs, finding the
# daemons a test started, and mt.py, an imaplib tool (on top of
# tests/harness/imapcheck.py) that seeds the account and tells what the
# server really holds.
#
# A test NAME_test.sh begins:
#   HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
#   . "$HERE/mount_lib.sh"
#   mount_test_init NAME "$@"      usage (exit 2), BUILDDIR, SOURCEDIR, HARNESS
#   require_fuse "WHY"             root, /dev/fuse, fusermount3 (else exit 77)
#   require_tools dovecot ...      each on PATH (else exit 77)
#   require_imapfs                 IMAPFS, IMAPFS_REAL (else exit 77)
#   make_workdir                   WORK, and cleanup on exit (which fails
#                                  on sanitizer reports)
# and may start servers with start_imap_server. On exit, cleanup unmounts
# what is in MOUNTS, stops the servers and deletes WORK; a test with more to
# stop redefines teardown.
# shellcheck shell=bash
# SC2034: MOUNT_ERROR and the like are read by the tests.
# SC2119, SC2120: remove_workdir's argument is optional.
# shellcheck disable=SC2034,SC2119,SC2120

# --- setup --------------------------------------------------------------

# mount_test_init NAME BUILDDIR SOURCEDIR: the arguments of NAME_test.sh and
# the environment every test runs in.
mount_test_init()
{
	TEST_NAME=$1
	shift
	if [ $# -ne 2 ]; then
		echo "usage: ${TEST_NAME}_test.sh BUILDDIR SOURCEDIR" >&2
		exit 2
	fi
	BUILDDIR=$1
	SOURCEDIR=$(cd "$2" && pwd) || exit 2
	HARNESS=$SOURCEDIR/tests/harness
	# The server start_imap_server starts: Dovecot unless the test calls
	# select_imap_server with IMAP_SERVER=cyrus in the environment.
	IMAP_SERVER_WANTED=${IMAP_SERVER:-dovecot}
	IMAP_SERVER=dovecot
	SERVER_SH=$HARNESS/dovecot.sh
	PATH=$PATH:/usr/sbin:/sbin
	# English error messages to match on; Python speaks UTF-8 regardless.
	export LC_ALL=C PYTHONUTF8=1 PYTHONIOENCODING=utf-8
	unset IMAPFS_PASSWORD
}

# select_imap_server: for a test that runs against Dovecot or, with
# IMAP_SERVER=cyrus in the environment, Cyrus (tests/harness/cyrus.sh: '.'
# as the delimiter, top-level folders, no bare LFs in messages). Sets
# IMAP_SERVER and SERVER_SH; skips when Dovecot is missing (cyrus.sh skips
# itself when Cyrus is not unpacked).
select_imap_server()
{
	IMAP_SERVER=$IMAP_SERVER_WANTED
	case $IMAP_SERVER in
	dovecot)
		require_tools dovecot
		;;
	cyrus)
		export MT_CRLF_ONLY=1
		;;
	*)
		echo "$TEST_NAME: unknown IMAP_SERVER=$IMAP_SERVER" >&2
		exit 2
		;;
	esac
	SERVER_SH=$HARNESS/$IMAP_SERVER.sh
}

# Ends the test as skipped (it cannot run here).
skip()
{
	echo "SKIP: $*"
	exit 77
}

# require_fuse WHY: skips unless we are root (for WHY), /dev/fuse exists and
# fusermount3 is installed.
require_fuse()
{
	[ "$(id -u)" = 0 ] || skip "must run as root ($1)"
	[ -c /dev/fuse ] || skip "/dev/fuse is missing"
	require_tools fusermount3
}

# require_tools TOOL...: skips unless every TOOL is on PATH.
require_tools()
{
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || skip "$tool is not installed"
	done
}

# Sets IMAPFS, the daemon under test (skips unless it is built), and
# IMAPFS_REAL, the path by which imapfs_pids knows its processes.
require_imapfs()
{
	IMAPFS=$(realpath -m "$BUILDDIR/fs/imapfs")
	[ -x "$IMAPFS" ] || skip "the daemon $IMAPFS is not built"
	IMAPFS_REAL=$(readlink -f "$IMAPFS")
}

# Sets FAULTPROXY (tests/tools/faultproxy); skips unless it is built.
require_faultproxy()
{
	FAULTPROXY=$(realpath -m "$BUILDDIR/tests/tools/faultproxy")
	[ -x "$FAULTPROXY" ] || skip "$FAULTPROXY is not built"
}

# Creates WORK, this run's directory under /tmp, and sets the traps that
# run cleanup on exit.
make_workdir()
{
	WORK=$(mktemp -d "/tmp/imapfs-$TEST_NAME-test.XXXXXX") || exit 1
	# Dovecot's unprivileged mail user must reach the server directory.
	chmod 0755 "$WORK"
	MT_HUNG_FLAG=$WORK/hung
	log_sanitizer_reports
	trap 'cleanup || exit 1' EXIT
	trap 'exit 1' INT TERM HUP
}

# make_mount_workdir: make_workdir, and the places in it of a test that
# mounts an account it seeds: the daemon's persistent cache (not the real
# home's), DOVE for the server, ENVF for its KEY=value lines, REF and
# MANIFEST for the reference copy of the account, MNT for the main mount.
make_mount_workdir()
{
	make_workdir
	export XDG_CACHE_HOME=$WORK/xdg-cache
	DOVE=$WORK/dovecot
	ENVF=$WORK/server.env
	REF=$WORK/ref
	MANIFEST=$WORK/manifest
	MNT=$WORK/mnt
}

# Under AddressSanitizer/UBSan (CI's second pass) a detached daemon's
# stderr is /dev/null, so its reports (a leak found when it exits after
# the unmount) would be lost: every sanitized program the test starts
# writes them to SANITIZER_DIR/report.PROGRAM.PID instead, and
# remove_workdir fails the test on any. Mode 1777: daemons of user mounts
# run as another user.
log_sanitizer_reports()
{
	local to
	SANITIZER_DIR=$WORK/sanitizer
	mkdir -m 1777 "$SANITIZER_DIR" || exit 1
	to=log_path=$SANITIZER_DIR/report:log_exe_name=1
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}$to
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}$to
	SANITIZED=
	ldd "$IMAPFS" 2>/dev/null | grep -q 'libasan\|libubsan' && SANITIZED=1
}

# Seconds any single filesystem or IMAP command may take before we call the
# daemon hung. Large enough for the 3 MB message on a slow CI machine.
MT_TIMEOUT=${MT_TIMEOUT:-60}

# Runs a command bounded by MT_TIMEOUT (SIGKILL 5 s after SIGTERM). Once a
# command timed out, the daemon is taken for hung (the file MT_HUNG_FLAG
# exists until the next mount) and later commands get 5 s, so that a hung
# daemon cannot stretch the run to hours.
t()
{
	local secs=$MT_TIMEOUT rc
	[ -n "${MT_HUNG_FLAG:-}" ] && [ -e "$MT_HUNG_FLAG" ] && secs=5
	timeout -k 5 "$secs" "$@"
	rc=$?
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		[ -n "${MT_HUNG_FLAG:-}" ] && : >"$MT_HUNG_FLAG"
	fi
	return $rc
}

# --- check bookkeeping --------------------------------------------------

PASSED=0
FAILED=0
CHECK_PROBLEMS=()

# Records one problem of the running check.
fail()
{
	CHECK_PROBLEMS+=("$*")
}

# Shortens command output for a one-line report.
oneline()
{
	tr '\r\n\t' '   ' | sed 's/  */ /g; s/^ //; s/ $//' | cut -c1-600
}

# run_check NAME FUNCTION: runs the check and prints ok/FAIL with details.
run_check()
{
	local name=$1 fn=$2 details
	CHECK_PROBLEMS=()
	"$fn"
	if [ ${#CHECK_PROBLEMS[@]} -eq 0 ]; then
		PASSED=$((PASSED + 1))
		echo "ok - $name"
	else
		FAILED=$((FAILED + 1))
		details=$(printf '%s; ' "${CHECK_PROBLEMS[@]}")
		details=${details%; }
		echo "FAIL - $name: $(printf '%s' "$details" | tr '\r\n' '  ' |
			cut -c1-2000)"
	fi
}

# expect_ok LABEL COMMAND...: fails the check unless COMMAND succeeds.
expect_ok()
{
	local label=$1 err rc
	shift
	err=$("$@" 2>&1 >/dev/null)
	rc=$?
	[ $rc -eq 0 ] && return 0
	[ $rc -eq 124 ] && err="timed out after ${MT_TIMEOUT}s"
	fail "$label: exit $rc: $(oneline <<<"$err")"
	return 1
}

# expect_error LABEL REGEX COMMAND...: the command must fail (not time out)
# and its stderr must match the extended REGEX (the expected strerror).
expect_error()
{
	local label=$1 re=$2 err rc
	shift 2
	err=$("$@" 2>&1 >/dev/null)
	rc=$?
	if [ $rc -eq 0 ]; then
		fail "$label: succeeded but must fail ($re)"
		return 1
	fi
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		fail "$label: timed out"
		return 1
	fi
	if ! grep -qE -- "$re" <<<"$err"; then
		fail "$label: wrong error (want $re): $(oneline <<<"$err")"
		return 1
	fi
	return 0
}

# same_bytes LABEL EXPECTED_FILE GOT_FILE: the files must hold the same bytes.
same_bytes()
{
	local out
	out=$(cmp -- "$2" "$3" 2>&1) && return 0
	fail "$1: $(oneline <<<"$out") (sizes $(stat -c %s -- "$2" \
		2>/dev/null || echo -)/$(stat -c %s -- "$3" 2>/dev/null ||
		echo -))"
	return 1
}

# same_list LABEL EXPECTED GOT: the two sets of lines (blank lines aside)
# must be equal; fails saying what is missing and what is unexpected.
same_list()
{
	local label=$1 exp got missing extra
	exp=$(printf '%s\n' "$2" | grep -v '^$' | sort)
	got=$(printf '%s\n' "$3" | grep -v '^$' | sort)
	[ "$exp" = "$got" ] && return 0
	missing=$(comm -23 <(echo "$exp") <(echo "$got") | tr '\n' ',')
	extra=$(comm -13 <(echo "$exp") <(echo "$got") | tr '\n' ',')
	fail "$label: missing [${missing%,}] unexpected [${extra%,}]"
	return 1
}

# --- mounts and daemons -------------------------------------------------

MOUNTS=()

# Whether DIR is a mount point, from mountinfo: never touches DIR itself,
# so a hung daemon cannot hang us.
is_mounted()
{
	local dir
	dir=$(realpath -m "$1")
	awk -v d="$dir" '$5 == d { found = 1 } END { exit !found }' \
		/proc/self/mountinfo
}

# Pids of imapfs daemons started by this test: their executable is the
# daemon under test and their command line mentions our work directory.
imapfs_pids()
{
	local p exe
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		exe=${exe% (deleted)}
		[ "$exe" = "$IMAPFS_REAL" ] || continue
		tr '\0' '\n' <"$p/cmdline" 2>/dev/null |
			grep -qF -- "$WORK" || continue
		echo "${p#/proc/}"
	done
}

# Pids of our daemons serving mount point DIR.
imapfs_pids_for()
{
	local p
	for p in $(imapfs_pids); do
		if tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null |
			grep -qxF -- "$1"; then
			echo "$p"
		fi
	done
}

# wait_gone SECONDS PID...: waits until none of the pids is alive (zombies
# count as gone); fails if some still are.
wait_gone()
{
	local secs=$1 i p any state
	shift
	for i in $(seq 1 $((secs * 10))); do
		any=
		for p in "$@"; do
			state=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null |
				cut -d' ' -f1)
			[ -n "$state" ] && [ "$state" != Z ] && any=1
		done
		[ -z "$any" ] && return 0
		sleep 0.1
	done
	return 1
}

# mount_imapfs MNT URL [imapfs options...]: mounts (the daemon forks itself
# once mounted); stderr goes to MNT.err. Fails unless MNT is then mounted,
# saying why in MOUNT_ERROR. Not to be run in a subshell: it records MNT
# in MOUNTS for the cleanup.
mount_imapfs()
{
	local mnt=$1 url=$2 rc i
	shift 2
	MOUNT_ERROR=
	rm -f "${MT_HUNG_FLAG:-}"
	mkdir -p "$mnt"
	MOUNTS+=("$mnt")
	t "$IMAPFS" "$@" "$url" "$mnt" </dev/null >"$mnt.out" 2>"$mnt.err"
	rc=$?
	if [ $rc -ne 0 ]; then
		MOUNT_ERROR="imapfs exited $rc: $(oneline <"$mnt.err")"
		return 1
	fi
	for i in $(seq 1 100); do
		is_mounted "$mnt" && return 0
		sleep 0.1
	done
	MOUNT_ERROR="imapfs exited 0 but $mnt is not mounted: $(oneline \
		<"$mnt.err")"
	return 1
}

# Unmounts MNT (lazily if it is busy) and ends the daemons serving it.
unmount_imapfs()
{
	local mnt=$1 pids p
	pids=$(imapfs_pids_for "$mnt")
	if is_mounted "$mnt"; then
		t fusermount3 -u "$mnt" 2>/dev/null ||
			t umount -l "$mnt" 2>/dev/null ||
			t fusermount3 -uz "$mnt" 2>/dev/null
	fi
	# shellcheck disable=SC2086
	if [ -n "$pids" ] && ! wait_gone 5 $pids; then
		for p in $pids; do
			kill -TERM "$p" 2>/dev/null
		done
		# shellcheck disable=SC2086
		wait_gone 5 $pids || for p in $pids; do
			kill -KILL "$p" 2>/dev/null
		done
	fi
}

# Polls COMMAND... every 0.2 s for up to SECONDS; succeeds once it does.
wait_for()
{
	local secs=$1 i
	shift
	for i in $(seq 1 $((secs * 5))); do
		"$@" && return 0
		sleep 0.2
	done
	"$@"
}

# Sorted names in DIR (one per line, raw bytes, dotfiles included).
names_in()
{
	t ls -A1 -- "$1" | LC_ALL=C sort
}

# The message files in DIR, sorted.
eml_names()
{
	names_in "$1" | grep '\.eml$'
}

# --- throwaway IMAP servers ---------------------------------------------

SERVERS=()
SERVER_ERROR=

# start_imap_server DIR ENVF [options...]: starts a server ($SERVER_SH,
# tests/harness/dovecot.sh unless the test chose cyrus.sh) in DIR, stopped
# by cleanup. The KEY=value lines it prints stay in ENVF (for imapcheck.py
# and mt.py) and are read into S_HOST, S_PORT, S_TLS_PORT, S_USER,
# S_PASSWORD, S_CA_FILE, S_OTHER_CA_FILE, S_CERT_NAME and S_DELIMITER ('/'
# unless the server says otherwise). On failure returns the script's
# status (77: the server cannot run here) and says why in SERVER_ERROR.
start_imap_server()
{
	local dir=$1 lines=$2 rc
	shift 2
	SERVER_ERROR=
	t "$SERVER_SH" start "$dir" --watch-pid $$ "$@" >"$lines" 2>"$lines.err"
	rc=$?
	if [ $rc -ne 0 ]; then
		SERVER_ERROR=$(oneline <"$lines.err")
		return $rc
	fi
	SERVERS+=("$dir")
	read_server_env "$lines"
}

# start_main_server DIR ENVF [options...]: start_imap_server for the
# test's own server, which it cannot do without: skips the test when the
# server cannot run here (77), ends it on any other failure.
start_main_server()
{
	local rc
	start_imap_server "$@"
	rc=$?
	[ $rc -eq 0 ] && return 0
	[ $rc -eq 77 ] && skip "$SERVER_ERROR"
	echo "Bail out! $IMAP_SERVER did not start: $SERVER_ERROR"
	exit 1
}

# read_server_env ENVF: sets the S_ variables (see start_imap_server) from
# the KEY=value lines of a server's ENVF; a test with a second server uses
# it to go back to the first.
read_server_env()
{
	local k v
	S_DELIMITER=
	while IFS='=' read -r k v; do
		case $k in
		HOST | PORT | TLS_PORT | USER | PASSWORD | CA_FILE | \
			OTHER_CA_FILE | CERT_NAME | DELIMITER)
			printf -v "S_$k" '%s' "$v"
			;;
		esac
	done <"$1"
	S_DELIMITER=${S_DELIMITER:-/}
}

# Stops the server started in DIR (for a check that takes it away).
stop_imap_server()
{
	local i
	t "$SERVER_SH" stop "$1" >/dev/null 2>&1
	for i in "${!SERVERS[@]}"; do
		[ "${SERVERS[i]}" = "$1" ] && unset 'SERVERS[i]'
	done
}

# Stops every server still running.
stop_imap_servers()
{
	local dir
	for dir in "${SERVERS[@]}"; do
		t "$SERVER_SH" stop "$dir" >/dev/null 2>&1
	done
	SERVERS=()
}

# write_password FILE: the server's password (S_PASSWORD) in FILE, mode 0600,
# for -o password_file.
write_password()
{
	install -m 0600 /dev/null "$1"
	printf '%s\n' "$S_PASSWORD" >"$1"
}

# --- cleanup on exit ----------------------------------------------------

CLEANED=
# Background helpers of the test, killed with the daemons on exit.
BG_PIDS=()

# Unmounts everything in MOUNTS, then kills the daemons of this test still
# alive and BG_PIDS.
end_mounts()
{
	local m
	for m in "${MOUNTS[@]}"; do
		unmount_imapfs "$m" 2>/dev/null
	done
	for m in $(imapfs_pids) "${BG_PIDS[@]}"; do
		kill -KILL "$m" 2>/dev/null
	done
}

SANITIZER_FAILED=

# Each sanitizer report (see log_sanitizer_reports) is a failure; its
# first lines are printed, as the daemon could not.
check_sanitizer_reports()
{
	local f
	for f in "$SANITIZER_DIR"/report.*; do
		[ -e "$f" ] || continue
		sed -n '1,25s/^/# /p' "$f"
		fail "$(basename "$f"): $(grep -m1 -E 'ERROR|runtime error' \
			"$f" | oneline) $(grep -m1 '^SUMMARY' "$f" | oneline)"
	done
}

# remove_workdir [WHY_KEEP]: deletes WORK, unless something in MOUNTS is
# still mounted (never delete through a live mount) or WHY_KEEP is given.
# Called once the daemons are gone: first fails on sanitizer reports.
remove_workdir()
{
	local m failed=$FAILED
	if [ -n "${SANITIZED:-}" ] || [ -n "$(ls -A "$SANITIZER_DIR" \
		2>/dev/null)" ]; then
		run_check "no sanitizer report from imapfs or the test's tools" \
			check_sanitizer_reports
		[ "$FAILED" = "$failed" ] || SANITIZER_FAILED=1
	fi
	for m in "${MOUNTS[@]}"; do
		if is_mounted "$m"; then
			echo "${TEST_NAME}_test: $m is still mounted; leaving $WORK" >&2
			return 0
		fi
	done
	if [ -n "${1:-}" ]; then
		echo "${TEST_NAME}_test: $1; leaving $WORK" >&2
		return 0
	fi
	# --one-file-system: never descend into a mount that slipped through.
	rm -rf --one-file-system "$WORK"
}

# What cleanup does. A test with more to stop (a proxy, helpers) redefines
# it from these parts.
teardown()
{
	end_mounts
	stop_imap_servers
	remove_workdir
}

# The EXIT trap (make_workdir sets it), also called by tests before their
# summary: runs teardown once. Fails if there were sanitizer reports (so
# that the trap makes the exit status 1 even when the summary was never
# printed).
cleanup()
{
	if [ -z "$CLEANED" ]; then
		CLEANED=1
		teardown
	fi
	[ -z "$SANITIZER_FAILED" ]
}

# --- mt.py: what the server holds ---------------------------------------

# ic ARGS...: tests/harness/imapcheck.py on the server of ENVF.
ic()
{
	t python3 "$HARNESS/imapcheck.py" --env "$ENVF" "$@"
}

# expect_one_new_message LABEL MAILBOX BEFORE EXPECTED_FILE: MAILBOX on the
# server must hold exactly one UID that BEFORE (its UID list, one a line)
# lacks, with the bytes of EXPECTED_FILE. Sets NEW_UID to that UID and
# returns 0 when there is exactly one (even if its bytes differ, so the
# caller can go on checking it), 1 otherwise. Not to be run in $(...): the
# failures it records would be lost with the subshell.
expect_one_new_message()
{
	local label=$1 box=$2 before=$3 exp=$4 new n
	NEW_UID=
	new=$(comm -13 <(sort <<<"$before") <(ic uids "$box" | sort))
	n=$(grep -c . <<<"$new")
	if [ "$n" -ne 1 ]; then
		fail "$label: $box gained $n messages, want 1"
		return 1
	fi
	NEW_UID=$new
	ic fetch "$box" "$new" >"$WORK/new-message.srv"
	same_bytes "$label" "$exp" "$WORK/new-message.srv"
	return 0
}

# Flags as a sorted, space-separated set.
norm_flags()
{
	tr ' ' '\n' | grep -v '^$' | sort | tr '\n' ' ' | sed 's/ $//'
}

# Reads the UID_<key>=N lines of the seed into SEED_UID_<key>.
load_seed()
{
	local k v
	while IFS='=' read -r k v; do
		case $k in
		UID_*) printf -v "SEED_$k" '%s' "$v" ;;
		esac
	done <"$WORK/seed.env"
}

# manifest_field PATH N: field N (2 size, 3 epoch, 4 flags) of PATH.
manifest_field()
{
	awk -F'\t' -v p="$1" -v n="$2" '$1 == p { print $n }' "$MANIFEST"
}

# mt ARGS...: WORK/mt.py (see write_mt_py) on the server of ENVF.
mt()
{
	MT_HARNESS=$HARNESS t python3 "$WORK/mt.py" "$ENVF" "$@"
}

# Writes mt.py to PATH. It imports imapcheck.py from MT_HARNESS.
write_mt_py()
{
	cat >"$1" <<'PYEOF'
"""mt.py - server-side view for mount_test.sh, through imaplib.

  mt.py ENV seed OUTDIR        create folders and messages; writes
                               OUTDIR/seed.env (UID_<key>=uid) and
                               OUTDIR/needles (paths holding NEEDLE)
  mt.py ENV dump REFDIR        BODY[] of every message into REFDIR/<path>;
                               prints "path<TAB>size<TAB>epoch<TAB>flags"
  mt.py ENV meta               same lines, without fetching bodies
  mt.py ENV info MBOX UID      "size<TAB>epoch<TAB>flags"
  mt.py ENV verify-tree DIR    DIR mirrors the account (bytes, mtimes)
  mt.py ENV same-messages A B  A and B hold the same (bytes, date) pairs
  mt.py ENV append-dated MBOX FILE EPOCH   prints the new UID
Paths are the filesystem's: "%" in a name becomes "%25", "<UID>.eml".
MBOX arguments separate levels with "/" whatever the server's delimiter.
Environment: MT_ODD_BOX names the folder that holds "50% off" on Dovecot;
MT_CRLF_ONLY=1 seeds no message with bare LFs (Cyrus refuses them).
"""
import hashlib
import os
import random
import re
import sys
import base64
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.environ["MT_HARNESS"])
import imapcheck as ic  # noqa: E402

MONTHS = {m: i + 1 for i, m in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}


# The server's hierarchy delimiter (DELIMITER in the env file; Dovecot's
# harness uses "/", Cyrus's "."). Mailbox names on the command line are
# written with "/" and translated by srv().
DELIM = "/"


def connect(envfile):
    global DELIM
    e = ic.read_env(envfile)
    DELIM = e.get("DELIMITER", "/") or "/"
    return ic.connect(e["HOST"], e["PORT"], e["USER"], e["PASSWORD"],
                      e["CA_FILE"], "plain")


def srv(name):
    """A "/"-separated mailbox name as the server spells it."""
    return name.replace("/", DELIM)


def fs_path(mailbox):
    """The filesystem path of a server mailbox name."""
    return "/".join(c.replace("%", "%25").replace("/", "%2F")
                    for c in mailbox.split(DELIM))


def internaldate_epoch(s):
    m = re.match(r"\s*(\d+)-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) "
                 r"([+-])(\d\d)(\d\d)$", s)
    if not m:
        raise ic.CheckError("bad INTERNALDATE %r" % s)
    d = datetime(int(m[3]), MONTHS[m[2]], int(m[1]), int(m[4]), int(m[5]),
                 int(m[6]), tzinfo=timezone.utc)
    off = timedelta(hours=int(m[8]), minutes=int(m[9]))
    if m[7] == "+":
        d -= off
    else:
        d += off
    return int(d.timestamp())


def selectable(conn):
    return [n for n, a in ic.list_with_attrs(conn)
            if "\\noselect" not in a.lower()
            and "\\nonexistent" not in a.lower()]


def messages(conn, mailbox):
    """[(uid, size, epoch, [flags])] of mailbox, by UID."""
    data = ic.ok(conn.select(ic.wire_mailbox(mailbox), True),
                 "SELECT " + mailbox)
    if int(data[0]) == 0:
        return []
    data = ic.ok(conn.uid("FETCH", "1:*",
                          "(UID RFC822.SIZE INTERNALDATE FLAGS)"),
                 "UID FETCH")
    out = []
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if not line:
            continue
        line = line.decode("utf-8", "replace")
        uid = re.search(r"UID (\d+)", line)
        size = re.search(r"RFC822\.SIZE (\d+)", line)
        date = re.search(r'INTERNALDATE "([^"]+)"', line)
        flags = re.search(r"FLAGS \(([^)]*)\)", line)
        if not (uid and size and date and flags):
            continue
        fl = sorted(f for f in flags[1].split() if f.lower() != "\\recent")
        out.append((int(uid[1]), int(size[1]),
                    internaldate_epoch(date[1]), fl))
    return sorted(out)


def body(conn, uid):
    for _, literal in ic.fetch_items(conn, uid, "(UID BODY.PEEK[])"):
        if literal is not None:
            return literal
    raise ic.CheckError("no BODY[] for UID %s" % uid)


def all_messages(conn, with_bodies=False):
    """Yields (mailbox, uid, size, epoch, flags, body or None)."""
    for mbox in selectable(conn):
        for uid, size, epoch, fl in messages(conn, mbox):
            b = body(conn, uid) if with_bodies else None
            yield mbox, uid, size, epoch, fl, b


def cmd_dump(conn, refdir):
    for mbox, uid, size, epoch, fl, b in all_messages(conn, True):
        path = "%s/%d.eml" % (fs_path(mbox), uid)
        os.makedirs(os.path.join(refdir, fs_path(mbox)), exist_ok=True)
        with open(os.path.join(refdir, path), "wb") as f:
            f.write(b)
        print("%s\t%d\t%d\t%s" % (path, size, epoch, " ".join(fl)))


def cmd_meta(conn):
    for mbox, uid, size, epoch, fl, _ in all_messages(conn):
        print("%s/%d.eml\t%d\t%d\t%s" % (fs_path(mbox), uid, size, epoch,
                                         " ".join(fl)))


def cmd_info(conn, mbox, uid):
    mbox = srv(mbox)
    for u, size, epoch, fl in messages(conn, mbox):
        if u == int(uid):
            print("%d\t%d\t%s" % (size, epoch, " ".join(fl)))
            return 0
    print("no UID %s in %s" % (uid, mbox), file=sys.stderr)
    return 1


def cmd_verify_tree(conn, top):
    """Every message (those flagged \\Deleted may be absent) must be in
    top with the same bytes and mtime; nothing else may be there."""
    problems = []
    expected_files = set()
    expected_dirs = set()
    for mbox, uid, size, epoch, fl, b in all_messages(conn, True):
        path = "%s/%d.eml" % (fs_path(mbox), uid)
        full = os.path.join(top, path)
        expected_files.add(path)
        if not os.path.exists(full):
            if "\\Deleted" not in fl:
                problems.append("missing " + path)
            continue
        with open(full, "rb") as f:
            got = f.read()
        if got != b:
            problems.append("%s: %d bytes differ from the server's %d" %
                            (path, len(got), len(b)))
        mtime = int(os.stat(full).st_mtime)
        if mtime != epoch:
            problems.append("%s: mtime %d != INTERNALDATE %d" %
                            (path, mtime, epoch))
    for mbox in [n for n, _ in ic.list_with_attrs(conn)]:
        parts = fs_path(mbox).split("/")
        for i in range(1, len(parts) + 1):
            expected_dirs.add("/".join(parts[:i]))
    for root, dirs, files in os.walk(top):
        rel = os.path.relpath(root, top)
        for d in dirs:
            p = d if rel == "." else rel + "/" + d
            if p not in expected_dirs:
                problems.append("unexpected directory " + p)
        for fn in files:
            p = fn if rel == "." else rel + "/" + fn
            if p not in expected_files:
                problems.append("unexpected file " + p)
    for p in problems:
        print(p)
    return 1 if problems else 0


def cmd_same_messages(conn, a, b):
    a, b = srv(a), srv(b)

    def pairs(mbox):
        ic.select(conn, mbox)
        return sorted((hashlib.sha256(body(conn, uid)).hexdigest(), epoch)
                      for uid, _, epoch, _ in messages(conn, mbox))
    pa, pb = pairs(a), pairs(b)
    if pa == pb:
        return 0
    print("%s has %d messages, %s has %d; %d (sha256, date) pairs differ"
          % (a, len(pa), b, len(pb), len(set(pa) ^ set(pb))))
    return 1


def cmd_append_dated(conn, mbox, path, epoch):
    with open(path, "rb") as f:
        print(ic.append(conn, srv(mbox), f.read(), None, int(epoch)))


def dated(y, mo, d, h, mi, s, tz_minutes=0):
    tz = timezone(timedelta(minutes=tz_minutes))
    return datetime(y, mo, d, h, mi, s, tzinfo=tz)


def mail(subject, text, date, frm="Bob Stone <bob@example.com>", nl="\r\n",
         extra=()):
    head = ["From: " + frm, "To: Alice <alice@example.org>",
            "Subject: " + subject,
            "Date: " + date.strftime("%a, %d %b %Y %H:%M:%S %z"),
            "Message-ID: <%s@mount-test.example>" %
            hashlib.sha1(subject.encode()).hexdigest()[:16],
            "MIME-Version: 1.0"] + list(extra)
    if not any(h.lower().startswith("content-type") for h in head):
        head += ["Content-Type: text/plain; charset=utf-8",
                 "Content-Transfer-Encoding: 8bit"]
    lines = head + [""] + text.split("\n")
    return nl.join(lines).encode("utf-8") + nl.encode()


def words(rng, n):
    w = ("meeting report budget release schedule draft review invoice "
         "travel server backup lunch project update question answer").split()
    out = []
    for i in range(n):
        out.append(rng.choice(w))
        if i % 12 == 11:
            out.append("\n")
    return " ".join(out).replace(" \n ", "\n")


def big_mail(date):
    rng = random.Random(20230315)
    blob = base64.b64encode(rng.randbytes(2_250_000)).decode()
    assert "NEEDLE" not in blob
    b64 = "\n".join(blob[i:i + 76] for i in range(0, len(blob), 76))
    parts = [
        "--BOUNDARY-42",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "The scans are attached.",
        "--BOUNDARY-42",
        "Content-Type: application/octet-stream; name=scans.bin",
        "Content-Transfer-Encoding: base64",
        "Content-Disposition: attachment; filename=scans.bin",
        "",
        b64,
        "--BOUNDARY-42",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Postscript at the very end: NEEDLE.",
        "--BOUNDARY-42--",
    ]
    return mail("Scans (big)", "\n".join(parts), date, extra=(
        'Content-Type: multipart/mixed; boundary="BOUNDARY-42"',))


def cmd_seed(conn, outdir):
    rng = random.Random(7)
    needle = []
    uids = {}
    # Cyrus refuses "%" in names (a LIST wildcard) and bare LFs in
    # messages; it gets "&" in that name (mUTF-7 "&-") and CRLF instead.
    odd = os.environ.get("MT_ODD_BOX", "50% off")
    lf = "\r\n" if os.environ.get("MT_CRLF_ONLY") else "\n"
    for mbox in ["Archive", "Archive/2023", "Reçus", "日本語", odd]:
        ic.ok(conn.create(ic.wire_mailbox(srv(mbox))), "CREATE " + mbox)
    plan = [
        ("INBOX", "small", mail("Hello", "Short one.", dated(
            2023, 1, 5, 8, 0, 0)), False),
        ("INBOX", "needle", mail("Report", words(rng, 3000) +
                                 "\nthe NEEDLE is here\n" + words(rng, 200),
                                 dated(2023, 2, 10, 12, 30, 0, 60)), True),
        ("INBOX", "big", big_mail(dated(2023, 3, 15, 18, 45, 10, -300)),
         True),
        ("INBOX", "utf8", mail("=?UTF-8?B?" + base64.b64encode(
            "Reçu: café ☕".encode()).decode() + "?=",
            "Voilà le reçu. Ça coûte 3 €.\n日本語のテキスト",
            dated(2022, 12, 31, 23, 59, 59),
            frm="Chloé Durand <chloe@example.fr>"), False),
        ("INBOX", "mv", mail("Move me", words(rng, 400),
                             dated(2023, 4, 1, 9, 15, 0, 120)), False),
        ("INBOX", "deleted", mail("Deleted elsewhere", words(rng, 50),
                                  dated(2023, 4, 2, 10, 0, 0)), False),
        ("INBOX", "rm", mail("Remove me", words(rng, 80),
                             dated(2023, 4, 3, 11, 0, 0)), False),
        ("INBOX", "xattr", mail("Flags", words(rng, 120),
                                dated(2023, 4, 4, 12, 0, 0)), False),
        ("INBOX", "barelf", mail("Unix newlines", words(rng, 60),
                                 dated(2023, 4, 5, 13, 0, 0), nl=lf),
         False),
        ("Archive", "arch1", mail("Old 1", words(rng, 100),
                                  dated(2021, 6, 1, 7, 0, 0)), False),
        ("Archive", "arch2", mail("Old 2", words(rng, 300),
                                  dated(2021, 7, 1, 7, 0, 0, -420)), False),
        ("Archive/2023", "a23n", mail("Needle archived", words(rng, 90) +
                                      "\nNEEDLE\n", dated(
                                          2023, 5, 6, 7, 8, 9)), True),
        ("Archive/2023", "a23", mail("Plain archived", words(rng, 90),
                                     dated(2023, 6, 7, 8, 9, 10)), False),
        ("Reçus", "recu", mail("Facture", "Montant dû : 12 €",
                               dated(2022, 3, 4, 5, 6, 7)), False),
        ("日本語", "jp", mail("=?UTF-8?B?" + base64.b64encode(
            "こんにちは".encode()).decode() + "?=", "日本語の本文です。",
            dated(2022, 8, 9, 10, 11, 12, 540)), False),
        (odd, "sale", mail("Sale", "Everything 50% off, NEEDLE",
                                 dated(2022, 11, 25, 0, 0, 1)), True),
    ]
    for mbox, key, msg, has_needle in plan:
        hdr = re.search(rb"^Date: (.*?)\r?$", msg, re.M)[1].decode()
        when = datetime.strptime(hdr, "%a, %d %b %Y %H:%M:%S %z")
        uids[key] = ic.append(conn, srv(mbox), msg, None, when)
        if has_needle:
            needle.append("%s/%d.eml" % (fs_path(srv(mbox)), uids[key]))
    ic.select(conn, "INBOX", readonly=False)
    ic.ok(conn.uid("STORE", str(uids["deleted"]), "+FLAGS.SILENT",
                   "(\\Deleted)"), "STORE")
    with open(os.path.join(outdir, "seed.env"), "w") as f:
        for key, uid in uids.items():
            f.write("UID_%s=%d\n" % (key, uid))
    with open(os.path.join(outdir, "needles"), "w") as f:
        f.write("".join(p + "\n" for p in sorted(needle)))
    return 0


def run(tool, table, connect=connect):
    """The main() of a server-side tool (this one, and fault_test.sh's
    ft.py, which imports it): ENV CMD ARGS... runs table[CMD](conn, *ARGS)
    on connect(ENV); an IMAP or network failure ends it with status 1 and
    a line naming the tool."""
    envfile, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    try:
        conn = connect(envfile)
        try:
            return table[cmd](conn, *args) or 0
        finally:
            try:
                conn.logout()
            except Exception:
                pass
    except (ic.CheckError, ic.imaplib.IMAP4.error, OSError) as e:
        print("%s %s: %s" % (tool, cmd, e), file=sys.stderr)
        return 1


def main():
    return run("mt.py", {"seed": cmd_seed, "dump": cmd_dump,
                         "meta": cmd_meta, "info": cmd_info,
                         "verify-tree": cmd_verify_tree,
                         "same-messages": cmd_same_messages,
                         "append-dated": cmd_append_dated})


if __name__ == "__main__":
    sys.exit(main())
PYEOF
}
