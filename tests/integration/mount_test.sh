#!/bin/bash
# mount_test.sh - end-to-end tests of the imapfs FUSE daemon: starts a
# throwaway Dovecot, seeds it, mounts the account and works through it with
# ordinary tools (ls, stat, cat, grep, rm, mv, mkdir, cp, rsync, setfattr,
# df), checking with an independent IMAP client (imaplib) what the server
# really holds.
#
#   mount_test.sh BUILDDIR SOURCEDIR
#
# IMAP_SERVER=cyrus runs the same checks against Cyrus (tests/harness/
# cyrus.sh: '.' as the hierarchy delimiter, top-level folders) instead of
# Dovecot ('/'). Only what Cyrus genuinely does differently is adapted: it
# refuses '%' in mailbox names and bare LFs in messages.
#
# Prints "ok - NAME" or "FAIL - NAME: details" per check and ends with
# "N passed, M failed". Exit 0 if all passed, 1 if not, 77 if it cannot run
# here (not root, no /dev/fuse, fusermount3, the server or daemon binary).
#
# SC2016: single-quoted strings given to eval are meant to expand there.
# SC2154: SEED_UID_* are set through printf -v from the seed's output.
# shellcheck disable=SC2016,SC2154
# shellcheck source-path=SCRIPTDIR
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init mount "$@"
require_fuse "FUSE mounts, Dovecot"
select_imap_server
case $IMAP_SERVER in
dovecot)
	# A name with '%' shows the "%25" escape on the mount.
	ODD_BOX="50% off"
	# An APPEND over quota is refused "NO [OVERQUOTA] ...".
	QUOTA_ERROR='No space left on device'
	;;
cyrus)
	# Cyrus refuses '%' in names; '&' is escaped on the wire ("&-").
	ODD_BOX="Q&A notes"
	# Cyrus refuses an APPEND over quota with a bare "NO Over quota", no
	# [OVERQUOTA] code: fs/errmap.c knows the words.
	QUOTA_ERROR='No space left on device'
	;;
esac
export MT_ODD_BOX=$ODD_BOX
ODD_DIR=${ODD_BOX//%/%25}
require_imapfs
require_tools python3 rsync setfattr getfattr timeout cmp df setsid

make_mount_workdir
MNT_RO=$WORK/mnt-ro
MNT_TLS=$WORK/mnt-starttls
MNT_BAD=$WORK/mnt-bad

# The independent clients are mt.py and imapcheck.py (mt and ic of
# mount_lib.sh). Mailbox names are written with '/' here; this ic, replacing
# mount_lib.sh's, translates them to and from the server's delimiter (for
# list, and the first argument of commands taking a mailbox; rename's
# second too).
ic()
{
	local cmd=$1
	shift
	if [ "$S_DELIMITER" = / ]; then
		t python3 "$HARNESS/imapcheck.py" --env "$ENVF" "$cmd" "$@"
		return
	fi
	case $cmd in
	list)
		t python3 "$HARNESS/imapcheck.py" --env "$ENVF" list |
			tr "$S_DELIMITER" /
		return "${PIPESTATUS[0]}"
		;;
	rename) set -- "${1//\//$S_DELIMITER}" "${2//\//$S_DELIMITER}" ;;
	capability | quota) ;;
	*) [ $# -ge 1 ] && set -- "${1//\//$S_DELIMITER}" "${@:2}" ;;
	esac
	t python3 "$HARNESS/imapcheck.py" --env "$ENVF" "$cmd" "$@"
}

# --- small assertions (each records a problem through fail) ----------------

# Server-side UIDs of MAILBOX, one per line.
server_uids()
{
	ic uids "$1"
}

# The main mount must exist and answer; a hung daemon would otherwise make
# every following command wait for its timeout.
need_mount()
{
	local mnt=${1:-$MNT}
	if [ -e "$MT_HUNG_FLAG" ]; then
		fail "skipped: an earlier command timed out (daemon hung?)"
		return 1
	fi
	if ! is_mounted "$mnt"; then
		fail "$mnt is not mounted"
		return 1
	fi
	if ! timeout -k 2 10 stat "$mnt" >/dev/null 2>&1; then
		fail "$mnt does not answer (stat failed or hung)"
		return 1
	fi
	return 0
}

is_deleted_path()
{
	[ "$1" = "INBOX/$SEED_UID_deleted.eml" ]
}

# --- the checks ---------------------------------------------------------

check_seed()
{
	local list exp n
	if ! mt seed "$WORK" >"$WORK/seed.out" 2>&1; then
		fail "seeding: $(oneline <"$WORK/seed.out")"
		return
	fi
	load_seed
	list=$(ic list)
	exp=$(printf '%s\n' "$ODD_BOX" Archive Archive/2023 INBOX "Reçus" \
		"日本語")
	same_list "server mailboxes" "$exp" "$list"
	if ! mt dump "$REF" >"$MANIFEST" 2>"$WORK/dump.err"; then
		fail "dump: $(oneline <"$WORK/dump.err")"
		return
	fi
	n=$(wc -l <"$MANIFEST")
	[ "$n" -eq 16 ] || fail "server holds $n messages, expected 16"
	[ "$(ic deleted-uids INBOX)" = "$SEED_UID_deleted" ] ||
		fail "INBOX/$SEED_UID_deleted is not the only \\Deleted message"
	n=$(manifest_field "INBOX/$SEED_UID_big.eml" 2)
	[ "${n:-0}" -gt 3000000 ] || fail "big message is only ${n:-0} bytes"
	[ "$(wc -l <"$WORK/needles")" -eq 4 ] || fail "expected 4 NEEDLEs"
	ic quota INBOX >"$WORK/quota" 2>&1 ||
		fail "no quota on the server: $(oneline <"$WORK/quota")"
}

check_mount()
{
	local pids p
	# Memory from malloc comes filled with 0x5a, freed memory with 0xa5:
	# bytes the daemon never set show up in what it sends or answers.
	if ! MALLOC_PERTURB_=165 mount_imapfs "$MNT" \
		"imaps://$S_USER@localhost:$S_TLS_PORT/" \
		-o "tls_ca_file=$S_CA_FILE" -o "password_file=$WORK/password" \
		-o dir_cache_timeout=1; then
		fail "$MOUNT_ERROR"
		return
	fi
	pids=$(imapfs_pids_for "$MNT")
	[ -n "$pids" ] || fail "mounted, but no imapfs process serves $MNT"
	for p in $pids; do
		# Daemonized: it must not be our child any more.
		if [ "$(awk '{ print $4 }' "/proc/$p/stat")" = $$ ]; then
			fail "imapfs (pid $p) did not daemonize"
		fi
	done
	MAIN_PIDS=$pids
}

check_ls()
{
	local exp got d mode box
	need_mount || return
	exp=$(printf '%s\n' "$ODD_DIR" Archive INBOX "Reçus" "日本語")
	got=$(names_in "$MNT")
	same_list "ls MNT" "$exp" "$got"
	for d in "$ODD_DIR" Archive Archive/2023 INBOX "Reçus" "日本語"; do
		mode=$(t stat -c '%F %a' -- "$MNT/$d" 2>&1)
		[ "$mode" = "directory 700" ] ||
			fail "stat $d: '$mode', want 'directory 700'"
	done
	got=$(names_in "$MNT/Archive")
	exp=$(
		echo 2023
		awk -F'\t' '$1 ~ /^Archive\/[0-9]+\.eml$/ { sub(/.*\//, "", $1);
			print $1 }' "$MANIFEST"
	)
	same_list "ls MNT/Archive" "$exp" "$got"
	# Every folder lists exactly its messages (the one another client
	# flagged \Deleted may or may not be shown).
	for box in INBOX "Archive/2023" "$ODD_DIR" "Reçus" "日本語"; do
		got=$(names_in "$MNT/$box" | grep -vx "$SEED_UID_deleted.eml")
		exp=$(awk -F'\t' -v b="$box/" 'index($1, b) == 1 &&
			substr($1, length(b) + 1) !~ /\// {
			print substr($1, length(b) + 1) }' "$MANIFEST")
		[ "$box" = INBOX ] &&
			exp=$(grep -vx "$SEED_UID_deleted.eml" <<<"$exp")
		same_list "ls MNT/$box" "$exp" "$got"
	done
}

check_stat()
{
	local path size epoch got perm links lsize lmtime name rows=0
	need_mount || return
	while IFS=$'\t' read -r -u 3 path size epoch _; do
		if ! got=$(t stat -c '%s %Y %a %h %F' -- "$MNT/$path" 2>&1)
		then
			is_deleted_path "$path" ||
				fail "stat $path: $(oneline <<<"$got")"
			continue
		fi
		[ "$got" = "$size $epoch 600 1 regular file" ] ||
			fail "stat $path: '$got', want '$size $epoch 600 1 regular file'"
	done 3<"$MANIFEST"
	# ls -l takes the readdir path of the daemon, which may differ.
	while read -r perm links _ _ lsize lmtime name; do
		[ "$perm" = total ] && continue
		rows=$((rows + 1))
		size=$(manifest_field "INBOX/$name" 2)
		epoch=$(manifest_field "INBOX/$name" 3)
		[ "$perm $links $lsize $lmtime" = "-rw------- 1 $size $epoch" ] ||
			fail "ls -l INBOX/$name: '$perm $links $lsize $lmtime'," \
				"want '-rw------- 1 $size $epoch'"
	done < <(t ls -ln --time-style=+%s "$MNT/INBOX")
	[ $rows -ge 8 ] || fail "ls -l INBOX gave $rows rows, want 8 or 9"
}

# Inode numbers are computed for messages (fs/nodes.c): every file and
# directory must still have its own, the same each time it is asked, and
# readdir (ls -i) must agree with stat.
check_inodes()
{
	local all dups n again lsi
	need_mount || return
	all=$(t find "$MNT" -printf '%i %y %P\n' 2>&1 | sort) || {
		fail "find: $(oneline <<<"$all")"
		return
	}
	n=$(grep -c . <<<"$all")
	[ "$n" -ge 20 ] || fail "find listed $n entries, want 20 or more"
	dups=$(cut -d' ' -f1 <<<"$all" | uniq -d)
	[ -z "$dups" ] || fail "inode numbers shared by several entries:" \
		"$(grep -F -w -f <(echo "$dups") <<<"$all" | head -4 | oneline)"
	again=$(t find "$MNT" -printf '%i %y %P\n' 2>&1 | sort)
	[ "$all" = "$again" ] || fail "inode numbers changed between two walks"
	lsi=$(t ls -i "$MNT/INBOX" | awk '{ print $1 " f INBOX/" $2 }' |
		sort)
	[ "$(grep ' f INBOX/[^/]*$' <<<"$all")" = "$lsi" ] ||
		fail "ls -i INBOX differs from stat: $(oneline <<<"$lsi")"
}

# Bytes the daemons serving MNT have read so far (every read(2) and
# recv(2), the server's TLS stream above all), from /proc/PID/io.
daemon_rchar()
{
	local p r n=0
	for p in $(imapfs_pids_for "$1"); do
		r=$(awk '$1 == "rchar:" { print $2 }' "/proc/$p/io" 2>/dev/null)
		n=$((n + ${r:-0}))
	done
	echo "$n"
}

check_partial_read()
{
	local big=INBOX/$SEED_UID_big.eml small size r0 r1 r2
	need_mount || return
	size=$(manifest_field "$big" 2)
	# The first read of the big message, so neither the body cache nor
	# the kernel's page cache holds it. head -c 200 must fetch a window
	# (256 KiB), not the whole message.
	r0=$(daemon_rchar "$MNT")
	t head -c 200 "$MNT/$big" >"$WORK/head.got"
	r1=$(daemon_rchar "$MNT")
	head -c 200 "$REF/$big" >"$WORK/head.exp"
	same_bytes "head -c 200" "$WORK/head.exp" "$WORK/head.got"
	[ $((r1 - r0)) -lt 1048576 ] ||
		fail "head -c 200 made the daemon read $((r1 - r0)) bytes" \
			"(message: $size), want < 1 MiB"
	t dd if="$MNT/$big" bs=4096 skip=256 count=3 status=none \
		>"$WORK/mid.got"
	dd if="$REF/$big" bs=4096 skip=256 count=3 status=none \
		>"$WORK/mid.exp"
	same_bytes "12 KiB at offset 1 MiB" "$WORK/mid.exp" "$WORK/mid.got"
	t tail -c 777 "$MNT/$big" >"$WORK/tail.got"
	tail -c 777 "$REF/$big" >"$WORK/tail.exp"
	same_bytes "tail -c 777" "$WORK/tail.exp" "$WORK/tail.got"
	t dd if="$MNT/$big" bs=4096 skip=100000 count=1 status=none \
		>"$WORK/past.got"
	[ ! -s "$WORK/past.got" ] || fail "reading past the end gave data"
	# The first full read, last as it fills the body cache: two readers
	# at once, one of them on the big message.
	small=INBOX/$SEED_UID_needle.eml
	r1=$(daemon_rchar "$MNT")
	t cat "$MNT/$big" >"$WORK/par1" &
	t cat "$MNT/$small" >"$WORK/par2" &
	wait
	r2=$(daemon_rchar "$MNT")
	same_bytes "cat $big after the partial reads" "$REF/$big" "$WORK/par1"
	same_bytes "parallel cat $small" "$REF/$small" "$WORK/par2"
	# The measure sees a whole message go by (half of it at least:
	# compression may shrink the base64 on the wire).
	[ $((r2 - r1)) -ge $((size / 2)) ] ||
		fail "cat made the daemon read only $((r2 - r1)) bytes of" \
			"a $size-byte message"
}

check_cat()
{
	local path rest
	need_mount || return
	while IFS=$'\t' read -r -u 3 path rest; do
		if ! t cat -- "$MNT/$path" >"$WORK/cat.out" 2>"$WORK/cat.err"
		then
			is_deleted_path "$path" ||
				fail "cat $path: $(oneline <"$WORK/cat.err")"
			continue
		fi
		same_bytes "cat $path" "$REF/$path" "$WORK/cat.out"
	done 3<"$MANIFEST"
}

check_grep()
{
	local got rc
	need_mount || return
	got=$(t grep -rl NEEDLE "$MNT" 2>"$WORK/grep.err")
	rc=$?
	[ $rc -eq 0 ] || fail "grep exited $rc: $(oneline <"$WORK/grep.err")"
	got=${got//"$MNT/"/}
	same_list "grep -rl NEEDLE" "$(cat "$WORK/needles")" "$got"
}

check_seen()
{
	local meta seen
	need_mount || return
	if ! meta=$(mt meta 2>&1); then
		fail "meta: $(oneline <<<"$meta")"
		return
	fi
	[ "$(wc -l <<<"$meta")" -eq 16 ] ||
		fail "server now holds $(wc -l <<<"$meta") messages, not 16"
	seen=$(awk -F'\t' '$4 ~ /\\Seen/ { print $1 }' <<<"$meta")
	[ -z "$seen" ] || fail "\\Seen set on: $(oneline <<<"$seen")"
}

# Prints the epoch of an xattr value given as digits, an IMAP date or
# ISO 8601.
date_value_epoch()
{
	python3 - "$1" <<'EOF'
import sys
from datetime import datetime
v = sys.argv[1].strip().strip('"')
if v.isdigit():
    print(v)
    sys.exit(0)
for fmt in ("%d-%b-%Y %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z",
            "%Y-%m-%d %H:%M:%S %z"):
    try:
        print(int(datetime.strptime(v.lstrip(), fmt).timestamp()))
        sys.exit(0)
    except ValueError:
        pass
try:
    print(int(datetime.fromisoformat(v).timestamp()))
except ValueError:
    print("unparsable")
EOF
}

# Prints the value of xattr NAME of FILE; errors go to $WORK/getfattr.err.
xattr_value()
{
	t getfattr --absolute-names --only-values -n "$2" -- "$1" \
		2>"$WORK/getfattr.err"
}

xattr_error()
{
	oneline <"$WORK/getfattr.err"
}

check_xattr()
{
	local uid=$SEED_UID_xattr f got dump v
	f=$MNT/INBOX/$uid.eml
	need_mount || return
	expect_ok "setfattr flags" t setfattr -n user.imap.flags \
		-v '\Seen \Flagged $Work' "$f"
	got=$(ic flags INBOX "$uid" | norm_flags)
	[ "$got" = '$Work \Flagged \Seen' ] ||
		fail "server flags after setfattr: '$got'"
	got=$(xattr_value "$f" user.imap.flags | norm_flags)
	[ "$got" = '$Work \Flagged \Seen' ] ||
		fail "getfattr user.imap.flags: '$got' $(xattr_error)"
	expect_ok "setfattr fewer flags" t setfattr -n user.imap.flags \
		-v '\Flagged' "$f"
	got=$(ic flags INBOX "$uid" | norm_flags)
	[ "$got" = '\Flagged' ] || fail "server flags after removal: '$got'"

	dump=$(t getfattr --absolute-names -d "$f" 2>&1)
	for v in flags uid internaldate modseq; do
		grep -q "^user\.imap\.$v=" <<<"$dump" ||
			fail "getfattr -d lacks user.imap.$v"
	done
	got=$(xattr_value "$f" user.imap.uid)
	[ "$got" = "$uid" ] ||
		fail "user.imap.uid is '$got', want $uid $(xattr_error)"
	got=$(xattr_value "$f" user.imap.modseq)
	[[ $got =~ ^[1-9][0-9]*$ ]] ||
		fail "user.imap.modseq is '$got' $(xattr_error)"
	got=$(xattr_value "$f" user.imap.internaldate)
	v=$(date_value_epoch "$got")
	[ "$v" = "$(manifest_field "INBOX/$uid.eml" 3)" ] ||
		fail "user.imap.internaldate '$got' is not the INTERNALDATE $(xattr_error)"
	expect_error "setfattr user.imap.uid" \
		'Operation not permitted|Permission denied|Read-only' \
		t setfattr -n user.imap.uid -v 999 "$f"
	got=$(xattr_value "$f" user.imap.uid)
	[ "$got" = "$uid" ] || fail "user.imap.uid became '$got'"
	# Other namespaces are unsupported (ls -l then stops asking for
	# SELinux labels and ACLs); an unknown user.* name is just absent.
	expect_error "getfattr security.selinux" 'Operation not supported' \
		t getfattr -n security.selinux "$f"
	expect_error "getfattr system.posix_acl_access" \
		'Operation not supported' \
		t getfattr -n system.posix_acl_access "$f"
	expect_error "getfattr user.imap.nonesuch" 'No such attribute' \
		t getfattr -n user.imap.nonesuch "$f"
}

check_rm()
{
	local uid=$SEED_UID_rm before after exp total_before total_after
	need_mount || return
	before=$(server_uids INBOX)
	total_before=$(mt meta | wc -l)
	expect_ok "rm" t rm "$MNT/INBOX/$uid.eml" || return
	after=$(server_uids INBOX)
	exp=$(grep -vx "$uid" <<<"$before")
	same_list "server INBOX after rm" "$exp" "$after"
	total_after=$(mt meta | wc -l)
	[ "$total_after" -eq $((total_before - 1)) ] ||
		fail "account went from $total_before to $total_after messages"
	[ "$(ic deleted-uids INBOX)" = "$SEED_UID_deleted" ] ||
		fail "the other client's \\Deleted message is gone or unflagged"
	if eml_names "$MNT/INBOX" | grep -qx "$uid.eml"; then
		fail "ls still shows $uid.eml"
	fi
	expect_error "stat after rm" 'No such file' t stat "$MNT/INBOX/$uid.eml"
}

check_mv()
{
	local uid=$SEED_UID_mv src before after epoch
	src=INBOX/$uid.eml
	need_mount || return
	before=$(server_uids Archive)
	if grep -qx "$uid" <<<"$before"; then
		fail "test setup: UID $uid already exists in Archive"
		return
	fi
	expect_ok "mv" t mv "$MNT/$src" "$MNT/Archive/" || return
	# The name mv used resolves at once, to the same message.
	if t cat "$MNT/Archive/$uid.eml" >"$WORK/mv.cat" 2>"$WORK/mv.err"; then
		same_bytes "Archive/$uid.eml right after mv" "$REF/$src" \
			"$WORK/mv.cat"
	else
		fail "Archive/$uid.eml right after mv: $(oneline <"$WORK/mv.err")"
	fi
	server_uids INBOX | grep -qx "$uid" && fail "still in INBOX on the server"
	eml_names "$MNT/INBOX" | grep -qx "$uid.eml" && fail "ls INBOX still shows it"
	expect_one_new_message "server copy" Archive "$before" "$REF/$src" ||
		return
	epoch=$(mt info Archive "$NEW_UID" | cut -f2)
	[ "$epoch" = "$(manifest_field "$src" 3)" ] ||
		fail "INTERNALDATE not kept: $epoch"
	# Once settled, the folder lists each message once, by its new UID.
	after=$(server_uids Archive)
	if ! wait_for 5 eval '[ "$(eml_names "$MNT/Archive" | sed "s/\.eml$//" |
		sort)" = "$(sort <<<"$after")" ]'; then
		fail "ls Archive: [$(eml_names "$MNT/Archive" | oneline)]," \
			"server UIDs [$(oneline <<<"$after")]"
	fi
	check_mv_onto_taken_name
}

# mv MvA/N.eml MvB/ when MvB has a UID N too (UIDs of two folders meet
# all the time): the message moves and gets a UID of its own in MvB; MvB/N.eml
# stays the message it was, at once: the kernel is told the moved file's
# size and pages are not the name's.
check_mv_onto_taken_name()
{
	local box i n=300 before size uid=1
	# Of other sizes in each folder: the kernel must not keep the moved
	# file's size for the name.
	for box in MvA MvB; do
		ic create "$box" >/dev/null || fail "create $box"
		for i in 1 2; do
			printf 'From: m@example.org\r\nSubject: %s-%s\r\n\r\n%s\r\n' \
				"$box" "$i" "$(head -c $((i * n)) /dev/zero | tr '\0' x)" \
				>"$WORK/mv-taken.msg"
			ic append "$box" "$WORK/mv-taken.msg" >/dev/null || fail "append"
		done
		n=700
	done
	ic fetch MvA "$uid" >"$WORK/mv-taken.src"
	ic fetch MvB "$uid" >"$WORK/mv-taken.old"
	wait_for 5 eval '[ -e "$MNT/MvA/$uid.eml" ] && [ -e "$MNT/MvB/$uid.eml" ]' ||
		{ fail "MvA/$uid.eml and MvB/$uid.eml not listed"; return; }
	# Both read first: the kernel holds their sizes and pages.
	cat "$MNT/MvA/$uid.eml" "$MNT/MvB/$uid.eml" >/dev/null
	cat "$MNT/MvA/$uid.eml" "$MNT/MvB/$uid.eml" >/dev/null
	before=$(server_uids MvB)
	exec 4<"$MNT/MvA/$uid.eml"
	expect_ok "mv onto a taken name" t mv "$MNT/MvA/$uid.eml" "$MNT/MvB/" ||
		{ exec 4<&-; return; }
	size=$(t stat -c %s "$MNT/MvB/$uid.eml")
	[ "$size" = "$(stat -c %s "$WORK/mv-taken.old")" ] ||
		fail "MvB/$uid.eml right after mv has size $size, not its own $(stat -c %s "$WORK/mv-taken.old")"
	t cat "$MNT/MvB/$uid.eml" >"$WORK/mv-taken.cat" 2>&1
	same_bytes "MvB/$uid.eml right after mv" "$WORK/mv-taken.old" \
		"$WORK/mv-taken.cat"
	# A file opened before the move goes on reading the moved message,
	# through the inode that now stands for the name; that must not leave
	# its pages for the name's readers.
	sleep 0.5
	cat <&4 >"$WORK/mv-taken.fd4"
	exec 4<&-
	same_bytes "a file opened before the mv" "$WORK/mv-taken.src" \
		"$WORK/mv-taken.fd4"
	t cat "$MNT/MvB/$uid.eml" >"$WORK/mv-taken.cat" 2>&1
	same_bytes "MvB/$uid.eml after a read of the moved file" \
		"$WORK/mv-taken.old" "$WORK/mv-taken.cat"
	expect_one_new_message "moved onto a taken name" MvB "$before" \
		"$WORK/mv-taken.src" || return
	server_uids MvA | grep -qx "$uid" && fail "UID $uid still in MvA"
	wait_for 5 eval 'eml_names "$MNT/MvB" | grep -qx "$NEW_UID.eml"' ||
		fail "ls MvB does not show $NEW_UID.eml"
	t cat "$MNT/MvB/$NEW_UID.eml" >"$WORK/mv-taken.new" 2>&1
	same_bytes "MvB/$NEW_UID.eml" "$WORK/mv-taken.src" "$WORK/mv-taken.new"
}

check_dirs()
{
	local list uid n
	need_mount || return
	expect_ok "mkdir New" t mkdir "$MNT/New"
	ic list | grep -qx New || fail "CREATE New not seen by the server"
	names_in "$MNT" | grep -qx New || fail "ls does not show New at once"
	expect_error "mkdir New again" 'File exists' t mkdir "$MNT/New"
	expect_ok "rmdir New" t rmdir "$MNT/New"
	ic list | grep -qx New && fail "New still on the server after rmdir"
	t stat "$MNT/New" >/dev/null 2>&1 && fail "New still resolves"

	# "%25" on the mount is "%" on the server; UTF-8 names pass as is.
	# Cyrus refuses '%' with a bare NO (no response code, so EIO): the
	# refusal must reach mkdir, nothing may appear; '&' is tried instead.
	if [ "$IMAP_SERVER" = cyrus ]; then
		expect_error "mkdir 7%25 tax (refused by Cyrus)" \
			'Input/output error|Invalid argument|Permission' \
			t mkdir "$MNT/7%25 tax"
		names_in "$MNT" | grep -q "^7" && fail "ls shows a refused 7*"
		expect_ok "mkdir R&D 7" t mkdir "$MNT/R&D 7"
		ic list | grep -qx "R&D 7" || fail "server lacks 'R&D 7'"
		expect_ok "rmdir R&D 7" t rmdir "$MNT/R&D 7"
	else
		expect_ok "mkdir 7%25 tax" t mkdir "$MNT/7%25 tax"
		ic list | grep -qx "7% tax" ||
			fail "server lacks the folder '7% tax'"
		names_in "$MNT" | grep -qx "7%25 tax" ||
			fail "ls lacks '7%25 tax'"
		expect_ok "rmdir 7%25 tax" t rmdir "$MNT/7%25 tax"
	fi
	ic list | grep -q "^7\|^R&D" && fail "'7% tax' still on the server"
	expect_ok "mkdir Été" t mkdir "$MNT/Été"
	ic list | grep -qx "Été" || fail "server lacks the folder 'Été'"
	expect_ok "rmdir Été" t rmdir "$MNT/Été"

	n=$(ic count Archive)
	expect_error "rmdir Archive (messages and children)" \
		'Directory not empty' t rmdir "$MNT/Archive"
	expect_error "rmdir Reçus (messages only)" 'Directory not empty' \
		t rmdir "$MNT/Reçus"
	list=$(ic list)
	{ grep -qx Archive <<<"$list" && grep -qx Archive/2023 <<<"$list" &&
		grep -qx "Reçus" <<<"$list"; } ||
		fail "a folder vanished from the server: $(oneline <<<"$list")"
	[ "$(ic count Archive)" = "$n" ] || fail "Archive lost messages"

	expect_ok "mkdir New2" t mkdir "$MNT/New2"
	expect_ok "mkdir New2/Sub" t mkdir "$MNT/New2/Sub"
	ic list | grep -qx New2/Sub || fail "New2/Sub not on the server"
	expect_error "rmdir New2 (child only)" 'Directory not empty' \
		t rmdir "$MNT/New2"
	printf 'Subject: in sub\r\n\r\nchild message\r\n' >"$WORK/sub.eml"
	uid=$(mt append-dated New2/Sub "$WORK/sub.eml" 1600000000) ||
		fail "append to New2/Sub failed"
	expect_ok "mv New2 Renamed" t mv "$MNT/New2" "$MNT/Renamed"
	list=$(ic list)
	{ grep -qx Renamed <<<"$list" && grep -qx Renamed/Sub <<<"$list"; } ||
		fail "server lacks Renamed or Renamed/Sub: $(oneline <<<"$list")"
	grep -q '^New2' <<<"$list" &&
		fail "New2 still on the server: $(oneline <<<"$list")"
	[ "$(ic count Renamed/Sub)" = 1 ] || fail "Renamed/Sub lost its message"
	t stat "$MNT/New2" >/dev/null 2>&1 && fail "New2 still resolves"
	uid=$(server_uids Renamed/Sub)
	if wait_for 3 eval 'eml_names "$MNT/Renamed/Sub" | grep -qx "$uid.eml"'
	then
		t cat "$MNT/Renamed/Sub/$uid.eml" >"$WORK/sub.got"
		same_bytes "Renamed/Sub/$uid.eml" "$WORK/sub.eml" "$WORK/sub.got"
	else
		fail "ls Renamed/Sub: [$(eml_names "$MNT/Renamed/Sub" | oneline)]"
	fi
}

check_bad_names()
{
	local before after cr lf
	need_mount || return
	cr=$(printf '\r')
	lf=$(printf '\nx')
	lf=${lf%x}
	before=$(ic list)
	expect_error "mkdir with CR" 'Invalid argument' \
		t mkdir "$MNT/bad${cr}name"
	expect_error "mkdir with LF" 'Invalid argument' \
		t mkdir "$MNT/bad${lf}name"
	after=$(ic list)
	same_list "server mailboxes" "$before" "$after"
	names_in "$MNT" | grep -q '^bad' && fail "ls shows a bad* entry"
}

check_cp()
{
	local before new t0 epoch m
	need_mount || return
	# Bare LFs, plus one CRLF line that must not gain a second CR.
	printf 'From: Dave <dave@example.org>\nSubject: uploaded with LF\n' \
		>"$WORK/up-lf.eml"
	printf 'X-Already: crlf\r\n\nLine one\nLine two\n\nEnd\n' \
		>>"$WORK/up-lf.eml"
	python3 - "$WORK/up-lf.eml" "$WORK/up-lf.exp" <<'EOF'
import re, sys
data = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(re.sub(rb"(?<!\r)\n", b"\r\n", data))
EOF
	before=$(server_uids INBOX)
	t0=$(date +%s)
	expect_ok "cp LF file" t cp "$WORK/up-lf.eml" "$MNT/INBOX/" || return
	expect_one_new_message "uploaded bytes (LF->CRLF)" INBOX "$before" \
		"$WORK/up-lf.exp" || return
	new=$NEW_UID
	epoch=$(mt info INBOX "$new" | cut -f2)
	if [ -z "$epoch" ] || [ "$epoch" -lt $((t0 - 5)) ] ||
		[ "$epoch" -gt $(($(date +%s) + 5)) ]; then
		fail "INTERNALDATE of a plain cp is $epoch, not about $t0"
	fi
	eml_names "$MNT/INBOX" | grep -qx "$new.eml" ||
		fail "ls INBOX does not show $new.eml at once"
	t cat "$MNT/INBOX/$new.eml" >"$WORK/up-lf.got" 2>&1
	same_bytes "cat $new.eml" "$WORK/up-lf.exp" "$WORK/up-lf.got"
	wait_for 3 eval '! names_in "$MNT/INBOX" | grep -qx up-lf.eml' ||
		fail "ls INBOX still shows up-lf.eml"

	# cp -p: the file's mtime becomes the INTERNALDATE.
	printf 'From: Erin <erin@example.org>\r\nSubject: dated\r\n\r\nOld.\r\n' \
		>"$WORK/up-dated.eml"
	touch -d @1623760496 "$WORK/up-dated.eml"
	before=$(server_uids INBOX)
	expect_ok "cp -p" t cp -p "$WORK/up-dated.eml" "$MNT/INBOX/"
	if expect_one_new_message "cp -p bytes" INBOX "$before" \
		"$WORK/up-dated.eml"; then
		new=$NEW_UID
		epoch=$(mt info INBOX "$new" | cut -f2)
		[ "$epoch" = 1623760496 ] ||
			fail "cp -p INTERNALDATE $epoch, want 1623760496"
		m=$(t stat -c %Y "$MNT/INBOX/$new.eml" 2>&1)
		[ "$m" = 1623760496 ] || fail "cp -p: mtime of $new.eml is $m"
	fi

	# A 1.5 MB upload takes many write calls.
	python3 - "$WORK/up-big.eml" <<'EOF'
import random, sys
rng = random.Random(5)
lines = [b"From: f@example.org", b"Subject: big upload", b""]
lines += [bytes(rng.choice(b"abcdefghij klmnop") for _ in range(70))
          for _ in range(21000)]
open(sys.argv[1], "wb").write(b"\r\n".join(lines) + b"\r\n")
EOF
	before=$(server_uids INBOX)
	expect_ok "cp 1.5 MB" t cp "$WORK/up-big.eml" "$MNT/INBOX/"
	expect_one_new_message "1.5 MB upload" INBOX "$before" "$WORK/up-big.eml"

	# Grown by a write past the end and by ftruncate, a file reads as
	# zeros in the gaps (the daemon runs with MALLOC_PERTURB_, so reused
	# heap is not). A dot-name is kept until renamed (rsync's temporary
	# files), so what is read back is the daemon's copy; it never reaches
	# the server, which might store NUL bytes otherwise (Dovecot: 0x80).
	python3 - "$MNT/INBOX/.holes.eml" "$WORK/up-holes.exp" <<'EOF' ||
import os, sys
head = b"From: h@example.org\r\nSubject: holes\r\n\r\n"
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o600)
os.write(fd, head)
os.pwrite(fd, b"after a gap\r\n", 3000)
os.ftruncate(fd, 6000)
os.close(fd)
exp = head + bytes(3000 - len(head)) + b"after a gap\r\n"
open(sys.argv[2], "wb").write(exp + bytes(6000 - len(exp)))
EOF
		fail "writing .holes.eml"
	t cat "$MNT/INBOX/.holes.eml" >"$WORK/up-holes.got" 2>&1
	same_bytes "file with gaps" "$WORK/up-holes.exp" "$WORK/up-holes.got"
	expect_ok "rm .holes.eml" t rm "$MNT/INBOX/.holes.eml"
}

check_no_write()
{
	local path=INBOX/$SEED_UID_small.eml f size re
	f=$MNT/$path
	re='Operation not permitted|Permission denied'
	need_mount || return
	expect_error "append (>>)" "$re" t bash -c 'echo x >>"$1"' _ "$f"
	expect_error "truncate -s 0" "$re" t truncate -s 0 "$f"
	expect_error "overwrite (>)" "$re" t bash -c 'echo x >"$1"' _ "$f"
	expect_error "dd conv=notrunc" "$re" t dd if=/dev/zero of="$f" bs=1 \
		count=1 conv=notrunc status=none
	ic fetch INBOX "$SEED_UID_small" >"$WORK/nw.srv"
	same_bytes "server copy" "$REF/$path" "$WORK/nw.srv"
	size=$(t stat -c %s "$f" 2>&1)
	[ "$size" = "$(manifest_field "$path" 2)" ] || fail "size is now $size"
	t cat "$f" >"$WORK/nw.cat" 2>&1
	same_bytes "cat" "$REF/$path" "$WORK/nw.cat"
}

check_df()
{
	local size used q_used q_limit
	need_mount || return
	read -r size used < <(t df -k --output=size,used "$MNT" | tail -n 1)
	read -r q_used q_limit < <(ic quota INBOX)
	if [ -z "${size:-}" ] || [ -z "${q_limit:-}" ]; then
		fail "df gave '${size:-}', server quota '${q_limit:-}'"
		return
	fi
	[ "$q_limit" = 100000 ] || fail "server quota limit $q_limit KiB"
	{ [ "$size" -ge 99000 ] && [ "$size" -le 101000 ]; } ||
		fail "df size $size KiB, quota is $q_limit KiB"
	{ [ $((used - q_used)) -le 1024 ] &&
		[ $((q_used - used)) -le 1024 ]; } ||
		fail "df used $used KiB, server says $q_used KiB"
}

check_other_clients()
{
	local uid f=$MNT/INBOX/$SEED_UID_small.eml
	need_mount || return
	printf 'Subject: from elsewhere\r\n\r\nhi\r\n' >"$WORK/ext.eml"
	uid=$(mt append-dated "Reçus" "$WORK/ext.eml" 1650000000) || {
		fail "append by the other client failed"
		return
	}
	wait_for 6 eval 'eml_names "$MNT/Reçus" | grep -qx "$uid.eml"' ||
		fail "message appended elsewhere not listed within 6 s"
	t cat "$MNT/Reçus/$uid.eml" >"$WORK/ext.got" 2>&1
	same_bytes "cat of the new message" "$WORK/ext.eml" "$WORK/ext.got"
	ic create External || fail "CREATE External failed"
	wait_for 6 eval 'names_in "$MNT" | grep -qx External' ||
		fail "folder created elsewhere not listed within 6 s"
	ic store INBOX "$SEED_UID_small" '\Answered' >/dev/null ||
		fail "STORE failed"
	wait_for 6 eval '[ "$(xattr_value "$f" user.imap.flags)" = \
		"\\Answered" ]' ||
		fail "flags changed elsewhere show as '$(xattr_value "$f" \
			user.imap.flags)' $(xattr_error)"
	{ ic mark-deleted "Reçus" "$uid" && ic expunge "Reçus"; } ||
		fail "expunge by the other client failed"
	wait_for 6 eval '! eml_names "$MNT/Reçus" | grep -qx "$uid.eml"' ||
		fail "message expunged elsewhere still listed after 6 s"
}

check_rsync()
{
	local out got srv
	need_mount || return
	mkdir -p "$WORK/backup"
	out=$(MT_TIMEOUT=$((MT_TIMEOUT * 4)) t rsync -a "$MNT/" \
		"$WORK/backup/" 2>&1) ||
		fail "rsync from the mount: $(oneline <<<"$out")"
	out=$(MT_TIMEOUT=$((MT_TIMEOUT * 4)) mt verify-tree "$WORK/backup" \
		2>&1) || fail "backup differs: $(oneline <<<"$out")"

	expect_ok "mkdir Restored" t mkdir "$MNT/Restored" || return
	out=$(MT_TIMEOUT=$((MT_TIMEOUT * 4)) t rsync -a \
		"$WORK/backup/Archive/" "$MNT/Restored/" 2>&1) ||
		fail "rsync into the mount: $(oneline <<<"$out")"
	out=$(mt same-messages Archive Restored 2>&1) ||
		fail "Restored: $(oneline <<<"$out")"
	out=$(mt same-messages Archive/2023 Restored/2023 2>&1) ||
		fail "Restored/2023: $(oneline <<<"$out")"
	srv=$(server_uids Restored | sed 's/$/.eml/')
	wait_for 3 eval '[ "$(eml_names "$MNT/Restored" | sort)" = \
		"$(sort <<<"$srv")" ]' ||
		same_list "ls Restored vs server" "$srv" \
			"$(eml_names "$MNT/Restored")"
}

# A mailbox that is only the parent of another: \Noselect on Dovecot's
# maildir (Cyrus makes it a real, empty mailbox instead).
check_noselect()
{
	local uid got
	need_mount || return
	ic create Parent/Child || {
		fail "CREATE Parent/Child failed"
		return
	}
	if [ "$IMAP_SERVER" = dovecot ] && ! ic list-attrs | awk -F'\t' \
		'$1 == "Parent" && tolower($2) ~ /\\noselect/ { f = 1 }
		END { exit !f }'; then
		fail "test setup: Parent is not \\Noselect:" \
			"$(ic list-attrs | oneline)"
	fi
	printf 'Subject: child\r\n\r\nIn the child.\r\n' >"$WORK/child.eml"
	uid=$(ic append Parent/Child "$WORK/child.eml") || {
		fail "APPEND to Parent/Child failed"
		return
	}
	wait_for 6 eval 'names_in "$MNT" | grep -qx Parent' ||
		fail "Parent not listed within 6 s"
	got=$(t stat -c '%a %F' -- "$MNT/Parent" 2>&1)
	[ "$got" = "700 directory" ] ||
		fail "stat Parent: '$got', want '700 directory'"
	same_list "ls Parent" Child "$(names_in "$MNT/Parent")"
	same_list "ls Parent/Child" "$uid.eml" "$(names_in "$MNT/Parent/Child")"
	t cat "$MNT/Parent/Child/$uid.eml" >"$WORK/child.got" 2>&1
	same_bytes "cat Parent/Child/$uid.eml" "$WORK/child.eml" \
		"$WORK/child.got"
}

# Of the Dovecot sessions that logged in after line MARK of its log:
# "LOGINS ENDED SENT", how many there were, how many have logged their end,
# and the bytes (out=) the server sent in those.
sessions_since()
{
	tail -n +"$(($1 + 1))" "$DOVE/dovecot.log" | awk '
	/ Login: / && match($0, /session=<[^>]*>/) {
		logins[substr($0, RSTART + 9, RLENGTH - 10)] = 1
		n++
	}
	/ out=[0-9]/ && match($0, /><[^>]*>: /) {
		s = substr($0, RSTART + 2, RLENGTH - 5)
		if ((s in logins) && match($0, / out=[0-9]+/)) {
			ended++
			sent += substr($0, RSTART + 5, RLENGTH - 5)
		}
	}
	END { printf "%d %d %d\n", n, ended, sent }'
}

check_read_only()
{
	local before_uids before_list before_flags f mark d got
	local logins ended sent
	before_uids=$(server_uids INBOX)
	before_list=$(ic list)
	before_flags=$(ic flags INBOX "$SEED_UID_small")
	mark=$({ wc -l <"$DOVE/dovecot.log"; } 2>/dev/null || echo 0)
	if ! mount_imapfs "$MNT_RO" \
		"imaps://$S_USER@localhost:$S_TLS_PORT/" -o read_only \
		-o "tls_ca_file=$S_CA_FILE" -o max_conns=1 \
		-o "password_command=cat $WORK/password"; then
		fail "$MOUNT_ERROR"
		return
	fi
	need_mount "$MNT_RO" || return
	awk -v m="$MNT_RO" '$2 == m && $4 ~ /^ro,/ { ok = 1 } END { exit !ok }' \
		/proc/mounts || fail "the kernel's mount is not read-only:" \
		"$(grep -F " $MNT_RO " /proc/mounts | oneline)"
	for d in INBOX Archive/2023; do
		got=$(t stat -c '%a %F' -- "$MNT_RO/$d" 2>&1)
		[ "$got" = "700 directory" ] ||
			fail "stat $d: '$got', want '700 directory'"
	done
	got=$(t stat -c '%a %h %F' -- "$MNT_RO/INBOX/$SEED_UID_small.eml" 2>&1)
	[ "$got" = "400 1 regular file" ] ||
		fail "stat INBOX/$SEED_UID_small.eml: '$got'," \
			"want '400 1 regular file'"
	# ls -l takes the readdir path.
	got=$(t ls -ln "$MNT_RO/INBOX" 2>&1 | grep -v '^total')
	if [ "$(grep -c . <<<"$got")" -lt 8 ]; then
		fail "ls -l INBOX: $(oneline <<<"$got")"
	else
		got=$(awk '$1 " " $2 != "-r-------- 1" {
			print $NF ": " $1 " " $2 }' <<<"$got")
		[ -z "$got" ] ||
			fail "ls -l INBOX, want -r-------- 1: $(oneline <<<"$got")"
	fi
	f=INBOX/$SEED_UID_big.eml
	t head -c 200 "$MNT_RO/$f" >"$WORK/ro.head"
	head -c 200 "$REF/$f" >"$WORK/ro.head.exp"
	same_bytes "head -c 200 of the big message" "$WORK/ro.head.exp" \
		"$WORK/ro.head"
	# One IMAP connection (max_conns=1) serving two readers at once.
	t cat "$MNT_RO/INBOX/$SEED_UID_needle.eml" >"$WORK/ro.cat1" &
	t cat "$MNT_RO/Archive/2023/$SEED_UID_a23.eml" >"$WORK/ro.cat2" &
	wait
	same_bytes "cat INBOX/$SEED_UID_needle.eml" \
		"$REF/INBOX/$SEED_UID_needle.eml" "$WORK/ro.cat1"
	same_bytes "cat Archive/2023/$SEED_UID_a23.eml" \
		"$REF/Archive/2023/$SEED_UID_a23.eml" "$WORK/ro.cat2"
	expect_error "rm" 'Read-only file system' \
		t rm -f "$MNT_RO/INBOX/$SEED_UID_small.eml"
	expect_error "mkdir" 'Read-only file system' t mkdir "$MNT_RO/RO"
	printf 'Subject: ro\r\n\r\nno\r\n' >"$WORK/ro.eml"
	expect_error "cp" 'Read-only file system' \
		t cp "$WORK/ro.eml" "$MNT_RO/INBOX/"
	expect_error "setfattr" 'Read-only file system' \
		t setfattr -n user.imap.flags -v '\Seen' \
		"$MNT_RO/INBOX/$SEED_UID_small.eml"
	same_list "server INBOX" "$before_uids" "$(server_uids INBOX)"
	same_list "server mailboxes" "$before_list" "$(ic list)"
	[ "$(ic flags INBOX "$SEED_UID_small")" = "$before_flags" ] ||
		fail "flags changed on the server"
	unmount_imapfs "$MNT_RO"
	# What the server sent to this mount (Dovecot logs it as each
	# session ends): head -c 200 of the big message fetched a window of
	# it, not all of it. Our own checks' sessions count too; small.
	[ "$IMAP_SERVER" = dovecot ] || return 0
	wait_for 10 eval '[ "$(sessions_since "$mark" | cut -d" " -f1)" = \
		"$(sessions_since "$mark" | cut -d" " -f2)" ]'
	read -r logins ended sent < <(sessions_since "$mark")
	if [ "$logins" -lt 1 ] || [ "$ended" -ne "$logins" ]; then
		fail "Dovecot logged $logins logins, $ended ends of session"
	elif [ "$sent" -ge 1048576 ]; then
		fail "Dovecot sent $sent bytes for head -c 200 of a" \
			"$(manifest_field "$f" 2)-byte message and two small" \
			"cats, want < 1 MiB"
	fi
}

# -o read_only,exact_sizes: the kernel opens messages itself (FUSE
# no_open). libfuse's -d log counts the requests: one OPEN (answered
# ENOSYS) and one FLUSH (likewise) for the whole mount, no RELEASE, and
# a second read of a file comes from the page cache. A message replaced
# under its UID (folder recreated: new UIDVALIDITY) is read anew.
# settled_count PATTERN FILE: lines of FILE matching PATTERN, counted once
# none has been added for a second (at most 10 s): readahead may still be
# asking when cat has returned, and the daemon's debug log trails it.
settled_count()
{
	local n m=-1 i=0
	n=$(grep -c "$1" "$2")
	while [ "$n" != "$m" ] && [ $i -lt 10 ]; do
		sleep 1
		m=$n
		n=$(grep -c "$1" "$2")
		i=$((i + 1))
	done
	echo "$n"
}

# Maps each FILE read-only, copies it through the mapping to OUT.1,
# OUT.2, ..., locks the pages in memory where it may, creates OUT.held and
# keeps the mappings until killed.
hold_mapped()
{
	exec python3 - "$@" <<'EOF'
import ctypes, mmap, signal, sys
out, maps = sys.argv[1], []
for i, path in enumerate(sys.argv[2:], 1):
    with open(path, 'rb') as f:
        maps.append(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ))
    with open('%s.%d' % (out, i), 'wb') as copy:
        copy.write(maps[-1][:])
# MCL_CURRENT. Mapped pages are safe from DAMON's pageout of unmapped
# page cache already; locked ones from any reclaim.
if ctypes.CDLL(None, use_errno=True).mlockall(1) != 0:
    print('mlockall: errno %d' % ctypes.get_errno(), file=sys.stderr)
open(out + '.held', 'w').close()
signal.pause()
EOF
}

check_read_only_no_open()
{
	local mnt=$WORK/mnt-noopen log=$WORK/noopen.err f i n reads uid pid old
	local hold
	local files=("INBOX/$SEED_UID_small.eml" "INBOX/$SEED_UID_big.eml"
		"INBOX/$SEED_UID_needle.eml" "Archive/2023/$SEED_UID_a23.eml")
	printf 'Subject: first\r\n\r\nthe first message\r\n' \
		>"$WORK/again1.eml"
	printf 'Subject: second\r\n\r\nanother message, same UID\r\n' \
		>"$WORK/again2.eml"
	printf 'Subject: filler\r\n\r\nfiller\r\n' >"$WORK/filler.eml"
	# UID 6: a recreated folder may not start again at UID 1 (Dovecot
	# sometimes goes on counting), but it starts below 6.
	ic create Again && ic append Again "$WORK/filler.eml" >/dev/null &&
		ic append Again "$WORK/filler.eml" >/dev/null &&
		ic append Again "$WORK/filler.eml" >/dev/null &&
		ic append Again "$WORK/filler.eml" >/dev/null &&
		ic append Again "$WORK/filler.eml" >/dev/null &&
		uid=$(ic append Again "$WORK/again1.eml") ||
		{ fail "creating Again on the server"; return; }
	mkdir -p "$mnt"
	MOUNTS+=("$mnt")
	# Its own cache: the main mount holds the account's default one. One
	# connection: with the main mount's, ic's must stay within Dovecot's
	# 10 per user and address. No watcher: the listing is refreshed where
	# the check below wants it, in a read.
	"$IMAPFS" -d -o read_only,exact_sizes -o "tls_ca_file=$S_CA_FILE" \
		-o "cache_dir=$WORK/noopen-cache" -o max_conns=1 -o no_watch \
		-o "password_command=cat $WORK/password" \
		"imaps://$S_USER@localhost:$S_TLS_PORT/" "$mnt" \
		</dev/null >"$WORK/noopen.out" 2>"$log" &
	pid=$!
	wait_for 10 is_mounted "$mnt" ||
		{ fail "no mount: $(tail -3 "$log" | oneline)"; return; }
	# The first round reads through mappings held until the second is
	# done: page cache that only read() touched may be paged out within
	# seconds by proactive reclaim (DAMON on CI's kernel), and reading
	# those pages again would look like a cache dropped at open.
	hold_mapped "$WORK/noopen.map" "${files[@]/#/$mnt/}" &
	hold=$!
	BG_PIDS+=("$hold")
	wait_for 60 test -e "$WORK/noopen.map.held" || {
		kill "$hold"
		wait "$hold" 2>/dev/null
		fail "mapping the files failed"
		return
	}
	i=0
	for f in "${files[@]}"; do
		i=$((i + 1))
		same_bytes "mapped $f" "$REF/$f" "$WORK/noopen.map.$i"
	done
	reads=$(settled_count 'opcode: READ ' "$log")
	for f in "${files[@]}"; do
		t cat "$mnt/$f" >"$WORK/noopen.cat"
		same_bytes "cat $f" "$REF/$f" "$WORK/noopen.cat"
	done
	[ "$(grep -c 'opcode: OPEN ' "$log")" = 1 ] ||
		fail "OPEN requests: $(grep -c 'opcode: OPEN ' "$log"), want 1"
	[ "$(grep -c 'opcode: FLUSH ' "$log")" = 1 ] ||
		fail "FLUSH requests: $(grep -c 'opcode: FLUSH ' "$log"), want 1"
	[ "$(grep -c 'opcode: RELEASE ' "$log")" = 0 ] ||
		fail "RELEASE requests: $(grep -c 'opcode: RELEASE ' "$log")"
	n=$(settled_count 'opcode: READ ' "$log")
	kill "$hold"
	wait "$hold" 2>/dev/null
	[ "$reads" -ge 4 ] && [ "$n" = "$reads" ] ||
		fail "READ requests: $reads after mapping the files," \
			"$n after cat"
	# The kept handles read from the body cache, not from the windows
	# (up to 8 MiB each) their first reads were fetched into.
	n=$(find "/proc/$pid/fd" -lname '*/bodies/*' 2>/dev/null | grep -c .)
	[ "$n" -ge "${#files[@]}" ] ||
		fail "kept handles on cached bodies: $n, want ${#files[@]}"
	# The kernel's mount is read-only: no open for writing reaches us.
	expect_error "append to a message" 'Read-only file system' \
		t sh -c "echo x >>'$mnt/INBOX/$SEED_UID_small.eml'"
	t ls -l "$mnt/Again" >/dev/null # the kernel knows every name in it
	t cat "$mnt/Again/$uid.eml" >"$WORK/again.got"
	same_bytes "cat Again/$uid.eml" "$WORK/again1.eml" "$WORK/again.got"
	old=$(ic status Again 2>&1)
	n=$({ ic rename Again Again-old && ic create Again; } 2>&1) ||
		fail "recreating Again on the server: $(oneline <<<"$old $n")"
	n=$(ic status Again | awk '{ print $4 }')
	while [ -n "$n" ] && [ "$n" -lt "$uid" ]; do
		ic append Again "$WORK/filler.eml" >/dev/null || break
		n=$(ic status Again | awk '{ print $4 }')
	done
	n=$(ic append Again "$WORK/again2.eml")
	[ "$n" = "$uid" ] && [ "$(ic status Again | awk '{ print $6 }')" != \
		"$(awk '{ print $6 }' <<<"$old")" ] ||
		fail "recreated Again: UID ${n:-none} (want $uid), $(ic status \
			Again) (was $old)"
	# setfattr is refused on a read-only mount; a get refreshes too.
	t getfattr -n user.imapfs.refresh "$mnt" >/dev/null ||
		fail "getfattr user.imapfs.refresh"
	# A file never read: its first READ opens it, which refreshes the
	# stale listing, which invalidates that very file while the READ is
	# unanswered (lowlevel.c hands invalidations to a thread of their own
	# for this). Any answer but a hang will do (UID 1 may not exist in
	# the new folder).
	t cat "$mnt/Again/1.eml" >/dev/null 2>&1
	n=$?
	[ "$n" -ne 124 ] && [ "$n" -ne 137 ] ||
		{ fail "cat Again/1.eml hung"; return; }
	t ls "$mnt/Again" >/dev/null
	t cat "$mnt/Again/$uid.eml" >"$WORK/again.got"
	same_bytes "cat Again/$uid.eml after Again was recreated" \
		"$WORK/again2.eml" "$WORK/again.got"
	unmount_imapfs "$mnt"
	ic delete Again
	ic delete Again-old
}

check_starttls()
{
	local got
	if ! IMAPFS_PASSWORD=$S_PASSWORD mount_imapfs "$MNT_TLS" \
		"imap://$S_USER@localhost:$S_PORT/" \
		-o "tls_ca_file=$S_CA_FILE"; then
		fail "$MOUNT_ERROR"
		return
	fi
	need_mount "$MNT_TLS" || return
	got=$(names_in "$MNT_TLS")
	same_list "ls" "$(ic list | grep -v / | sed 's/%/%25/g')" "$got"
	t cat "$MNT_TLS/日本語/$SEED_UID_jp.eml" >"$WORK/tls.cat" 2>&1
	same_bytes "cat" "$REF/日本語/$SEED_UID_jp.eml" "$WORK/tls.cat"
	unmount_imapfs "$MNT_TLS"
	is_mounted "$MNT_TLS" && fail "still mounted"
}

check_trash()
{
	local uid=$SEED_UID_utf8 mnt=$WORK/mnt-trash before
	ic create Trash || {
		fail "CREATE Trash failed"
		return
	}
	if ! mount_imapfs "$mnt" "imaps://$S_USER@localhost:$S_TLS_PORT/" \
		-o "tls_ca_file=$S_CA_FILE" -o "password_file=$WORK/password" \
		-o trash=Trash; then
		fail "$MOUNT_ERROR"
		return
	fi
	need_mount "$mnt" || return
	before=$(server_uids Trash)
	expect_ok "rm" t rm "$mnt/INBOX/$uid.eml"
	server_uids INBOX | grep -qx "$uid" && fail "still in INBOX"
	expect_one_new_message "message in Trash" Trash "$before" \
		"$REF/INBOX/$uid.eml"
	unmount_imapfs "$mnt"
	is_mounted "$mnt" && fail "still mounted"
}

# cp of a message bigger than what is left of the quota: close() fails
# with ENOSPC and the server holds nothing new. On a server of its own,
# with room for 200 KiB (the main one's quota is check_df's); the local
# ENVF and S_* stand for it meanwhile (start_imap_server sets them).
check_enospc()
{
	# shellcheck disable=SC2034 # all set by start_imap_server
	local ENVF=$WORK/quota.env S_HOST S_PORT S_TLS_PORT S_USER S_PASSWORD
	# shellcheck disable=SC2034
	local S_CA_FILE S_OTHER_CA_FILE S_CERT_NAME S_DELIMITER
	local dir=$WORK/quota-server mnt=$WORK/mnt-quota
	if ! start_imap_server "$dir" "$ENVF" --quota-kb 200; then
		fail "$IMAP_SERVER with a quota did not start: $SERVER_ERROR"
		return
	fi
	write_password "$WORK/password-quota"
	if ! mount_imapfs "$mnt" "imaps://$S_USER@localhost:$S_TLS_PORT/" \
		-o "tls_ca_file=$S_CA_FILE" \
		-o "password_file=$WORK/password-quota"; then
		fail "$MOUNT_ERROR"
	elif need_mount "$mnt"; then
		over_quota_cp "$mnt"
	fi
	unmount_imapfs "$mnt"
	stop_imap_server "$dir"
}

over_quota_cp()
{
	local mnt=$1 before
	printf 'Subject: fits\r\n\r\nSmall.\r\n' >"$WORK/fits.eml"
	python3 - "$WORK/over.eml" <<'EOF'
import sys
lines = [b"Subject: over the quota", b""] + [b"x" * 70] * 4300
open(sys.argv[1], "wb").write(b"\r\n".join(lines) + b"\r\n")
EOF
	expect_ok "cp of a message that fits" t cp "$WORK/fits.eml" \
		"$mnt/INBOX/"
	before=$(server_uids INBOX)
	[ "$(grep -c . <<<"$before")" -eq 1 ] ||
		fail "server INBOX holds [$(oneline <<<"$before")], want 1 UID"
	expect_error "cp of 300 KiB into 200 KiB of quota" "$QUOTA_ERROR" \
		t cp "$WORK/over.eml" "$mnt/INBOX/"
	same_list "server INBOX after cp over the quota" "$before" \
		"$(server_uids INBOX)"
	# The failed upload is kept and tried again as its folder is
	# listed: in vain too.
	names_in "$mnt/INBOX" >/dev/null
	same_list "server INBOX after listing it" "$before" \
		"$(server_uids INBOX)"
	# Dropped, so that unmounting does not try it once more.
	expect_ok "rm of the failed upload" t rm -f "$mnt/INBOX/over.eml"
}

# A Dovecot that takes OAuth2 access tokens (JWTs it checks against a
# local key) and a token command minting them, each good for the number of
# seconds in $WORK/jwt/lifetime; every run adds a line to $WORK/jwt/runs.
write_oauth2_server_conf()
{
	local d=$WORK/jwt
	mkdir -p "$d/keys/default/HS256"
	printf 'imapfs-test-signing-key' | base64 >"$d/keys/default/HS256/default"
	cat >"$d/oauth2.conf.ext" <<EOF
introspection_mode = local
local_validation_key_dict = fs:posix:prefix=$d/keys/
username_attribute = sub
EOF
	cat >"$d/extra.conf" <<EOF
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $d/oauth2.conf.ext
}
EOF
	chmod -R a+rX "$d"
	cat >"$d/mint.py" <<'EOF'
import base64, hashlib, hmac, json, os, sys, time
d = os.path.dirname(os.path.abspath(__file__))
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
life = int(open(os.path.join(d, "lifetime")).read())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "default"}).encode())
body = b64(json.dumps({"sub": sys.argv[1], "iat": now, "exp": now + life}).encode())
sig = hmac.new(b"imapfs-test-signing-key", (head + "." + body).encode(),
               hashlib.sha256).digest()
with open(os.path.join(d, "runs"), "a") as f:
    f.write("%d\n" % now)
print(head + "." + body + "." + b64(sig))
EOF
}

# An OAuth2 access token lasts an hour; a mount lasts longer. Connections
# made after the token expired (here: after the server dropped them all)
# must log in with a new one from oauth2_token_command, not fail.
check_oauth2_renewal()
{
	[ "$IMAP_SERVER" = dovecot ] || return 0 # Cyrus here: no OAuth2
	# shellcheck disable=SC2034 # all set by start_imap_server
	local ENVF=$WORK/oauth.env S_HOST S_PORT S_TLS_PORT S_USER S_PASSWORD
	# shellcheck disable=SC2034
	local S_CA_FILE S_OTHER_CA_FILE S_CERT_NAME S_DELIMITER
	local dir=$WORK/oauth-server mnt=$WORK/mnt-oauth d=$WORK/jwt uid runs
	write_oauth2_server_conf
	if ! start_imap_server "$dir" "$ENVF" --extra-conf "$d/extra.conf"; then
		fail "$IMAP_SERVER with OAuth2 did not start: $SERVER_ERROR"
		return
	fi
	printf 'Subject: token\r\n\r\nRenewed.\r\n' >"$WORK/token.eml"
	uid=$(ic append INBOX "$WORK/token.eml") || {
		fail "APPEND to the OAuth2 server failed"
		return
	}
	echo 4 >"$d/lifetime"
	if ! mount_imapfs "$mnt" "imaps://$S_USER@localhost:$S_TLS_PORT/" \
		-o "tls_ca_file=$S_CA_FILE" -o auth=xoauth2 \
		-o "oauth2_token_command=python3 $d/mint.py $S_USER"; then
		fail "$MOUNT_ERROR"
	elif need_mount "$mnt"; then
		same_list "ls INBOX" "$uid.eml" "$(names_in "$mnt/INBOX")"
		sleep 5
		echo 3600 >"$d/lifetime"
		t doveadm -c "$dir/dovecot.conf" kick "$S_USER" >/dev/null ||
			fail "doveadm kick failed"
		t cat "$mnt/INBOX/$uid.eml" >"$WORK/token.cat" 2>&1
		same_bytes "cat after the token expired" "$WORK/token.eml" \
			"$WORK/token.cat"
		runs=$(grep -c . "$d/runs")
		[ "$runs" -ge 2 ] ||
			fail "oauth2_token_command ran $runs times, want 2 or more"
	fi
	unmount_imapfs "$mnt"
	stop_imap_server "$dir"
}

# bad_mount LABEL REGEX [env NAME=VALUE] imapfs-arguments...: the daemon must
# exit non-zero before mounting, with one line on stderr matching REGEX.
bad_mount()
{
	local label=$1 re=$2 rc lines p
	shift 2
	mkdir -p "$MNT_BAD"
	t "$@" "$MNT_BAD" </dev/null >/dev/null 2>"$WORK/bad.err"
	rc=$?
	lines=$(grep -c . "$WORK/bad.err")
	if [ $rc -eq 0 ]; then
		fail "$label: exit 0"
	elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		fail "$label: hung (killed after ${MT_TIMEOUT}s)"
	elif [ "$lines" -ne 1 ]; then
		fail "$label: $lines lines on stderr, want 1: $(oneline <"$WORK/bad.err")"
	elif ! grep -qiE -- "$re" "$WORK/bad.err"; then
		fail "$label: unclear message (want /$re/): $(oneline <"$WORK/bad.err")"
	fi
	if is_mounted "$MNT_BAD"; then
		fail "$label: $MNT_BAD got mounted"
		MOUNTS+=("$MNT_BAD")
		unmount_imapfs "$MNT_BAD"
	fi
	p=$(imapfs_pids_for "$MNT_BAD")
	# shellcheck disable=SC2086
	if [ -n "$p" ] && ! wait_gone 3 $p; then
		fail "$label: imapfs still running (pid $p)"
		kill -KILL $p 2>/dev/null
	fi
}

check_bad_mounts()
{
	local url="imaps://$S_USER@localhost:$S_TLS_PORT/" dead_port
	printf 'wrong-password\n' >"$WORK/wrong"
	chmod 0600 "$WORK/wrong"
	bad_mount "wrong password" 'auth|login|password|credential|denied' \
		"$IMAPFS" -o "tls_ca_file=$S_CA_FILE" \
		-o "password_file=$WORK/wrong" "$url"
	bad_mount "untrusted certificate" 'certif|verif|trust|tls|ssl' \
		"$IMAPFS" -o "tls_ca_file=$S_OTHER_CA_FILE" \
		-o "password_file=$WORK/password" "$url"
	dead_port=$(python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	bad_mount "unreachable server" 'connect|refused|unreachable|reach' \
		"$IMAPFS" -o "tls_ca_file=$S_CA_FILE" \
		-o "password_file=$WORK/password" \
		"imaps://$S_USER@localhost:$dead_port/"
	# imap:// (STARTTLS) against the implicit-TLS port: nothing comes.
	bad_mount "no greeting (timeout=3)" 'no data|time|greeting' \
		"$IMAPFS" -o "tls_ca_file=$S_CA_FILE" -o timeout=3 \
		-o "password_file=$WORK/password" \
		"imap://$S_USER@localhost:$S_TLS_PORT/"
	# setsid: no controlling terminal, so no prompt on /dev/tty either.
	bad_mount "no password source" 'password' \
		setsid -w "$IMAPFS" -o "tls_ca_file=$S_CA_FILE" "$url"
	bad_mount "password_command fails" 'password' \
		"$IMAPFS" -o "tls_ca_file=$S_CA_FILE" \
		-o "password_command=false" "$url"
	cp "$WORK/password" "$WORK/password-0644"
	chmod 0644 "$WORK/password-0644"
	bad_mount "bad URL (scheme)" "bad URL 'http://" \
		"$IMAPFS" -o "tls_ca_file=$S_CA_FILE" \
		-o "password_file=$WORK/password" "http://$S_USER@localhost/"
	bad_mount "bad URL (port)" 'bad URL.*port' \
		"$IMAPFS" -o "tls_ca_file=$S_CA_FILE" \
		-o "password_file=$WORK/password" \
		"imaps://$S_USER@localhost:99999/"
	bad_mount "password_file readable by others" \
		'0600|mode|permission|readable|insecure|secure' \
		"$IMAPFS" -o "tls_ca_file=$S_CA_FILE" \
		-o "password_file=$WORK/password-0644" "$url"
}

check_version()
{
	local want out rc
	want=$(sed -n "s/^[[:space:]]*version : '\([^']*\)',\$/\1/p" \
		"$SOURCEDIR/meson.build" | head -n 1)
	out=$(t "$IMAPFS" --version </dev/null 2>"$WORK/version.err")
	rc=$?
	[ $rc -eq 0 ] || fail "exit $rc: $(oneline <"$WORK/version.err")"
	[ -n "$want" ] || fail "no project version in meson.build"
	[ "$(head -n 1 <<<"$out")" = "imapfs $want" ] ||
		fail "first line '$(head -n 1 <<<"$out")', want 'imapfs $want'"
}

# Prints the stacks of the threads of each PID as TAP comments.
show_stacks()
{
	local p
	command -v gdb >/dev/null || return 0
	for p in "$@"; do
		echo "# pid $p still running after unmount; its threads:"
		t gdb -batch -p "$p" -ex "thread apply all bt 12" 2>&1 |
			grep -E '^(Thread|#)' | sed 's/^/#   /'
	done
}

check_unmount()
{
	local pids rc out
	pids=$(imapfs_pids_for "$MNT")
	[ -n "$pids" ] || pids=${MAIN_PIDS:-}
	if ! is_mounted "$MNT"; then
		fail "$MNT was not mounted any more"
	else
		out=$(t fusermount3 -u "$MNT" 2>&1)
		rc=$?
		[ $rc -eq 0 ] || fail "fusermount3 -u: exit $rc: $(oneline <<<"$out")"
	fi
	# A daemon still there after 5 s is shown in the log (its threads'
	# stacks); one still there after 30 s is hung. (Under ASan on a
	# loaded machine the leak check at exit alone can take seconds.)
	# shellcheck disable=SC2086
	if [ -n "$pids" ] && ! wait_gone 5 $pids; then
		show_stacks $pids
		# shellcheck disable=SC2086
		wait_gone 25 $pids ||
			fail "imapfs (pid $pids) still running 30 s after unmount"
	fi
	is_mounted "$MNT" && fail "$MNT still mounted"
	pids=$(imapfs_pids)
	[ -z "$pids" ] || fail "imapfs processes left: $pids"
}

# --- main ---------------------------------------------------------------

write_mt_py "$WORK/mt.py"
T0=$(date +%s.%N)
start_main_server "$DOVE" "$ENVF" --quota-kb 100000
echo "# $IMAP_SERVER started in $(python3 -c "import sys, time
print('%.1f' % (time.time() - float(sys.argv[1])))" "$T0") s"
write_password "$WORK/password"
MAIN_PIDS=

run_check "seed the server" check_seed
if [ "$FAILED" -ne 0 ]; then
	cleanup
	echo "Bail out! cannot seed the server"
	echo "$PASSED passed, $FAILED failed"
	exit 1
fi
run_check "mount over TLS, daemonized" check_mount
run_check "ls shows folders" check_ls
run_check "stat: size and mtime" check_stat
run_check "inode numbers: unique, stable" check_inodes
run_check "partial reads" check_partial_read
run_check "cat equals BODY[]" check_cat
run_check "grep -rl NEEDLE" check_grep
run_check "reading leaves \\Seen unset" check_seen
run_check "xattrs" check_xattr
run_check "rm expunges one message" check_rm
run_check "mv across folders" check_mv
run_check "mkdir, rmdir, rename folders" check_dirs
run_check "CR/LF in names refused" check_bad_names
run_check "cp uploads" check_cp
run_check "messages are not writable" check_no_write
run_check "df shows the quota" check_df
run_check "changes by other clients show" check_other_clients
run_check "rsync backup and restore" check_rsync
run_check "a \\Noselect parent is a directory" check_noselect
run_check "read_only mount" check_read_only
run_check "read_only, exact_sizes: no OPEN per file" check_read_only_no_open
run_check "STARTTLS mount" check_starttls
run_check "rm with -o trash" check_trash
run_check "cp over the quota: ENOSPC" check_enospc
run_check "an expired OAuth2 token is renewed" check_oauth2_renewal
run_check "failed mounts" check_bad_mounts
run_check "imapfs --version" check_version
run_check "unmount ends the daemon" check_unmount

cleanup
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
