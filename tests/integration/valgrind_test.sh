#!/bin/bash
# valgrind_test.sh - the daemon under valgrind's memcheck: mounts a seeded
# throwaway Dovecot with imapfs -f running under valgrind, works through the
# mount with ordinary tools (ls -l, cat and head -c, grep -rl, cp, mv, rm,
# mkdir, rmdir, setfattr, getfattr, a folder rename, df), checking what the
# server then holds, unmounts, and fails unless valgrind saw no memory error
# and no definitely lost block in the whole run, shutdown included.
#
#   valgrind_test.sh BUILDDIR SOURCEDIR
#
# Prints "ok - NAME" or "FAIL - NAME: details" per check and ends with
# "N passed, M failed"; on a valgrind report, its first error block. Exit 0
# if all passed, 1 if not, 77 if it cannot run here (not root, no /dev/fuse,
# valgrind or Dovecot, or a daemon built with AddressSanitizer, which
# valgrind cannot run).
#
# SC2016: IMAP flags and strings given to eval are single-quoted on purpose.
# SC2154: SEED_UID_* are set through printf -v from the seed's output.
# shellcheck disable=SC2016,SC2154
# shellcheck source-path=SCRIPTDIR
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init valgrind "$@"
require_fuse "FUSE mounts, Dovecot"
require_tools valgrind dovecot python3 setfattr getfattr timeout cmp df
require_imapfs

# CI's second pass builds with -Db_sanitize=address: gcc links libasan
# dynamically, clang links its runtime in (the __asan_ symbols). Under
# valgrind such a binary dies at once ("Shadow memory range interleaves").
if ldd "$IMAPFS" 2>/dev/null | grep -q 'libasan'; then
	skip "$IMAPFS is built with AddressSanitizer (libasan)"
fi
if nm -D "$IMAPFS" 2>/dev/null | grep -q '__asan_init' ||
	nm "$IMAPFS" 2>/dev/null | grep -q '__asan_init'; then
	skip "$IMAPFS is built with AddressSanitizer (__asan_init)"
fi

make_mount_workdir
MOUNTS+=("$MNT")
# The current daemon's valgrind log and stderr (see vg_mount).
VG_LOG=
DAEMON_ERR=
VG_PID=
NEW2_UID=
GONE_UID=
# valgrind's status when it found errors (or definitely lost blocks).
VG_ERROR_EXIT=99
# Mounting under valgrind takes seconds; unmounting, with the whole heap
# scanned for leaks, may take a minute on a busy machine.
VG_MOUNT_SECS=90
VG_EXIT_SECS=120
# Every tool on the mount waits for a daemon valgrind slows down many times.
MT_TIMEOUT=120

# --- helpers --------------------------------------------------------------

# The messages of mailbox directory BOX on the server, as UID.eml lines
# (the seed's \Deleted message left out: the mount may or may not show it).
manifest_names()
{
	awk -F'\t' -v b="$1/" 'index($1, b) == 1 &&
		substr($1, length(b) + 1) !~ /\// {
		print substr($1, length(b) + 1) }' "$MANIFEST" |
		grep -vx "${SEED_UID_deleted:-none}.eml"
}

# The mount must still be there and the daemon alive: later checks would
# only wait for their timeouts.
need_mount()
{
	if [ -z "$VG_PID" ] || ! kill -0 "$VG_PID" 2>/dev/null; then
		fail "the daemon under valgrind is gone: $(tail -c 400 \
			"$DAEMON_ERR" 2>/dev/null | oneline)"
		return 1
	fi
	if [ -e "$MT_HUNG_FLAG" ]; then
		fail "skipped: an earlier command timed out (daemon hung?)"
		return 1
	fi
	is_mounted "$MNT" || { fail "$MNT is not mounted"; return 1; }
}

# The first error block of the valgrind log, prefixed with "# ". valgrind
# starts each error (and each lost block) after a blank "==PID== " line;
# the other paragraphs are its banner and summaries, known by their first
# lines, and warnings.
first_vg_error()
{
	awk '
		/^==[0-9]+== *$/ { if (printing) exit; first = 1; next }
		first {
			first = 0
			line = $0
			sub(/^==[0-9]+== +/, "", line)
			printing = line !~ /^(Memcheck,|Copyright|Using Valgrind|Command:|Parent PID:|Warning:|HEAP SUMMARY:|LEAK SUMMARY:|ERROR SUMMARY:|For lists|For counts|Reachable blocks|To see them|All heap blocks)/
		}
		printing { print "# " $0; if (++n == 40) exit }
	' "$VG_LOG"
}

# cleanup: the daemon under valgrind is not one imapfs_pids finds (its
# executable is valgrind's), so it is unmounted and ended here first.
teardown()
{
	if [ -n "$VG_PID" ] && is_mounted "$MNT"; then
		t fusermount3 -u "$MNT" 2>/dev/null ||
			t fusermount3 -uz "$MNT" 2>/dev/null
	fi
	if [ -n "$VG_PID" ] && ! wait_gone 20 "$VG_PID"; then
		kill -KILL "$VG_PID" 2>/dev/null
		wait_gone 5 "$VG_PID"
	fi
	end_mounts
	stop_imap_servers
	remove_workdir
}

# --- the checks -----------------------------------------------------------

check_server()
{
	local n rc
	# imap_zlib for -o compress=yes; imap_quota as --quota-kb has it.
	# $mail_plugins is Dovecot's to expand.
	printf 'protocol imap {\n  mail_plugins = $mail_plugins imap_quota imap_zlib\n}\n' \
		>"$WORK/zlib.conf"
	start_imap_server "$WORK/dovecot" "$ENVF" --quota-kb 100000 \
		--extra-conf "$WORK/zlib.conf"
	rc=$?
	[ $rc -eq 77 ] && skip "$SERVER_ERROR"
	if [ $rc -ne 0 ]; then
		fail "Dovecot: $SERVER_ERROR"
		return
	fi
	write_password "$WORK/password"
	write_mt_py "$WORK/mt.py"
	if ! mt seed "$WORK" >"$WORK/seed.out" 2>&1; then
		fail "seeding: $(oneline <"$WORK/seed.out")"
		return
	fi
	load_seed
	if ! mt dump "$REF" >"$MANIFEST" 2>"$WORK/dump.err"; then
		fail "dump: $(oneline <"$WORK/dump.err")"
		return
	fi
	n=$(wc -l <"$MANIFEST")
	[ "$n" -eq 16 ] || fail "server holds $n messages, expected 16"
	n=$(manifest_field "INBOX/$SEED_UID_big.eml" 2)
	[ "${n:-0}" -gt 3000000 ] || fail "big message is only ${n:-0} bytes"
}

# vg_mount LOGNAME [imapfs options...]: mounts MNT with imapfs -f under
# valgrind, its log in WORK/LOGNAME.vg. -f: in the foreground, so that the
# process valgrind watches is the daemon, to its exit. setsid: a ^C meant
# for the test does not end it behind our back. G_SLICE: GLib's slice
# allocator would hide blocks from memcheck.
vg_mount()
{
	local i
	if [ -n "$VG_PID" ]; then
		fail "the daemon of the last run (pid $VG_PID) is still alive"
		return 1
	fi
	VG_LOG=$WORK/$1.vg
	DAEMON_ERR=$WORK/$1.err
	shift
	mkdir -p "$MNT"
	rm -f "$MT_HUNG_FLAG"
	G_SLICE=always-malloc G_DEBUG=gc-friendly setsid valgrind \
		--tool=memcheck --leak-check=full \
		--errors-for-leak-kinds=definite --show-leak-kinds=definite \
		--track-origins=no --error-exitcode=$VG_ERROR_EXIT \
		--num-callers=30 --log-file="$VG_LOG" \
		"$IMAPFS" -f -o "password_file=$WORK/password" \
		-o "tls_ca_file=$S_CA_FILE" -o dir_cache_timeout=1 "$@" \
		"imaps://$S_USER@localhost:$S_TLS_PORT/" "$MNT" \
		</dev/null >/dev/null 2>"$DAEMON_ERR" &
	VG_PID=$!
	for i in $(seq 1 $((VG_MOUNT_SECS * 10))); do
		is_mounted "$MNT" && return 0
		kill -0 "$VG_PID" 2>/dev/null || break
		sleep 0.1
	done
	fail "no mount after ${VG_MOUNT_SECS}s: $(tail -c 400 "$DAEMON_ERR" |
		oneline) $(tail -c 400 "$VG_LOG" | oneline)"
}

check_mount()
{
	[ -s "$MANIFEST" ] || { fail "no seeded server"; return; }
	vg_mount first
}

# ls -l of every folder: the names and sizes the server has.
check_ls()
{
	local box got exp name size rows
	need_mount || return
	same_list "ls MNT" "$(printf '%s\n' '50%25 off' Archive INBOX Reçus \
		日本語)" "$(names_in "$MNT")"
	for box in INBOX Archive Archive/2023 Reçus 日本語 '50%25 off'; do
		if ! t ls -ln -- "$MNT/$box" >"$WORK/ls.out" 2>&1; then
			fail "ls -l $box: $(oneline <"$WORK/ls.out")"
			continue
		fi
		got=$(awk '$1 ~ /^-/ { print $NF }' "$WORK/ls.out" |
			grep -vx "$SEED_UID_deleted.eml")
		exp=$(manifest_names "$box")
		same_list "ls -l $box" "$exp" "$got"
		rows=0
		while read -r _ _ _ _ size _ _ _ name; do
			rows=$((rows + 1))
			[ "$size" = "$(manifest_field "$box/$name" 2)" ] ||
				fail "ls -l $box/$name: size $size"
		done < <(awk '$1 ~ /^-/' "$WORK/ls.out")
		[ "$rows" -ge "$(grep -c . <<<"$exp")" ] ||
			fail "ls -l $box: $rows rows"
	done
}

# head -c first (a window of the big message, not all of it), then whole
# messages: the big one, a UTF-8 one, one in a nested folder.
check_read()
{
	local p big=INBOX/$SEED_UID_big.eml
	need_mount || return
	t head -c 300 "$MNT/$big" >"$WORK/head.got"
	head -c 300 "$REF/$big" >"$WORK/head.exp"
	same_bytes "head -c 300 $big" "$WORK/head.exp" "$WORK/head.got"
	t dd if="$MNT/$big" bs=4096 skip=300 count=2 status=none \
		>"$WORK/mid.got"
	dd if="$REF/$big" bs=4096 skip=300 count=2 status=none \
		>"$WORK/mid.exp"
	same_bytes "8 KiB at 1.2 MB of $big" "$WORK/mid.exp" "$WORK/mid.got"
	for p in "$big" "INBOX/$SEED_UID_utf8.eml" \
		"Archive/2023/$SEED_UID_a23.eml" "日本語/$SEED_UID_jp.eml"; do
		t cat -- "$MNT/$p" >"$WORK/cat.got" 2>&1
		same_bytes "cat $p" "$REF/$p" "$WORK/cat.got"
	done
}

check_grep()
{
	local got rc
	need_mount || return
	got=$(t grep -rl NEEDLE "$MNT" 2>"$WORK/grep.err")
	rc=$?
	[ $rc -eq 0 ] || fail "grep exited $rc: $(oneline <"$WORK/grep.err")"
	same_list "grep -rl NEEDLE" "$(cat "$WORK/needles")" \
		"${got//"$MNT/"/}"
}

check_cp()
{
	local before new
	need_mount || return
	printf 'From: Dave <dave@example.org>\r\nSubject: uploaded\r\n\r\n%s\r\n' \
		"$(seq 1 2000 | tr '\n' ' ')" >"$WORK/up.eml"
	before=$(ic uids INBOX)
	expect_ok "cp up.eml" t cp "$WORK/up.eml" "$MNT/INBOX/" || return
	expect_one_new_message "uploaded bytes on the server" INBOX "$before" \
		"$WORK/up.eml" || return
	new=$NEW_UID
	t cat "$MNT/INBOX/$new.eml" >"$WORK/up.got" 2>&1
	same_bytes "cat $new.eml" "$WORK/up.eml" "$WORK/up.got"
}

check_mv()
{
	local uid=$SEED_UID_mv inbox archive
	need_mount || return
	inbox=$(ic count INBOX)
	archive=$(ic uids Archive)
	expect_ok "mv" t mv "$MNT/INBOX/$uid.eml" "$MNT/Archive/" || return
	[ "$(ic count INBOX)" = $((inbox - 1)) ] ||
		fail "INBOX holds $(ic count INBOX), want $((inbox - 1))"
	ic uids INBOX | grep -qx "$uid" && fail "UID $uid still in INBOX"
	expect_one_new_message "moved bytes" Archive "$archive" \
		"$REF/INBOX/$uid.eml"
}

check_rm()
{
	local uid=$SEED_UID_rm before
	need_mount || return
	before=$(ic uids INBOX)
	expect_ok "rm" t rm "$MNT/INBOX/$uid.eml" || return
	same_list "server INBOX after rm" "$(grep -vx "$uid" <<<"$before")" \
		"$(ic uids INBOX)"
	expect_error "stat after rm" 'No such file' t stat "$MNT/INBOX/$uid.eml"
}

check_xattr()
{
	local uid=$SEED_UID_xattr f got
	f=$MNT/INBOX/$uid.eml
	need_mount || return
	expect_ok "setfattr flags" t setfattr -n user.imap.flags \
		-v '\Seen \Flagged $Work' "$f"
	got=$(ic flags INBOX "$uid" | norm_flags)
	[ "$got" = '$Work \Flagged \Seen' ] ||
		fail "server flags after setfattr: '$got'"
	got=$(t getfattr --absolute-names --only-values -n user.imap.flags "$f" 2>&1 |
		norm_flags)
	[ "$got" = '$Work \Flagged \Seen' ] ||
		fail "getfattr user.imap.flags: '$got'"
	expect_ok "setfattr fewer flags" t setfattr -n user.imap.flags \
		-v '\Flagged' "$f"
	got=$(ic flags INBOX "$uid" | norm_flags)
	[ "$got" = '\Flagged' ] || fail "server flags after removal: '$got'"
	expect_ok "getfattr -d" t getfattr --absolute-names -d "$f"
}

# mkdir and rmdir, then a folder with a message and a child renamed.
check_folders()
{
	local list
	need_mount || return
	expect_ok "mkdir Tmp" t mkdir "$MNT/Tmp"
	ic list | grep -qx Tmp || fail "Tmp not on the server after mkdir"
	expect_ok "rmdir Tmp" t rmdir "$MNT/Tmp"
	ic list | grep -qx Tmp && fail "Tmp still on the server after rmdir"
	expect_ok "mkdir Proj" t mkdir "$MNT/Proj"
	expect_ok "mkdir Proj/Sub" t mkdir "$MNT/Proj/Sub"
	expect_ok "cp into Proj" t cp "$WORK/up.eml" "$MNT/Proj/"
	expect_error "rmdir Proj (not empty)" 'Directory not empty' \
		t rmdir "$MNT/Proj"
	expect_ok "mv Proj Done" t mv "$MNT/Proj" "$MNT/Done"
	list=$(ic list)
	{ grep -qx Done <<<"$list" && grep -qx Done/Sub <<<"$list"; } ||
		fail "server lacks Done or Done/Sub: $(oneline <<<"$list")"
	grep -q '^Proj' <<<"$list" &&
		fail "Proj still on the server: $(oneline <<<"$list")"
	[ "$(ic count Done)" = 1 ] || fail "Done holds $(ic count Done), want 1"
	[ "$(eml_names "$MNT/Done" | grep -c .)" = 1 ] ||
		fail "ls Done: $(names_in "$MNT/Done" | oneline)"
}

# A message another client delivers shows up (IDLE, or the listing
# refreshed after dir_cache_timeout) and reads back.
check_other_client()
{
	local uid
	need_mount || return
	printf 'From: Eve <eve@example.org>\r\nSubject: delivered\r\n\r\nNew mail.\r\n' \
		>"$WORK/new1.eml"
	uid=$(ic append INBOX "$WORK/new1.eml") ||
		{ fail "append by the other client"; return; }
	wait_for 20 eval 'eml_names "$MNT/INBOX" | grep -qx "$uid.eml"' ||
		fail "$uid.eml not listed 20 s after the other client's APPEND"
	t cat "$MNT/INBOX/$uid.eml" >"$WORK/new1.got" 2>&1
	same_bytes "cat $uid.eml" "$WORK/new1.eml" "$WORK/new1.got"
}

check_df()
{
	local size q_limit
	need_mount || return
	read -r size < <(t df -k --output=size "$MNT" | tail -n 1)
	read -r _ q_limit < <(ic quota INBOX)
	{ [ -n "${size:-}" ] && [ -n "${q_limit:-}" ] &&
		[ $((size - q_limit)) -le 1024 ] &&
		[ $((q_limit - size)) -le 1024 ]; } ||
		fail "df size '${size:-}' KiB, quota '${q_limit:-}' KiB"
}

# fusermount3 -u makes the daemon leave its loop, close its connections and
# free everything; valgrind then checks the heap and exits.
check_unmount()
{
	local rc
	[ -n "$VG_PID" ] || { fail "no daemon"; return; }
	if is_mounted "$MNT"; then
		expect_ok "fusermount3 -u" t fusermount3 -u "$MNT"
	fi
	if ! wait_gone "$VG_EXIT_SECS" "$VG_PID"; then
		fail "valgrind still running ${VG_EXIT_SECS}s after the unmount"
		return
	fi
	wait "$VG_PID"
	rc=$?
	VG_PID=
	if [ "$rc" -eq "$VG_ERROR_EXIT" ]; then
		fail "valgrind exited $rc: it found errors"
	elif [ "$rc" -ne 0 ]; then
		fail "valgrind exited $rc: $(tail -c 300 "$DAEMON_ERR" | oneline)"
	fi
}

check_valgrind_log()
{
	local block
	if ! grep -q 'ERROR SUMMARY:' "$VG_LOG" 2>/dev/null; then
		fail "no ERROR SUMMARY in $VG_LOG: $(tail -c 400 "$VG_LOG" |
			oneline)"
		return
	fi
	grep -q 'ERROR SUMMARY: 0 errors' "$VG_LOG" ||
		fail "$(grep -m1 'ERROR SUMMARY' "$VG_LOG" | oneline)"
	if grep -q 'definitely lost:' "$VG_LOG"; then
		grep -q 'definitely lost: 0 bytes' "$VG_LOG" ||
			fail "$(grep -m1 'definitely lost:' "$VG_LOG" | oneline)"
	fi
	if [ ${#CHECK_PROBLEMS[@]} -ne 0 ]; then
		block=$(first_vg_error)
		echo "# first report in $VG_LOG:"
		echo "$block"
	fi
}

# While unmounted, another client delivers, flags and expunges: the second
# mount starts from the persistent cache and resyncs.
check_changes_while_unmounted()
{
	local uid
	printf 'From: Eve <eve@example.org>\r\nSubject: while away\r\n\r\n%s\r\n' \
		"$(seq 1 5000 | tr '\n' ' ')" >"$WORK/new2.eml"
	NEW2_UID=$(ic append INBOX "$WORK/new2.eml") || fail "append"
	ic store INBOX "$SEED_UID_small" '\Answered $Later' ||
		fail "store flags"
	uid=$(ic uids Archive | head -1)
	{ ic mark-deleted Archive "$uid" && ic expunge Archive; } ||
		fail "expunge Archive/$uid"
	GONE_UID=$uid
	ic append Reçus "$WORK/new1.eml" >/dev/null || fail "append to Reçus"
}

# -o compress=yes and -o debug_imap: the deflate streams and the protocol
# log under valgrind too.
check_remount()
{
	local box got
	G_MESSAGES_DEBUG=all vg_mount second -o compress=yes -o debug_imap ||
		return
	for box in INBOX Archive Done; do
		got=$(eml_names "$MNT/$box" | grep -vx "$SEED_UID_deleted.eml")
		same_list "ls $box after the remount" \
			"$(ic uids "$box" | grep -vx "$SEED_UID_deleted" |
				sed 's/$/.eml/')" "$got"
	done
	eml_names "$MNT/Archive" | grep -qx "$GONE_UID.eml" &&
		fail "Archive/$GONE_UID.eml, expunged while unmounted, still shown"
	t cat "$MNT/INBOX/$NEW2_UID.eml" >"$WORK/new2.got" 2>&1
	same_bytes "cat $NEW2_UID.eml" "$WORK/new2.eml" "$WORK/new2.got"
	got=$(t getfattr --absolute-names --only-values -n user.imap.flags \
		"$MNT/INBOX/$SEED_UID_small.eml" 2>&1 | norm_flags)
	[ "$got" = '$Later \Answered' ] ||
		fail "flags stored while unmounted: '$got'"
	t cat "$MNT/Archive/2023/$SEED_UID_a23n.eml" >"$WORK/a23n.got" 2>&1
	same_bytes "cat Archive/2023/$SEED_UID_a23n.eml" \
		"$REF/Archive/2023/$SEED_UID_a23n.eml" "$WORK/a23n.got"
	grep -q 'COMPRESS=DEFLATE active' "$DAEMON_ERR" ||
		fail "no COMPRESS=DEFLATE in the protocol log"
}

# The daemon's side of the control path (user.imapfs.* xattrs): the status
# JSON, and prefetch of a folder whose one new message is not cached yet
# (grep read the other in the first run).
check_ctl()
{
	local n
	need_mount || return
	n=$(ic count INBOX)
	t "$IMAPFS" status "$MNT" >"$WORK/status.out" 2>&1 ||
		fail "imapfs status: $(oneline <"$WORK/status.out")"
	grep -qE "^INBOX +$n " "$WORK/status.out" ||
		fail "status has no line 'INBOX $n': $(oneline <"$WORK/status.out")"
	t "$IMAPFS" prefetch "$MNT/Reçus" >"$WORK/pf.out" 2>&1 ||
		fail "imapfs prefetch: $(oneline <"$WORK/pf.out")"
	{ grep -q ' 1 fetched now' "$WORK/pf.out" &&
		grep -q ' 1 were cached already' "$WORK/pf.out"; } ||
		fail "prefetch Reçus: $(oneline <"$WORK/pf.out")"
}

# -o offline: from the cache alone, no connection (no pool at all). df
# went through to the pool's capabilities and crashed here once.
check_offline()
{
	local big=INBOX/$SEED_UID_big.eml got
	vg_mount third -o offline || return
	got=$(eml_names "$MNT/INBOX" | grep -vx "$SEED_UID_deleted.eml")
	same_list "ls INBOX offline" "$(ic uids INBOX |
		grep -vx "$SEED_UID_deleted" | sed 's/$/.eml/')" "$got"
	t cat "$MNT/$big" >"$WORK/off.got" 2>&1
	same_bytes "cat $big offline" "$REF/$big" "$WORK/off.got"
	expect_ok "df offline" t df "$MNT"
	expect_error "mkdir offline" 'Read-only file system' t mkdir "$MNT/Off"
	need_mount
}

run_check "seeded Dovecot" check_server
run_check "imapfs -f under valgrind mounts" check_mount
run_check "ls -l of every folder" check_ls
run_check "head -c, dd and cat" check_read
run_check "grep -rl" check_grep
run_check "cp uploads" check_cp
run_check "mv across folders" check_mv
run_check "rm" check_rm
run_check "user.imap.flags" check_xattr
run_check "mkdir, rmdir, folder rename" check_folders
run_check "another client's message shows" check_other_client
run_check "df" check_df
run_check "unmount ends valgrind with status 0" check_unmount
run_check "valgrind: 0 errors, nothing definitely lost" check_valgrind_log
run_check "changes by another client while unmounted" \
	check_changes_while_unmounted
run_check "remount from the cache, compress=yes, debug_imap" check_remount
run_check "imapfs status and prefetch" check_ctl
run_check "second unmount ends valgrind with status 0" check_unmount
run_check "second run: 0 errors, nothing definitely lost" \
	check_valgrind_log
run_check "offline remount: ls, cat, df" check_offline
run_check "third unmount ends valgrind with status 0" check_unmount
run_check "third run: 0 errors, nothing definitely lost" check_valgrind_log

if [ "$FAILED" -ne 0 ]; then
	# Kept for a look at the whole logs.
	mkdir -p "/tmp/imapfs-valgrind-$$" &&
		cp "$WORK"/*.vg "$WORK"/*.err "/tmp/imapfs-valgrind-$$/" \
			2>/dev/null &&
		echo "# valgrind logs kept in /tmp/imapfs-valgrind-$$"
fi
cleanup
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
