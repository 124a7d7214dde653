#!/bin/bash
# cache_test.sh - the persistent cache and change tracking of imapfs, with a
# real Dovecot and a real mount: remounts that show exactly what other
# clients changed, UIDVALIDITY changes, a corrupted cache file, the body
# cache size limit, reading with the server gone (and -o offline), IDLE, and
# proof on the wire that a no-change remount fetches no message metadata.
#
#   cache_test.sh BUILDDIR SOURCEDIR
#
# Prints "ok - NAME" / "FAIL - NAME: details", then "N passed, M failed";
# exits 77 where it cannot run (not root, no /dev/fuse or dovecot).
# shellcheck source-path=SCRIPTDIR
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init cache "$@"
require_fuse "FUSE mounts, Dovecot"
require_tools dovecot
require_imapfs

make_workdir
DOVE=$WORK/dovecot
ENVF=$WORK/server.env
MNT=$WORK/mnt
CACHE=$WORK/cache
LOG=$WORK/daemon.log

start_dovecot()
{
	local caps=()
	# CACHE_TEST_CAPS runs the suite against a server advertising only
	# these capabilities (the CONDSTORE-only and plain resync paths).
	[ -n "${CACHE_TEST_CAPS:-}" ] && caps=(--capability "$CACHE_TEST_CAPS")
	start_imap_server "$DOVE" "$ENVF" "${caps[@]}" || return 1
	# The default place, under XDG_CACHE_HOME (also checks the default).
	export XDG_CACHE_HOME=$WORK/xdg
	CACHE=$XDG_CACHE_HOME/imapfs/$S_USER@$S_CERT_NAME:$S_TLS_PORT
	write_password "$WORK/password"
}

# A message with a subject that names it, so content can be told apart.
make_msg()
{
	printf 'From: a@example.org\r\nSubject: %s\r\nMessage-ID: <%s@cache-test>\r\n\r\n%s body %s\r\n' \
		"$1" "$1" "$1" "${2:-}" >"$WORK/msg.eml"
}

append() { make_msg "$2" "${3:-}"; ic append "$1" "$WORK/msg.eml"; }

# Mounts in the foreground (so the protocol log can be read), detached.
mount_fg()
{
	local i
	mkdir -p "$MNT"
	MOUNTS+=("$MNT")
	: >"$LOG"
	G_MESSAGES_DEBUG=all setsid "$IMAPFS" -f -o debug_imap \
		-o "password_file=$WORK/password" -o "tls_ca_file=$S_CA_FILE" \
		"$@" \
		"imaps://$S_USER@$S_CERT_NAME:$S_TLS_PORT/" "$MNT" \
		</dev/null >/dev/null 2>"$LOG" &
	for i in $(seq 1 100); do
		is_mounted "$MNT" && return 0
		sleep 0.1
	done
	fail "mount did not appear: $(tail -c 600 "$LOG" | oneline)"
	return 1
}

umount_fg()
{
	unmount_imapfs "$MNT"
}

# Server lines logged since mark (a line count of $LOG).
log_since() { tail -n +"$(($1 + 1))" "$LOG"; }
log_mark() { wc -l <"$LOG"; }

check_seed()
{
	local i
	for i in $(seq 1 20); do append INBOX "inbox-$i" >/dev/null || fail "append"; done
	ic create Big >/dev/null || fail "create Big"
	python3 - "$ENVF" "$HARNESS" <<'PY' || fail "seeding Big"
import sys
sys.path.insert(0, sys.argv[2])
import imapcheck as ic
e = ic.read_env(sys.argv[1])
c = ic.connect(e["HOST"], e["PORT"], e["USER"], e["PASSWORD"], e["CA_FILE"],
               "plain")
for i in range(1500):
    msg = ("From: a@example.org\r\nSubject: big-%d\r\n\r\n%s\r\n"
           % (i, "line of text %d " % i * 20)).encode()
    ic.append(c, "Big", msg, None, 1600000000 + i)
PY
	ic create Moves >/dev/null
	ic create Recreated >/dev/null
	for i in 1 2 3; do append Recreated "old-$i" >/dev/null; done
	[ "$(ic count Big)" = 1500 ] || fail "Big holds $(ic count Big)"
}

check_first_mount()
{
	mount_fg -o dir_cache_timeout=600 || return
	mt verify-tree "$MNT" >"$WORK/verify" ||
		fail "tree differs: $(head -5 "$WORK/verify" | oneline)"
	ls "$CACHE"/*.meta >/dev/null 2>&1 || ls "$CACHE" | grep -q meta ||
		fail "no metadata files in $CACHE: $(ls "$CACHE" | oneline)"
	umount_fg
}

check_remount_shows_changes()
{
	local uids gone flagged new mark
	uids=$(ic uids INBOX)
	gone=$(sed -n 2p <<<"$uids")
	flagged=$(sed -n 3p <<<"$uids")
	ic store INBOX "$flagged" '\Flagged $Work' >/dev/null || fail "store"
	ic mark-deleted INBOX "$gone" >/dev/null && ic expunge INBOX >/dev/null ||
		fail "expunge"
	new=$(append INBOX "after-remount")
	mount_fg -o dir_cache_timeout=600 || return
	mark=$(log_mark)
	[ -e "$MNT/INBOX/$new.eml" ] || fail "new message $new.eml missing"
	[ ! -e "$MNT/INBOX/$gone.eml" ] || fail "expunged $gone.eml still shown"
	getfattr --only-values -n user.imap.flags "$MNT/INBOX/$flagged.eml" \
		2>/dev/null | grep -q 'Flagged' ||
		fail "flags of $flagged.eml not updated"
	[ "$(ls "$MNT/INBOX" | wc -l)" = "$(ic count INBOX)" ] ||
		fail "INBOX shows $(ls "$MNT/INBOX" | wc -l), server has $(ic count INBOX)"
	grep -q "after-remount body" "$MNT/INBOX/$new.eml" ||
		fail "new message content wrong"
	log_since "$mark" | grep -q "incremental resync" ||
		fail "INBOX was not resynced incrementally"
}

# The point of the cache: a big unchanged mailbox costs one STATUS.
check_no_change_wire()
{
	local mark fetches plain=
	# Without CONDSTORE flag changes can only be found by fetching all
	# flags (RFC 3501 has nothing cheaper); the listing must still hold.
	[ -n "${CACHE_TEST_CAPS:-}" ] && ! grep -q CONDSTORE <<<"$CACHE_TEST_CAPS" &&
		plain=1
	mark=$(log_mark)
	ls -l "$MNT/Big" >"$WORK/big.ls" || fail "ls Big"
	[ "$(grep -c '\.eml$' "$WORK/big.ls")" = 1500 ] ||
		fail "Big lists $(grep -c '\.eml$' "$WORK/big.ls") files"
	fetches=$(log_since "$mark" | grep -cE 'S: \* [0-9]+ FETCH')
	if [ -n "$plain" ]; then
		log_since "$mark" | grep -q 'RFC822.SIZE' &&
			fail "plain resync refetched sizes and dates"
		return 0
	fi
	[ "$fetches" = 0 ] ||
		fail "remount of unchanged Big received $fetches FETCH responses"
	log_since "$mark" | grep -qE 'C: A[0-9]+ STATUS Big' ||
		fail "no STATUS was sent for Big"
}

# After a remount every cached listing is due; listing the root asks
# STATUS of all of them at once (pipelined), so walking into the folders
# then sends nothing more for those that did not change.
check_walk_checks_at_once()
{
	local mark statuses after
	[ -n "${CACHE_TEST_CAPS:-}" ] && ! grep -q CONDSTORE <<<"$CACHE_TEST_CAPS" &&
		return 0 # without HIGHESTMODSEQ STATUS cannot tell
	umount_fg
	mount_fg -o dir_cache_timeout=600 || return
	mark=$(log_mark)
	ls "$MNT" >/dev/null || fail "ls of the root"
	statuses=$(log_since "$mark" | grep -cE 'C: A[0-9]+ STATUS ')
	[ "$statuses" -ge 3 ] ||
		fail "listing the root sent $statuses STATUS, expected one per folder"
	mark=$(log_mark)
	ls -l "$MNT/Big" "$MNT/Moves" "$MNT/Recreated" >/dev/null ||
		fail "ls of the folders"
	after=$(log_since "$mark" |
		grep -E 'C: A[0-9]+ (STATUS|UID FETCH|NOOP)' | oneline)
	[ -z "$after" ] ||
		fail "unchanged folders were asked again: ${after:0:300}"
}

check_body_cache_hit()
{
	local f mark
	f=$(ls "$MNT/Big" | head -1)
	cat "$MNT/Big/$f" >/dev/null || fail "first read"
	umount_fg
	mount_fg -o dir_cache_timeout=600 || return
	ls "$MNT/Big" >/dev/null
	mark=$(log_mark)
	cmp -s "$MNT/Big/$f" <(ic fetch Big "${f%.eml}") ||
		fail "cached body differs from the server's"
	log_since "$mark" | grep -q 'BODY.PEEK' &&
		fail "a cached body was fetched again"
	return 0
}

check_uidvalidity_change()
{
	ls "$MNT/Recreated" >/dev/null
	cat "$MNT/Recreated/1.eml" >/dev/null
	ic delete Recreated >/dev/null && ic create Recreated >/dev/null ||
		fail "recreate"
	append Recreated "fresh-1" >/dev/null
	setfattr -n user.imapfs.refresh -v 1 "$MNT" || fail "refresh xattr"
	[ "$(ls "$MNT/Recreated")" = "1.eml" ] ||
		fail "Recreated lists $(ls "$MNT/Recreated" | oneline)"
	grep -q "fresh-1 body" "$MNT/Recreated/1.eml" ||
		fail "stale bytes after UIDVALIDITY change: $(head -c 200 "$MNT/Recreated/1.eml" | oneline)"
}

check_idle()
{
	local new i seen=
	ls "$MNT/INBOX" >/dev/null
	sleep 1 # the watcher's IDLE is up
	new=$(append INBOX "idle-arrival")
	for i in $(seq 1 20); do
		if [ -e "$MNT/INBOX/$new.eml" ] &&
			ls "$MNT/INBOX" | grep -qx "$new.eml"; then
			seen=1
			break
		fi
		sleep 0.1
	done
	[ -n "$seen" ] || fail "new message not listed within 2 s (dir_cache_timeout=600)"
	umount_fg
}

# rm and mv must touch exactly one message, also without UIDPLUS and MOVE
# (cache-plain): then rm unflags others' \Deleted around a plain EXPUNGE,
# and mv is COPY, then that expunge.
check_rm_mv_exact()
{
	local a b c count
	a=$(append INBOX "rm-target")
	b=$(append INBOX "deleted-by-other")
	c=$(append INBOX "mv-target")
	ic mark-deleted INBOX "$b" >/dev/null || fail "mark-deleted"
	setfattr -n user.imapfs.refresh -v 1 "$MNT"
	rm "$MNT/INBOX/$a.eml" || fail "rm $a.eml"
	ic uids INBOX | grep -qx "$a" && fail "rm left UID $a on the server"
	ic uids INBOX | grep -qx "$b" || fail "rm expunged UID $b, flagged \\Deleted by another client"
	ic deleted-uids INBOX | grep -qx "$b" ||
		fail "UID $b lost its \\Deleted flag"
	# Moves holds no UID that low, so the name mv used is free there.
	count=$(ic count Moves)
	mv "$MNT/INBOX/$c.eml" "$MNT/Moves/" 2>"$WORK/mv.err" ||
		fail "mv $c.eml: $(oneline <"$WORK/mv.err")"
	ic uids INBOX | grep -qx "$c" && fail "mv left UID $c in INBOX"
	[ "$(ic count Moves)" = $((count + 1)) ] ||
		fail "Moves has $(ic count Moves) messages, want $((count + 1))"
	# Without UIDPLUS there is no COPYUID to learn the new UID from.
	if [ -z "${CACHE_TEST_CAPS:-}" ] || grep -q UIDPLUS <<<"$CACHE_TEST_CAPS"; then
		grep -q "mv-target body" "$MNT/Moves/$c.eml" ||
			fail "Moves/$c.eml does not resolve to the moved message right after mv"
	fi
}

check_corrupt_cache()
{
	local f
	# disk.c names a mailbox's file by the hex of its name.
	f=$CACHE/mbox-$(printf INBOX | od -An -tx1 | tr -d ' \n').meta
	[ -f "$f" ] || { fail "no cache file $f to corrupt: $(ls "$CACHE" | oneline)"; return; }
	printf 'garbage' | dd of="$f" bs=1 seek=40 conv=notrunc 2>/dev/null
	mount_fg -o dir_cache_timeout=600 || return
	[ "$(ls "$MNT/INBOX" | wc -l)" = "$(ic count INBOX)" ] ||
		fail "INBOX wrong after corrupt cache"
	mt verify-tree "$MNT" >"$WORK/verify" ||
		fail "tree differs: $(head -5 "$WORK/verify" | oneline)"
	grep -qi "discarded" "$LOG" || fail "no log line about the bad cache file"
	umount_fg
}

check_size_limit()
{
	local used
	rm -rf "$CACHE"
	mount_fg -o cache_size=200K || return
	cat "$MNT"/Big/*.eml >/dev/null || fail "reading Big"
	used=$(find "$CACHE/bodies" -type f -printf '%s\n' |
		awk '{ s += $1 } END { print int(s / 1024) }')
	[ "$used" -le 210 ] || fail "body cache holds ${used} KiB, limit 200"
	[ "$used" -ge 100 ] || fail "body cache holds only ${used} KiB"
	umount_fg
}

check_server_gone()
{
	local cached uncached
	mount_fg -o dir_cache_timeout=1 -o timeout=5 || return
	cached=$(ls "$MNT/INBOX" | head -1)
	cat "$MNT/INBOX/$cached" >/dev/null
	# Listed but never read, so its body is not in the cache.
	uncached=$(append Big "never-read").eml
	sleep 1.2
	[ -e "$MNT/Big/$uncached" ] || fail "new $uncached not listed"
	stop_imap_server "$DOVE"
	sleep 1.5
	[ "$(ls "$MNT/INBOX" | wc -l)" -gt 0 ] || fail "cached INBOX not listed"
	cat "$MNT/INBOX/$cached" >/dev/null || fail "cached body not readable"
	expect_fail_io "uncached body" cat "$MNT/Big/$uncached"
	expect_fail_io "mkdir offline" mkdir "$MNT/NewOffline"
	umount_fg
	# Mount from the cache alone.
	mount_fg -o offline || return
	cat "$MNT/INBOX/$cached" >/dev/null || fail "offline: cached body"
	[ "$(ls "$MNT/Big" | wc -l)" = 1501 ] || fail "offline: Big listing"
	expect_fail_io "offline write" mkdir "$MNT/Nope"
	umount_fg
}

expect_fail_io()
{
	local label=$1 start
	shift
	start=$(date +%s)
	if t "$@" >/dev/null 2>&1; then
		fail "$label: succeeded without a server"
	elif [ $(($(date +%s) - start)) -gt 20 ]; then
		fail "$label: took $(($(date +%s) - start)) s to fail"
	fi
}

write_mt_py "$WORK/mt.py"
start_dovecot || { echo "FAIL - dovecot: $SERVER_ERROR"; exit 1; }

run_check "seed the server" check_seed
run_check "first mount mirrors the server and writes the cache" check_first_mount
run_check "remount shows exactly what other clients changed" check_remount_shows_changes
run_check "no-change remount fetches no message metadata" check_no_change_wire
run_check "a walk after remount checks every listing in one go" \
	check_walk_checks_at_once
run_check "cached bodies are not fetched again" check_body_cache_hit
run_check "UIDVALIDITY change: fresh listing, no stale bytes" check_uidvalidity_change
run_check "rm and mv act on exactly one message" check_rm_mv_exact
run_check "IDLE: new mail listed within 2 s" check_idle
run_check "a corrupted cache file is discarded and rebuilt" check_corrupt_cache
run_check "the body cache stays under cache_size" check_size_limit
run_check "server gone: cached data readable, the rest fails cleanly" check_server_gone

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
