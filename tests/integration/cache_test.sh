#!/bin/bash
# cache_test.sh - the persistent cache and change tracking of imapfs, with a
# real Dovecot (or Cyrus, with IMAP_SERVER=cyrus) and a real mount: remounts
# that show exactly what other clients changed, UIDVALIDITY changes, a
# corrupted cache file, the body cache size limit, reading with the server
# gone (and -o offline), IDLE (new mail, expunges, flags, the mailbox listed
# last), SIGHUP, -o cache=none and =metadata, and proof on the wire of which
# resync path ran and that a remount fetches metadata of new messages only.
#
#   cache_test.sh BUILDDIR SOURCEDIR
#
# CACHE_TEST_CAPS makes Dovecot advertise only those capabilities (the
# CONDSTORE-only and plain resync paths); without it the checks expect what
# the server advertises (Dovecot and Cyrus: QRESYNC).
#
# Prints "ok - NAME" / "FAIL - NAME: details", then "N passed, M failed";
# exits 77 where it cannot run (not root, no /dev/fuse, no server).
# shellcheck source-path=SCRIPTDIR
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init cache "$@"
require_fuse "FUSE mounts, Dovecot"
select_imap_server
require_imapfs

if [ "$IMAP_SERVER" != dovecot ] && [ -n "${CACHE_TEST_CAPS:-}" ]; then
	echo "cache_test: CACHE_TEST_CAPS needs Dovecot (imap_capability)" >&2
	exit 2
fi

make_workdir
SERVER_DIR=$WORK/server
ENVF=$WORK/server.env
MNT=$WORK/mnt
CACHE=$WORK/cache
LOG=$WORK/daemon.log

start_server()
{
	local caps=()
	[ -n "${CACHE_TEST_CAPS:-}" ] && caps=(--capability "$CACHE_TEST_CAPS")
	start_imap_server "$SERVER_DIR" "$ENVF" "${caps[@]}" || return 1
	# What the checks expect of the wire follows from these.
	SERVER_CAPS=${CACHE_TEST_CAPS:-$(ic capability | tr '\n' ' ')}
	[ -n "$SERVER_CAPS" ] || { SERVER_ERROR="no CAPABILITY"; return 1; }
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
# The daemon's log since MARK as TAP comments (the last 60 lines), for a
# failure that the test alone cannot explain.
show_log_since() { log_since "$1" | tail -n 60 | sed 's/^/#   /'; }

# Whether the server advertises capability CAP.
has_cap() { [[ " $SERVER_CAPS " == *" $1 "* ]]; }

# The resync path the server's capabilities allow: qresync, condstore or
# plain.
resync_variant()
{
	if has_cap QRESYNC; then
		echo qresync
	elif has_cap CONDSTORE; then
		echo condstore
	else
		echo plain
	fi
}

# FETCH responses logged since mark that carry a size: message metadata
# fetched (listings), as opposed to flags only or bodies.
sized_fetches() { log_since "$1" | grep -cE 'S: \* [0-9]+ FETCH .*RFC822\.SIZE'; }

# The hex of a mailbox name, as disk.c names its cache file.
meta_file() { printf '%s/mbox-%s.meta' "$1" "$(printf %s "$2" | od -An -tx1 | tr -d ' \n')"; }

# Whether NAME is in the listing of mailbox directory DIR.
listed() { ls "$MNT/$1" 2>/dev/null | grep -qx "$2"; }
unlisted() { ! listed "$@" && [ ! -e "$MNT/$1/$2" ]; }
shown() { listed "$@" && [ -e "$MNT/$1/$2" ]; }

# has_flag DIR NAME FLAG: the message's user.imap.flags name FLAG.
has_flag()
{
	getfattr --only-values -n user.imap.flags "$MNT/$1/$2" 2>/dev/null |
		grep -qw -- "$3"
}

# Whether the second watcher, switched to MAILBOX since mark, runs IDLE
# there: the daemon's status says so (it says "idle" just before the
# SELECT), and a server continuation came after the mark.
watching()
{
	getfattr --only-values -n user.imapfs.status "$MNT" 2>/dev/null |
		grep -qF "{\"mailbox\":\"$2\",\"state\":\"idle\"}]" &&
		log_since "$1" | grep -qE '^.*S: \+ '
}

check_seed()
{
	local i
	for i in $(seq 1 20); do append INBOX "inbox-$i" >/dev/null || fail "append"; done
	ic create Big >/dev/null || fail "create Big"
	python3 - "$ENVF" "$HARNESS" <<'PY' || fail "seeding Big"
import imaplib
import sys
sys.path.insert(0, sys.argv[2])
import imapcheck as ic
e = ic.read_env(sys.argv[1])
c = ic.connect(e["HOST"], e["PORT"], e["USER"], e["PASSWORD"], e["CA_FILE"],
               "plain")
msgs = [("From: a@example.org\r\nSubject: big-%d\r\n\r\n%s\r\n"
         % (i, "line of text %d " % i * 20)).encode() for i in range(1500)]
caps = ic.ok(c.capability(), "CAPABILITY")[0].decode().split()
if "MULTIAPPEND" in caps and "LITERAL+" in caps:
    # One APPEND of all (RFC 3502): Cyrus takes over a minute for 1500
    # single ones, as it syncs each to disk.
    tag = c._new_tag()
    c.send(tag + b" APPEND Big" + b"".join(
        b" %s {%d+}\r\n%s" % (imaplib.Time2Internaldate(1600000000 + i)
                                .encode(), len(m), m)
        for i, m in enumerate(msgs)) + b"\r\n")
    ic.ok(c._get_tagged_response(tag), "MULTIAPPEND Big")
else:
    for i, m in enumerate(msgs):
        ic.append(c, "Big", m, None, 1600000000 + i)
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

# -o cache=none: nothing goes to disk, so a remount lists from the server
# again. Own cache_dir, so the account's usual cache stays out of it.
check_cache_none()
{
	local dir=$WORK/cache-none f n total
	total=$(ic count Big)
	mount_fg -o cache=none -o "cache_dir=$dir" -o dir_cache_timeout=600 ||
		return
	[ "$(ls "$MNT/Big" | wc -l)" = "$total" ] || fail "Big not listed"
	f=$(ls "$MNT/Big" | head -1)
	cat "$MNT/Big/$f" >/dev/null || fail "reading Big/$f"
	umount_fg
	[ -z "$(find "$dir" -mindepth 1 2>/dev/null | head -3)" ] ||
		fail "cache=none wrote $(find "$dir" -mindepth 1 | head -3 | oneline)"
	mount_fg -o cache=none -o "cache_dir=$dir" -o dir_cache_timeout=600 ||
		return
	ls -l "$MNT/Big" >/dev/null || fail "ls Big after remount"
	n=$(sized_fetches 0)
	[ "$n" -ge "$total" ] ||
		fail "remount with cache=none fetched $n sizes, Big alone has $total"
	umount_fg
}

# -o cache=metadata: listings persist (a remount fetches no sizes), bodies
# do not (nothing stored, and read again from the server).
check_cache_metadata()
{
	local dir=$WORK/cache-meta f n extra mark total
	total=$(ic count Big)
	mount_fg -o cache=metadata -o "cache_dir=$dir" -o dir_cache_timeout=600 ||
		return
	ls -l "$MNT/Big" >/dev/null || fail "ls Big"
	f=$(ls "$MNT/Big" | head -1)
	cmp -s "$MNT/Big/$f" <(ic fetch Big "${f%.eml}") ||
		fail "Big/$f differs from the server's"
	umount_fg
	[ -f "$(meta_file "$dir" Big)" ] ||
		fail "no listing of Big saved: $(ls "$dir" 2>&1 | oneline)"
	extra=$(find "$dir" -mindepth 1 ! -name '*.meta' ! -name lock | head -3 | oneline)
	[ -z "$extra" ] || fail "cache=metadata stored more than listings: $extra"
	mount_fg -o cache=metadata -o "cache_dir=$dir" -o dir_cache_timeout=600 ||
		return
	[ "$(ls -l "$MNT/Big" | grep -c '\.eml$')" = "$total" ] ||
		fail "Big lists $(ls "$MNT/Big" | wc -l) after remount, want $total"
	n=$(sized_fetches 0)
	[ "$n" = 0 ] || fail "remount with cache=metadata fetched $n sizes"
	mark=$(log_mark)
	cmp -s "$MNT/Big/$f" <(ic fetch Big "${f%.eml}") ||
		fail "Big/$f differs after remount"
	log_since "$mark" | grep -qE "C: A[0-9]+ UID FETCH ([0-9:,]*,)?${f%.eml}([,:][0-9:,*]*)? \([^)]*BODY\.PEEK" ||
		fail "Big/$f was not fetched again: was its body stored?"
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
	CHANGED_GONE=$gone CHANGED_FLAGGED=$flagged CHANGED_NEW=$new
	mount_fg -o dir_cache_timeout=600 || return
	mark=$(log_mark)
	[ -e "$MNT/INBOX/$new.eml" ] || fail "new message $new.eml missing"
	[ ! -e "$MNT/INBOX/$gone.eml" ] || fail "expunged $gone.eml still shown"
	has_flag INBOX "$flagged.eml" Flagged ||
		fail "flags of $flagged.eml not updated"
	[ "$(ls "$MNT/INBOX" | wc -l)" = "$(ic count INBOX)" ] ||
		fail "INBOX shows $(ls "$MNT/INBOX" | wc -l), server has $(ic count INBOX)"
	grep -q "after-remount body" "$MNT/INBOX/$new.eml" ||
		fail "new message content wrong"
	log_since "$mark" | grep -q "incremental resync" ||
		fail "INBOX was not resynced incrementally"
}

# Only the wire tells which resync path that remount took (all of them log
# "incremental resync"): the cheapest one the server offers, fetching sizes
# and dates of the new message alone and flags of the re-flagged one alone.
check_resync_path_wire()
{
	local cmds others
	[ -n "${CHANGED_NEW:-}" ] || { fail "no remount to look at"; return; }
	# The whole log of the remount: it touched only INBOX.
	cmds=$(grep -E 'C: A[0-9]+ ' "$LOG")
	case $(resync_variant) in
	qresync)
		grep -qE 'C: A[0-9]+ SELECT "?INBOX"? \(QRESYNC \([0-9]+ [0-9]+' <<<"$cmds" ||
			fail "no SELECT INBOX (QRESYNC (uidvalidity modseq)) sent"
		grep -qE "S: \* VANISHED \(EARLIER\) ([0-9:,]*[,:])?$CHANGED_GONE([,:]|\$)" "$LOG" ||
			fail "no VANISHED (EARLIER) for expunged UID $CHANGED_GONE"
		grep -qE 'UID FETCH 1:\* |CHANGEDSINCE|UID SEARCH' <<<"$cmds" &&
			fail "QRESYNC remount sent $(grep -E 'UID FETCH 1:\* |CHANGEDSINCE|UID SEARCH' <<<"$cmds" | head -1 | oneline)"
		;;
	condstore)
		grep -qE 'UID FETCH 1:\* \(UID FLAGS MODSEQ\) \(CHANGEDSINCE [0-9]+\)' <<<"$cmds" ||
			fail "no UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE m) sent"
		grep -qE 'UID SEARCH RETURN \(ALL\)' <<<"$cmds" ||
			fail "expunges not looked for with UID SEARCH RETURN (ALL)"
		grep -q 'QRESYNC' <<<"$cmds" &&
			fail "CONDSTORE-only server was sent QRESYNC"
		;;
	plain)
		grep -qE 'UID FETCH 1:\* \(UID FLAGS\)$' <<<"$cmds" ||
			fail "no UID FETCH 1:* (FLAGS) sent"
		grep -qE 'UID SEARCH ALL$' <<<"$cmds" ||
			fail "expunges not looked for with UID SEARCH ALL"
		grep -qE 'CHANGEDSINCE|QRESYNC|MODSEQ' <<<"$cmds" &&
			fail "plain server was sent $(grep -E 'CHANGEDSINCE|QRESYNC|MODSEQ' <<<"$cmds" | head -1 | oneline)"
		;;
	esac
	# Sizes and dates: only the new message's.
	others=$(grep -E 'S: \* [0-9]+ FETCH .*RFC822\.SIZE' "$LOG" |
		grep -oE '[( ]UID [0-9]+' | grep -oE '[0-9]+' | sort -un | oneline)
	[ "$others" = "$CHANGED_NEW" ] ||
		fail "remount fetched sizes of UIDs '${others:0:200}', want only $CHANGED_NEW"
	# Flags alone: with MODSEQs, only those of the changed messages.
	[ "$(resync_variant)" = plain ] && return 0
	others=$(grep -E 'S: \* [0-9]+ FETCH .*FLAGS' "$LOG" |
		grep -vE 'RFC822\.SIZE|BODY' |
		grep -oE '[( ]UID [0-9]+' | grep -oE '[0-9]+' |
		grep -vx "$CHANGED_NEW" | sort -un | oneline)
	[ "$others" = "$CHANGED_FLAGGED" ] ||
		fail "remount fetched flags of old UIDs '${others:0:200}', want only $CHANGED_FLAGGED"
}

# The point of the cache: a big unchanged mailbox costs one STATUS.
check_no_change_wire()
{
	local mark fetches plain=
	# Without CONDSTORE flag changes can only be found by fetching all
	# flags (RFC 3501 has nothing cheaper); the listing must still hold.
	has_cap CONDSTORE || plain=1
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
	has_cap CONDSTORE || return 0 # without HIGHESTMODSEQ STATUS cannot tell
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

# Bodies of mailbox NAME in the body cache (files named by UID).
cached_bodies()
{
	local hex
	hex=$(printf '%s' "$1" | od -An -tx1 | tr -d ' \n')
	find "$CACHE/bodies/mbox-$hex" -type f -name '[0-9]*' 2>/dev/null |
		wc -l
}

# A walk that finishes one folder in order goes on to the next folder in
# readdir order (subfolders first, then the parent's own messages):
# the next folder's first bodies arrive before anything opens it.
check_walk_goes_on()
{
	local d top a b i got mark
	d=$(ic delimiter) || { fail "delimiter"; return; }
	top=Walk
	for box in "$top" "Walk${d}a" "Walk${d}b"; do
		ic create "$box" >/dev/null || fail "create $box"
	done
	for i in $(seq 1 24); do
		append "Walk${d}a" "walk-a-$i" >/dev/null &&
			append "Walk${d}b" "walk-b-$i" >/dev/null || fail "append"
	done
	append "$top" "walk-top-1" >/dev/null
	setfattr -n user.imapfs.refresh -v 1 "$MNT" || fail "refresh xattr"
	# The walk's order is the directory's (the server's LIST order).
	a=$(ls -f "$MNT/Walk" | grep -vx '\.\|\.\.\|.*\.eml' | head -1)
	b=$(ls -f "$MNT/Walk" | grep -vx '\.\|\.\.\|.*\.eml' | tail -1)
	[ "$a $b" = "a b" ] || [ "$a $b" = "b a" ] ||
		{ fail "ls -f Walk: [$(ls -f "$MNT/Walk" | oneline)]"; return; }
	ls "$MNT/Walk/$a" >/dev/null
	[ "$(cached_bodies "$b")" = 0 ] || fail "b cached before the walk"
	mark=$(log_mark)
	# In listing order, as grep -r reads a folder.
	for f in $(ls -f "$MNT/Walk/$a" | grep '\.eml$'); do
		cat "$MNT/Walk/$a/$f" >/dev/null || fail "cat $a/$f"
	done
	if ! wait_for 5 eval '[ "$(cached_bodies "Walk$d$b")" -ge 8 ]'; then
		fail "after a walk through Walk/$a," \
			"$(cached_bodies "Walk$d$b") bodies of Walk/$b cached," \
			"want 8 or more"
		show_log_since "$mark"
	fi
	# One folder ahead at most: nothing of the folder after that (the
	# parent's own message), until the walk gets there.
	sleep 1
	[ "$(cached_bodies "$top")" = 0 ] ||
		fail "the walk's prefetch ran two folders ahead"
	# What a walk reads next is right, cached or not.
	got=$(grep -rl "walk-b-7 body" "$MNT/Walk" | sed "s|^$MNT/||")
	[ "$got" = "Walk/b/7.eml" ] || fail "grep walk-b-7 found [$(oneline <<<"$got")]"
	[ "$(grep -rh '^Subject: walk-' "$MNT/Walk" | sort -u | wc -l)" = 49 ] ||
		fail "grep -r Walk did not see all 49 messages once"
}

# cat of a message over 1 MiB asks for its whole body at once (its first
# read is large); the default window would take two round trips.
check_bulk_read()
{
	local uid mark n
	ic create Large >/dev/null || fail "create Large"
	python3 -c 'import sys
body = b"".join(b"line %06d of a large message, to be read whole\r\n" % i
                for i in range(30000))
sys.stdout.buffer.write(b"From: a@example.org\r\nSubject: large\r\n\r\n" + body)
' >"$WORK/large.eml"
	uid=$(ic append Large "$WORK/large.eml") || { fail "append"; return; }
	setfattr -n user.imapfs.refresh -v 1 "$MNT" || fail "refresh xattr"
	mark=$(log_mark)
	cat "$MNT/Large/$uid.eml" >"$WORK/large.got" || fail "cat"
	cmp -s "$WORK/large.eml" "$WORK/large.got" ||
		fail "cat of Large/$uid.eml differs from what was appended"
	n=$(log_since "$mark" |
		grep -cE "C: A[0-9]+ UID FETCH $uid \(UID BODY\.PEEK")
	if [ "$n" != 1 ]; then
		fail "cat of a $(stat -c %s "$WORK/large.eml")-byte message" \
			"took $n fetches, want 1"
		show_log_since "$mark"
	fi
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

# A file opened before its folder was deleted and created again (a new
# UIDVALIDITY) is read as the message it was, or fails; never as the new
# message that took its UID.
check_open_across_uidvalidity()
{
	ic create Uvc >/dev/null || fail "create Uvc"
	append Uvc "uv-old" >/dev/null || fail "append"
	setfattr -n user.imapfs.refresh -v 1 "$MNT" || fail "refresh xattr"
	[ "$(ls "$MNT/Uvc")" = "1.eml" ] || fail "Uvc lists $(ls "$MNT/Uvc" | oneline)"
	exec 3<"$MNT/Uvc/1.eml"
	ic delete Uvc >/dev/null && ic create Uvc >/dev/null || fail "recreate"
	append Uvc "uv-new" >/dev/null
	[ "$(ic uids Uvc)" = 1 ] || fail "the new Uvc holds UIDs $(ic uids Uvc | oneline), not 1"
	if cat <&3 >"$WORK/uv.got" 2>/dev/null; then
		grep -q "uv-old body" "$WORK/uv.got" ||
			fail "read $(head -c 100 "$WORK/uv.got" | oneline), not the old message"
	fi
	exec 3<&-
	grep -q "uv-new" "$WORK/uv.got" &&
		fail "a file opened before the UIDVALIDITY change read the new message"
	return 0
}

# rm and a flag change on a file listed before its folder was deleted and
# created again fail (ENOENT): the UID they would name is another
# message's now, which they must leave alone.
check_change_across_uidvalidity()
{
	# Without a watcher, so that the daemon cannot learn of the new
	# folder before the rm (which would then rightly remove its message).
	umount_fg
	mount_fg -o dir_cache_timeout=600 -o no_watch || return
	ic create Uvd >/dev/null || fail "create Uvd"
	append Uvd "uvd-old" >/dev/null || fail "append"
	setfattr -n user.imapfs.refresh -v 1 "$MNT" || fail "refresh xattr"
	[ "$(ls "$MNT/Uvd")" = "1.eml" ] || fail "Uvd lists $(ls "$MNT/Uvd" | oneline)"
	ic delete Uvd >/dev/null && ic create Uvd >/dev/null || fail "recreate"
	append Uvd "uvd-new" >/dev/null
	[ "$(ic uids Uvd)" = 1 ] || fail "the new Uvd holds UIDs $(ic uids Uvd | oneline), not 1"
	setfattr -n user.imap.flags -v '\Flagged' "$MNT/Uvd/1.eml" 2>/dev/null &&
		fail "setting flags on the old Uvd/1.eml succeeded"
	rm "$MNT/Uvd/1.eml" 2>/dev/null && fail "rm of the old Uvd/1.eml succeeded"
	[ "$(ic uids Uvd)" = 1 ] ||
		fail "the new message UID 1 is gone: the rm meant for the old one expunged it"
	ic flags Uvd 1 | grep -q Flagged &&
		fail "the new message UID 1 got the flag meant for the old one"
	umount_fg
	mount_fg -o dir_cache_timeout=600
}

# arrives MAILBOX SUBJECT SECS: another client appends a message, which
# must show (listed and there) within SECS; with dir_cache_timeout=600
# only a watcher's IDLE can explain that.
arrives()
{
	local new
	new=$(append "$1" "$2") || { fail "append to $1"; return 1; }
	wait_for "$3" shown "$1" "$new.eml" || {
		fail "new $new.eml in $1 not listed within $3 s (dir_cache_timeout=600)"
		return 1
	}
}

check_idle()
{
	ls "$MNT/INBOX" >/dev/null
	sleep 1 # the watcher's IDLE is up
	arrives INBOX "idle-arrival" 2
}

# With dir_cache_timeout=600 only the IDLE watcher can explain a change
# showing within seconds: an expunge, then a flag change, in INBOX.
check_idle_expunge_flags()
{
	local uids gone flag
	uids=$(ic uids INBOX)
	gone=$(sed -n 1p <<<"$uids")
	flag=$(sed -n 2p <<<"$uids")
	listed INBOX "$gone.eml" || { fail "$gone.eml not listed to begin with"; return; }
	has_flag INBOX "$flag.eml" IdleMark && fail "$flag.eml flagged already"
	ic mark-deleted INBOX "$gone" >/dev/null && ic expunge INBOX >/dev/null ||
		fail "expunge"
	wait_for 3 unlisted INBOX "$gone.eml" ||
		fail "$gone.eml still there 3 s after another client expunged it"
	ic store INBOX "$flag" '$IdleMark' >/dev/null || fail "store"
	wait_for 3 has_flag INBOX "$flag.eml" IdleMark ||
		fail "$flag.eml flags not updated 3 s after another client set them"
}

# Lists MAILBOX, so that the second watcher follows it there, and waits
# until its IDLE runs.
watch_by_listing()
{
	local mark
	mark=$(log_mark)
	ls "$MNT/$1" >/dev/null || {
		fail "ls $1"
		show_log_since "$mark"
		return 1
	}
	wait_for 5 watching "$mark" "$1" ||
		{ fail "no IDLE on $1 within 5 s of listing it"; return 1; }
}

# The second watcher follows the mailbox most recently listed.
check_idle_last_listed()
{
	watch_by_listing Recreated && watch_by_listing Moves || return
	arrives Moves "idle-moves" 3
}

# SIGHUP drops cached listings: a change in a mailbox no watcher looks at
# shows at the next look, with dir_cache_timeout=600.
sighup_refresh()
{
	local new pid
	# Recreated listed (fresh for 600 s), then the watcher off it.
	watch_by_listing Recreated && watch_by_listing Moves || return
	new=$(append Recreated "hup-arrival")
	listed Recreated "$new.eml" &&
		{ fail "$new.eml listed before SIGHUP: cannot tell what refreshed it"; return; }
	pid=$(imapfs_pids_for "$MNT")
	[ -n "$pid" ] || { fail "no daemon pid for $MNT"; return; }
	kill -HUP "$pid" || fail "kill -HUP $pid"
	wait_for 3 listed Recreated "$new.eml" ||
		fail "$new.eml not listed after SIGHUP"
	is_mounted "$MNT" || fail "SIGHUP ended the daemon"
	grep -q "refresh requested" "$LOG" || fail "no log line about the refresh"
}

check_sighup()
{
	sighup_refresh
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
	if has_cap UIDPLUS; then
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

# A message opened while its body was cached, then evicted before its
# first read (the daemon opens cached bodies at the first read): the read
# fetches it from the server, whole and right.
check_evicted_before_read()
{
	local f uid mark
	rm -rf "$CACHE"
	mount_fg -o cache_size=200K || return
	f=$(ls "$MNT/Big" | head -1)
	uid=${f%.eml}
	cat "$MNT/Big/$f" >/dev/null || fail "first read"
	[ "$(find "$CACHE/bodies" -type f -name "$uid" | wc -l)" = 1 ] ||
		fail "$f not in the body cache"
	umount_fg
	mount_fg -o cache_size=200K -o dir_cache_timeout=600 || return
	exec 3<"$MNT/Big/$f"
	ls "$MNT/Big" | tail -n +2 | sed "s|^|$MNT/Big/|" | xargs cat >/dev/null ||
		fail "reading the rest of Big"
	[ "$(find "$CACHE/bodies" -type f -name "$uid" | wc -l)" = 0 ] ||
		fail "$f was not evicted"
	mark=$(log_mark)
	cmp -s <(cat <&3) <(ic fetch Big "$uid") ||
		fail "$f read after its eviction differs from the server's"
	exec 3<&-
	log_since "$mark" | grep -qE "C: A[0-9]+ UID FETCH $uid .*BODY\.PEEK" ||
		fail "$f was not fetched again"
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
	stop_imap_server "$SERVER_DIR"
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
start_server || { echo "FAIL - $IMAP_SERVER: $SERVER_ERROR"; exit 1; }

run_check "seed the server" check_seed
run_check "first mount mirrors the server and writes the cache" check_first_mount
run_check "cache=none: nothing on disk, a remount lists again" check_cache_none
run_check "cache=metadata: listings persist, bodies do not" check_cache_metadata
run_check "remount shows exactly what other clients changed" check_remount_shows_changes
run_check "the remount took the $(resync_variant) path, fetching only changes" \
	check_resync_path_wire
run_check "no-change remount fetches no message metadata" check_no_change_wire
run_check "a walk after remount checks every listing in one go" \
	check_walk_checks_at_once
run_check "cached bodies are not fetched again" check_body_cache_hit
run_check "cat of a large message: one fetch" check_bulk_read
run_check "a walk goes on to the next folder" check_walk_goes_on
run_check "UIDVALIDITY change: fresh listing, no stale bytes" check_uidvalidity_change
run_check "a file open across a UIDVALIDITY change never reads the new message" \
	check_open_across_uidvalidity
run_check "rm and flags on a file listed before a UIDVALIDITY change touch nothing" \
	check_change_across_uidvalidity
run_check "rm and mv act on exactly one message" check_rm_mv_exact
run_check "IDLE: new mail listed within 2 s" check_idle
run_check "IDLE: an expunge and a flag change show within 3 s" \
	check_idle_expunge_flags
run_check "IDLE follows the mailbox listed last" check_idle_last_listed
run_check "SIGHUP shows a change in an unwatched mailbox" check_sighup
run_check "a corrupted cache file is discarded and rebuilt" check_corrupt_cache
run_check "the body cache stays under cache_size" check_size_limit
run_check "a body evicted between open and first read is fetched again" \
	check_evicted_before_read
run_check "server gone: cached data readable, the rest fails cleanly" check_server_gone

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
