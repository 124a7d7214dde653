#!/bin/bash
# daily_test.sh - imapfs the way one runs it every day: /etc/fstab lines
# mounted with the real mount(8) and mount.fuse3 (both the "imapfs#SOURCE"
# and the "fuse.imapfs" type form, with fstab-only words), named accounts
# from the config file (XDG_CONFIG_HOME, -o config=, the command line
# winning over the file, unknown keys refused), and the log: one line with
# the errno and the server's words on stderr in the foreground, syslog once
# detached.
#
#   daily_test.sh BUILDDIR SOURCEDIR
#
# Runs in a private mount namespace (unshare -m), where a scratch directory
# is bound over /usr/local/sbin to hold "imapfs": mount(8) clears PATH, so
# mount.fuse3 finds the daemon only in the default search path. Nothing
# outside the namespace sees these mounts. Prints "ok - NAME" or
# "FAIL - NAME: details" per check; exit 0, 1, or 77 (cannot run here).
#
# IMAP_SERVER=cyrus runs the same checks against Cyrus (tests/harness/
# cyrus.sh) instead of Dovecot.
# shellcheck source-path=SCRIPTDIR
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mount_lib.sh
. "$HERE/mount_lib.sh"
mount_test_init daily "$@"
unset XDG_CONFIG_HOME
require_fuse "mount, FUSE, Dovecot"
select_imap_server
require_tools mount.fuse3 mount umount unshare python3 timeout setsid \
	openssl
require_imapfs

# Into a private mount namespace, once.
if [ -z "${DAILY_TEST_NS:-}" ]; then
	unshare -m --propagation private true 2>/dev/null ||
		skip "cannot create a mount namespace (unshare -m)"
	DAILY_TEST_NS=1 exec unshare -m --propagation private \
		"$BASH" "${BASH_SOURCE[0]}" "$@"
fi

make_workdir
# The daemon's persistent cache goes here, not into the real home.
export XDG_CACHE_HOME=$WORK/xdg-cache
DOVE=$WORK/dovecot
ENVF=$WORK/server.env
MNT=$WORK/mnt
DEV_OVERLAY=

# Waits until MNT is a mount point (mount(8) returns once the helper did).
wait_mounted()
{
	local _
	for _ in $(seq 1 50); do
		is_mounted "$1" && return 0
		sleep 0.1
	done
	return 1
}

# check_content MNT: the mount lists INBOX and its two messages, and
# reading one gives the server's bytes.
check_content()
{
	local mnt=$1 got
	if ! timeout -k 2 10 stat "$mnt" >/dev/null 2>&1; then
		fail "$mnt does not answer"
		return 1
	fi
	got=$(names_in "$mnt" | tr '\n' ' ')
	[ "$got" = "Archive INBOX " ] || fail "ls $mnt: '$got'"
	got=$(names_in "$mnt/INBOX" | tr '\n' ' ')
	[ "$got" = "$UID_A.eml $UID_B.eml " ] || fail "ls $mnt/INBOX: '$got'"
	if ! t cat "$mnt/INBOX/$UID_B.eml" >"$WORK/cat.out" 2>"$WORK/cat.err"
	then
		fail "cat $mnt/INBOX/$UID_B.eml: $(oneline <"$WORK/cat.err")"
		return 1
	fi
	cmp -s "$WORK/msg-b.eml" "$WORK/cat.out" ||
		fail "cat $mnt/INBOX/$UID_B.eml differs from what was appended"
}

# real_umount MNT: umount(8) must end the mount and its daemon.
real_umount()
{
	local mnt=$1 pids out
	pids=$(imapfs_pids_for "$mnt")
	[ -n "$pids" ] || fail "no imapfs daemon serves $mnt"
	out=$(t umount "$mnt" 2>&1) || fail "umount $mnt: $(oneline <<<"$out")"
	is_mounted "$mnt" && fail "$mnt still mounted after umount"
	# shellcheck disable=SC2086
	if [ -n "$pids" ] && ! wait_gone 5 $pids; then
		fail "imapfs (pid $pids) still running after umount"
	fi
}

# fstab_mount LABEL FSTAB-LINE: mounts MNT from a temporary fstab holding
# the line, with the real mount(8), checks it and unmounts it.
fstab_mount()
{
	local label=$1 line=$2 out
	printf '# imapfs daily_test\n%s\n' "$line" >"$WORK/fstab"
	mkdir -p "$MNT"
	MOUNTS+=("$MNT")
	if ! out=$(t mount -T "$WORK/fstab" "$MNT" </dev/null 2>&1); then
		fail "$label: mount -T: $(oneline <<<"$out")"
		return
	fi
	if ! wait_mounted "$MNT"; then
		fail "$label: mount succeeded but $MNT is not mounted"
		return
	fi
	check_content "$MNT"
	real_umount "$MNT"
}

# An fstab field: spaces written \040 as fstab(5) wants.
fstab_escape()
{
	printf '%s\n' "${1// /\\040}"
}

URL=
OPTS=

check_fstab_hash_form()
{
	fstab_mount "imapfs#URL" "imapfs#$URL $MNT fuse noauto,user,_netdev,$OPTS 0 0"
}

check_fstab_type_form()
{
	fstab_mount "fuse.imapfs" "$URL $MNT fuse.imapfs noauto,users,_netdev,nofail,defaults,x-systemd.automount,x-systemd.mount-timeout=30,$OPTS 0 0"
}

check_mount_t()
{
	local out
	mkdir -p "$MNT"
	MOUNTS+=("$MNT")
	if ! out=$(t mount -t fuse.imapfs "$URL" "$MNT" \
		-o "noauto,_netdev,nofail,$OPTS" </dev/null 2>&1); then
		fail "mount -t fuse.imapfs: $(oneline <<<"$out")"
		return
	fi
	wait_mounted "$MNT" || fail "$MNT not mounted"
	check_content "$MNT"
	real_umount "$MNT"
}

# The words mount.fuse3 strips must not reach libfuse when imapfs is run
# by hand with an fstab line's options either.
check_direct_fstab_words()
{
	if ! mount_imapfs "$MNT" "$URL" -o "noauto,user,users,_netdev,nofail" \
		-o "auto,defaults,x-systemd.automount,comment=x,$OPTS"; then
		fail "$MOUNT_ERROR"
		return
	fi
	check_content "$MNT"
	unmount_imapfs "$MNT"
}

# as_user COMMAND: runs the shell command as USER_NAME.
as_user()
{
	t su -s /bin/sh -c "$1" "$USER_NAME" </dev/null
}

# A "user" line of /etc/fstab (a file bound over it in this namespace)
# mounted and unmounted by an ordinary user: mount(8) runs mount.fuse3 and
# imapfs as that user, and fusermount3 mounts.
check_user_mount()
{
	local home=$WORK/user mnt=$WORK/user/mnt out pids p uid
	mkdir -p "$mnt"
	printf '%s\n' "$S_PASSWORD" >"$home/pw"
	cp "$S_CA_FILE" "$home/ca.pem"
	chmod 0600 "$home/pw"
	chown -R "$USER_NAME:" "$home"
	chmod 0700 "$home"
	printf 'imapfs#%s %s fuse noauto,user,_netdev,password_file=%s,tls_ca_file=%s 0 0\n' \
		"$URL" "$mnt" "$home/pw" "$home/ca.pem" >"$WORK/etc-fstab"
	if ! mount --bind "$WORK/etc-fstab" /etc/fstab; then
		fail "cannot bind a file over /etc/fstab"
		return
	fi
	MOUNTS+=("$mnt")
	# Containers may leave /dev/fuse to root alone (0600); it is 0666 on
	# an ordinary system. Opened up on an overlay seen only here.
	if [ "$(stat -c %a /dev/fuse)" != 666 ]; then
		mkdir -p "$WORK/devovl/upper" "$WORK/devovl/work"
		if ! mount -t overlay overlay -o "lowerdir=/dev,upperdir=$WORK/devovl/upper,workdir=$WORK/devovl/work" /dev ||
			! chmod 0666 /dev/fuse; then
			umount /etc/fstab
			echo "# /dev/fuse is not usable by $USER_NAME: user mount not checked"
			return
		fi
		DEV_OVERLAY=1
	fi
	out=$(as_user "mount '$mnt'" 2>&1) ||
		fail "mount as $USER_NAME: $(oneline <<<"$out")"
	umount /etc/fstab
	if ! wait_mounted "$mnt"; then
		fail "$mnt not mounted"
		return
	fi
	pids=$(imapfs_pids_for "$mnt")
	[ -n "$pids" ] || fail "no daemon serves $mnt"
	for p in $pids; do
		uid=$(awk '$1 == "Uid:" { print $2 }' "/proc/$p/status")
		[ "$uid" = "$(id -u "$USER_NAME")" ] ||
			fail "imapfs runs as uid $uid, not as $USER_NAME"
	done
	out=$(as_user "ls '$mnt/INBOX'" 2>&1)
	[ "$(tr '\n' ' ' <<<"$out")" = "$UID_A.eml $UID_B.eml " ] ||
		fail "ls as $USER_NAME: $(oneline <<<"$out")"
	as_user "cat '$mnt/INBOX/$UID_B.eml'" >"$WORK/user.cat" 2>&1
	cmp -s "$WORK/msg-b.eml" "$WORK/user.cat" ||
		fail "cat as $USER_NAME: $(oneline <"$WORK/user.cat")"
	out=$(as_user "fusermount3 -u '$mnt'" 2>&1) ||
		fail "fusermount3 -u as $USER_NAME: $(oneline <<<"$out")"
	is_mounted "$mnt" && fail "still mounted"
	# shellcheck disable=SC2086
	[ -z "$pids" ] || wait_gone 5 $pids || fail "daemon still running"
	if [ -n "$DEV_OVERLAY" ]; then
		umount /dev 2>/dev/null || umount -l /dev
		DEV_OVERLAY=
	fi
}

write_config()
{
	mkdir -p "$WORK/xdg/imapfs"
	cat >"$WORK/xdg/imapfs/config" <<EOF
# imapfs accounts (daily_test)
[work]
url = imaps://$S_USER@localhost:$S_TLS_PORT/
password_file = $WORK/password
tls_ca_file = $S_CA_FILE
read_only = yes
dir_cache_timeout = 1

[broken]
url = imaps://$S_USER@localhost:$S_TLS_PORT/
password_file = $WORK/password
tls_ca_file = $S_CA_FILE
read_onyl = yes
EOF
	chmod 0600 "$WORK/xdg/imapfs/config"
}

check_account()
{
	if ! XDG_CONFIG_HOME=$WORK/xdg mount_imapfs "$MNT" work; then
		fail "imapfs work: $MOUNT_ERROR"
		return
	fi
	check_content "$MNT"
	# read_only = yes in the file.
	expect_error "mkdir on the read-only account" 'Read-only file system' \
		t mkdir "$MNT/Nope"
	unmount_imapfs "$MNT"
	ic list | grep -qx Nope && fail "Nope was created on the server"
}

check_cmdline_wins()
{
	if ! XDG_CONFIG_HOME=$WORK/xdg mount_imapfs "$MNT" work \
		-o read_only=no; then
		fail "imapfs -o read_only=no work: $MOUNT_ERROR"
		return
	fi
	expect_ok "mkdir with -o read_only=no" t mkdir "$MNT/Writable"
	ic list | grep -qx Writable || fail "Writable not on the server"
	expect_ok "rmdir" t rmdir "$MNT/Writable"
	unmount_imapfs "$MNT"
}

# An account in a file named by -o config=, mounted through fstab (mount(8)
# clears XDG_CONFIG_HOME and HOME, so the path is spelled out).
check_fstab_account()
{
	cp "$WORK/xdg/imapfs/config" "$WORK/other.conf"
	fstab_mount "imapfs#ACCOUNT" "imapfs#work $MNT fuse noauto,user,config=$WORK/other.conf 0 0"
}

check_unknown_key()
{
	local rc lines
	mkdir -p "$MNT"
	XDG_CONFIG_HOME=$WORK/xdg t "$IMAPFS" broken "$MNT" </dev/null \
		>/dev/null 2>"$WORK/broken.err"
	rc=$?
	[ $rc -ne 0 ] || fail "exit 0 with an unknown key"
	lines=$(grep -c . "$WORK/broken.err")
	[ "$lines" -eq 1 ] || fail "$lines lines on stderr, want 1"
	grep -qF "$WORK/xdg/imapfs/config: [broken] read_onyl: unknown key" \
		"$WORK/broken.err" ||
		fail "message: $(oneline <"$WORK/broken.err")"
	is_mounted "$MNT" && fail "mounted anyway"
	XDG_CONFIG_HOME=$WORK/xdg t "$IMAPFS" nosuch "$MNT" </dev/null \
		>/dev/null 2>"$WORK/nosuch.err" && fail "exit 0 for [nosuch]"
	grep -qF "no account [nosuch] in $WORK/xdg/imapfs/config" \
		"$WORK/nosuch.err" ||
		fail "message: $(oneline <"$WORK/nosuch.err")"
}

# -o tls_fingerprint= pins the server's certificate instead of checking
# its chain: the harness's certificate, from a CA imapfs is not told about
# here, mounts with its SHA-256 fingerprint (as openssl prints it), and a
# wrong fingerprint refuses the mount with one line.
check_fingerprint()
{
	local cert fp wrong rc lines hex
	cert=$(dirname "$S_CA_FILE")/server.pem
	fp=$(openssl x509 -in "$cert" -noout -fingerprint -sha256 2>&1)
	fp=${fp#*=}
	if ! [[ $fp =~ ^([0-9A-F]{2}:){31}[0-9A-F]{2}$ ]]; then
		fail "openssl x509 -fingerprint: $fp"
		return
	fi
	mkdir -p "$MNT"
	MOUNTS+=("$MNT")
	expect_error "mount without tls_ca_file or a pin" \
		'certificate verification failed' t "$IMAPFS" \
		-o "password_file=$WORK/password" "$URL" "$MNT" </dev/null
	is_mounted "$MNT" && unmount_imapfs "$MNT"
	if mount_imapfs "$MNT" "$URL" -o "password_file=$WORK/password" \
		-o "tls_fingerprint=sha256:$fp"; then
		check_content "$MNT"
		unmount_imapfs "$MNT"
	else
		fail "tls_fingerprint=sha256:$fp: $MOUNT_ERROR"
	fi
	# The same fingerprint with its last digit changed.
	wrong=${fp%?}$(tr 0-9A-F 1-9A-F0 <<<"${fp: -1}")
	t "$IMAPFS" -o "password_file=$WORK/password" \
		-o "tls_fingerprint=sha256:$wrong" "$URL" "$MNT" </dev/null \
		>/dev/null 2>"$WORK/pin.err"
	rc=$?
	[ $rc -ne 0 ] || fail "exit 0 with a wrong fingerprint"
	lines=$(grep -c . "$WORK/pin.err")
	[ "$lines" -eq 1 ] || fail "$lines lines on stderr, want 1:" \
		"$(oneline <"$WORK/pin.err")"
	# It names the server's real fingerprint.
	hex=$(tr -d : <<<"$fp" | tr A-F a-f)
	grep -qE "^imapfs: $URL: .*certificate fingerprint sha256:$hex does not match the pinned one$" \
		"$WORK/pin.err" || fail "message: $(oneline <"$WORK/pin.err")"
	if is_mounted "$MNT"; then
		fail "mounted with a wrong fingerprint"
		unmount_imapfs "$MNT"
	fi
}

# In the foreground (-f) the log is stderr: a failed operation is one line
# with the errno and the server's text.
check_foreground_log()
{
	local pid log=$WORK/fg.log lines got
	mkdir -p "$MNT"
	MOUNTS+=("$MNT")
	"$IMAPFS" -f -o "$OPTS" -o dir_cache_timeout=600 "$URL" "$MNT" \
		</dev/null >/dev/null 2>"$log" &
	pid=$!
	BG_PIDS+=("$pid")
	if ! wait_mounted "$MNT"; then
		fail "-f: not mounted: $(oneline <"$log")"
		return
	fi
	names_in "$MNT" >/dev/null
	# Created behind the daemon's back: its listing says no such folder,
	# so mkdir reaches the server, which refuses.
	ic create Dup >/dev/null || fail "CREATE Dup failed"
	expect_error "mkdir of a folder created elsewhere" 'File exists' \
		t mkdir "$MNT/Dup"
	expect_ok "fusermount3 -u" t fusermount3 -u "$MNT"
	if ! wait_gone 5 "$pid"; then
		fail "-f daemon still running after unmount"
		return
	fi
	wait "$pid" || fail "-f daemon exited $?: $(oneline <"$log")"
	lines=$(grep -c 'Dup' "$log")
	got=$(grep 'Dup' "$log")
	[ "$lines" -eq 1 ] || fail "$lines log lines about Dup: $(oneline <"$log")"
	grep -qE '^imapfs: warning: mkdir /Dup failed \(File exists\): .*[Mm]ailbox.*exists' \
		<<<"$got" || fail "log line: '$got'"
	ic delete Dup >/dev/null
}

# log_level=debug with debug_imap shows the protocol, never the password.
check_debug_log()
{
	local pid log=$WORK/debug.log
	mkdir -p "$MNT"
	"$IMAPFS" -f -o "$OPTS" -o debug_imap "$URL" "$MNT" </dev/null \
		>/dev/null 2>"$log" &
	pid=$!
	BG_PIDS+=("$pid")
	if ! wait_mounted "$MNT"; then
		fail "not mounted: $(oneline <"$log")"
		return
	fi
	names_in "$MNT/INBOX" >/dev/null
	t fusermount3 -u "$MNT"
	wait_gone 5 "$pid" || fail "daemon still running after unmount"
	grep -qE '^imapfs: debug: imap: C: .*LIST' "$log" ||
		fail "no LIST command in the debug log"
	grep -qE '^imapfs: debug: imap: C: [^ ]+ (AUTHENTICATE|LOGIN) ' \
		"$log" || fail "no login command in the debug log"
	grep -qF -- "$S_PASSWORD" "$log" && fail "the password is in the log"
	grep -qF -- "$(printf '\0%s\0%s' "$S_USER" "$S_PASSWORD" | base64)" \
		"$log" && fail "the AUTHENTICATE PLAIN blob is in the log"
	# The default level (warning) logs nothing on a quiet mount.
	"$IMAPFS" -f -o "$OPTS" "$URL" "$MNT" </dev/null >/dev/null \
		2>"$WORK/quiet.log" &
	pid=$!
	BG_PIDS+=("$pid")
	wait_mounted "$MNT" && names_in "$MNT/INBOX" >/dev/null
	t fusermount3 -u "$MNT"
	wait_gone 5 "$pid"
	[ ! -s "$WORK/quiet.log" ] ||
		fail "quiet mount logged: $(oneline <"$WORK/quiet.log")"
}

# Detached, the log goes to syslog as "imapfs[PID]". /dev/log is played by
# a socket on an overlay of /dev in a nested namespace.
check_syslog()
{
	mkdir -p "$WORK/ovl/upper" "$WORK/ovl/work"
	cat >"$WORK/syslog.py" <<'EOF'
import os, socket, sys, time
path, out = sys.argv[1], sys.argv[2]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
open(out + ".ready", "w").close()
s.settimeout(1)
with open(out, "ab", buffering=0) as f:
    end = time.time() + 120
    while time.time() < end and not os.path.exists(out + ".stop"):
        try:
            f.write(s.recv(65536) + b"\n")
        except socket.timeout:
            pass
EOF
	cat >"$WORK/syslog-inner.sh" <<EOF
mount -t overlay overlay -o lowerdir=/dev,upperdir=$WORK/ovl/upper,workdir=$WORK/ovl/work /dev || exit 3
python3 $WORK/syslog.py /dev/log $WORK/syslog.out &
for i in \$(seq 1 50); do [ -e $WORK/syslog.out.ready ] && break; sleep 0.1; done
mkdir -p $MNT
"$IMAPFS" -o "$OPTS" -o dir_cache_timeout=600 "$URL" "$MNT" </dev/null || exit 4
ls "$MNT" >/dev/null
python3 "$HARNESS/imapcheck.py" --env "$ENVF" create Dup2 >/dev/null
mkdir "$MNT/Dup2" 2>/dev/null && exit 5
fusermount3 -u "$MNT"
sleep 0.5
touch $WORK/syslog.out.stop
wait
exit 0
EOF
	t unshare -m --propagation private bash "$WORK/syslog-inner.sh" \
		>"$WORK/syslog-inner.err" 2>&1
	local rc=$?
	ic delete Dup2 >/dev/null
	if [ $rc -eq 3 ]; then
		echo "# syslog: no overlayfs here; not checked"
		return
	fi
	[ $rc -eq 0 ] || {
		fail "syslog run exited $rc: $(oneline <"$WORK/syslog-inner.err")"
		return
	}
	grep -qE '^<28>.*imapfs\[[0-9]+\]: warning: mkdir /Dup2 failed \(File exists\): ' \
		"$WORK/syslog.out" ||
		fail "no daemon.warning line in syslog: $(oneline <"$WORK/syslog.out")"
}

# doc/imapfs@.service: systemd accepts it, and its commands, run the way
# systemd would for imapfs@work, keep the account mounted and unmount it.
check_systemd_unit()
{
	local unit=$SOURCEDIR/doc/imapfs@.service dir=$WORK/unit out key
	local start stop mnt=$WORK/home/mail/work pid var
	for key in '^ExecStart=imapfs -f %I ' '^ExecStop=fusermount3 -u' \
		'^Restart=on-failure' '^After=network-online.target'; do
		grep -q "$key" "$unit" || fail "the unit lacks /$key/"
	done
	if command -v systemd-analyze >/dev/null; then
		mkdir -p "$dir/man/man1" "$dir/run"
		chmod 0700 "$dir/run"
		cp "$unit" "$dir/imapfs@work.service"
		cp "$SOURCEDIR/doc/imapfs.1" "$dir/man/man1/"
		# Commands are looked up in systemd's fixed path, where the
		# bound /usr/local/sbin holds imapfs.
		out=$(XDG_RUNTIME_DIR=$dir/run MANPATH=$dir/man t \
			systemd-analyze --user verify "$dir/imapfs@work.service" 2>&1) ||
			fail "systemd-analyze verify: $(oneline <<<"$out")"
		[ -z "$out" ] || fail "systemd-analyze says: $(oneline <<<"$out")"
	else
		echo "# systemd-analyze is not installed: unit not verified"
	fi
	# The unit's own command lines, with %I, %h and the variable filled in.
	start=$(sed -n 's/^ExecStart=//p' "$unit")
	stop=$(sed -n 's/^ExecStop=//p' "$unit")
	# shellcheck disable=SC2016 # the unit's text, not ours to expand
	var='${IMAPFS_MOUNTPOINT}'
	start=${start//%I/work}
	start=${start//"$var"/$mnt}
	stop=${stop//"$var"/$mnt}
	mkdir -p "$mnt"
	MOUNTS+=("$mnt")
	# shellcheck disable=SC2086 # word splitting as systemd does it
	XDG_CONFIG_HOME=$WORK/xdg $start </dev/null >/dev/null \
		2>"$WORK/unit.err" &
	pid=$!
	BG_PIDS+=("$pid")
	if ! wait_mounted "$mnt"; then
		fail "ExecStart did not mount: $(oneline <"$WORK/unit.err")"
		return
	fi
	check_content "$mnt"
	[ "$(awk '{ print $4 }' "/proc/$pid/stat")" = $$ ] ||
		fail "imapfs -f did not stay in the foreground"
	# shellcheck disable=SC2086
	out=$(t $stop 2>&1) || fail "ExecStop: $(oneline <<<"$out")"
	wait_gone 5 "$pid" || fail "imapfs still running after ExecStop"
	wait "$pid" || fail "imapfs exited $? after ExecStop (systemd would" \
		"call that a failure)"
	is_mounted "$mnt" && fail "still mounted after ExecStop"
}

check_man_page()
{
	local page=$SOURCEDIR/doc/imapfs.1 out
	if command -v groff >/dev/null; then
		out=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
		[ -z "$out" ] || fail "groff: $(oneline <<<"$out")"
	fi
	if command -v mandoc >/dev/null; then
		out=$(mandoc -Tlint -W warning "$page" 2>&1)
		[ -z "$out" ] || fail "mandoc: $(oneline <<<"$out")"
	fi
	local help keys
	help=$("$IMAPFS" --help 2>/dev/null)
	for key in user password_command password_file auth \
		oauth2_token_command tls_ca_file tls_fingerprint allow_plaintext \
		max_conns read_only trash dir_cache_timeout timeout exact_sizes \
		debug_imap log_level config; do
		grep -q -- "-o $key\b" <<<"$help" || fail "--help lacks $key"
	done
	# Every option --help shows has its entry in the man page.
	keys=$(sed -n '/^imapfs options:/,/^$/s/^    -o \([a-z0-9_]*\).*/\1/p' \
		<<<"$help")
	[ "$(wc -l <<<"$keys")" -ge 17 ] || fail "--help lists too few options"
	for key in $keys; do
		grep -qE "^\.BI? $key(=| |\$)" "$page" ||
			fail "the man page lacks $key"
	done
}

# --- main ---------------------------------------------------------------

start_main_server "$DOVE" "$ENVF"
# Says which server answers: a -cyrus run that silently ran Dovecot passed.
echo "# $IMAP_SERVER started"
write_password "$WORK/password"
printf 'From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n' >"$WORK/msg-a.eml"
printf 'From: b@example.org\r\nSubject: two\r\n\r\nsecond message\r\n' \
	>"$WORK/msg-b.eml"
if ! UID_A=$(ic append INBOX "$WORK/msg-a.eml") ||
	! UID_B=$(ic append INBOX "$WORK/msg-b.eml") ||
	! ic create Archive >/dev/null; then
	echo "Bail out! cannot seed the server"
	exit 1
fi

# mount.fuse3 runs "imapfs" from the default PATH: /usr/local/sbin first.
mkdir -p "$WORK/sbin"
ln -s "$IMAPFS" "$WORK/sbin/imapfs"
if ! mount --bind "$WORK/sbin" /usr/local/sbin; then
	echo "Bail out! cannot bind $WORK/sbin over /usr/local/sbin"
	exit 1
fi

# The ordinary user of the "user" fstab line.
USER_NAME=
if id nobody >/dev/null 2>&1 && command -v su >/dev/null &&
	[ -u "$(command -v fusermount3)" ]; then
	USER_NAME=nobody
fi

URL=imaps://$S_USER@localhost:$S_TLS_PORT/
# mount(8) clears the environment, so the cache directory is named here
# (else it would land in root's home).
OPTS="password_command=$(fstab_escape "cat $WORK/password"),tls_ca_file=$S_CA_FILE,cache_dir=$WORK/fstab-cache"
run_check "fstab imapfs#URL with mount and umount" check_fstab_hash_form
run_check "fstab fuse.imapfs with fstab-only words" check_fstab_type_form
OPTS="password_command=cat $WORK/password,tls_ca_file=$S_CA_FILE,cache_dir=$WORK/fstab-cache"
run_check "mount -t fuse.imapfs" check_mount_t
run_check "fstab words given to imapfs directly" check_direct_fstab_words
if [ -n "$USER_NAME" ]; then
	run_check "/etc/fstab user mount by $USER_NAME" check_user_mount
else
	echo "# no unprivileged user (nobody) here: user mount not checked"
fi
write_config
run_check "config file account (XDG_CONFIG_HOME)" check_account
run_check "command line overrides the file" check_cmdline_wins
run_check "fstab imapfs#ACCOUNT with config=" check_fstab_account
run_check "unknown keys and accounts refused" check_unknown_key
run_check "tls_fingerprint: a pinned certificate mounts, another is refused" \
	check_fingerprint
run_check "-f logs a failure as one stderr line" check_foreground_log
run_check "debug_imap log, password redacted" check_debug_log
run_check "detached daemon logs to syslog" check_syslog
run_check "systemd unit imapfs@.service" check_systemd_unit
run_check "man page" check_man_page

cleanup
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
