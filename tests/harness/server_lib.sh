# server_lib.sh - what dovecot.sh and cyrus.sh share (sourced, not run):
# errors, free loopback ports, the unprivileged mail user, process checks
# and the watchdog that removes a server whose test died. The sourcing
# script sets SERVER_SCRIPT (its own path) and defines dir_pids DIR (the
# server's processes).
# shellcheck shell=bash

die()
{
	echo "$(basename "$SERVER_SCRIPT"): $*" >&2
	exit 1
}

# Prints N distinct free loopback TCP ports (bound together, then released).
free_ports()
{
	python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

port_open()
{
	python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
EOF
}

# Like kill -0, but a zombie counts as dead: a daemonized master is reparented
# to PID 1, which in some containers reaps only now and then.
alive()
{
	local state
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ]
}

ensure_mail_user()
{
	if ! id -u "$MAIL_USER" >/dev/null 2>&1; then
		useradd --system --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$MAIL_USER" 2>/dev/null ||
			id -u "$MAIL_USER" >/dev/null 2>&1 ||
			die "cannot create user $MAIL_USER"
	fi
}

# Every directory above DIR must be traversable by the unprivileged mail
# user, or Dovecot fails much later with a confusing permission error.
check_traversable()
{
	local p=$1
	while [ "$p" != / ] && [ -n "$p" ]; do
		if ! runuser -u "$MAIL_USER" -- test -x "$p"; then
			die "$p is not searchable by $MAIL_USER (chmod o+x it)"
		fi
		p=$(dirname "$p")
	done
}

# Cleans up after a test process that died without stopping its server.
start_watchdog()
{
	local dir=$1 parent=$2 master self
	master=$(cat "$dir/run/master.pid")
	self=$SERVER_SCRIPT
	(
		while alive "$parent" && alive "$master"; do
			sleep 1
		done
		if ! alive "$parent"; then
			rm -f "$dir/run/watchdog.pid"
			"$self" stop "$dir"
			rm -rf "$dir"
		fi
	) </dev/null >/dev/null 2>&1 &
	echo $! >"$dir/run/watchdog.pid"
}

# Prints the pids of the master and all its descendants.
server_pids()
{
	local master=$1
	[ -n "$master" ] || return 0
	alive "$master" || return 0
	echo "$master"
	local child
	for child in $(pgrep -P "$master" || true); do
		server_pids "$child"
	done
}

# Stops the server in DIR (its watchdog first) and waits until none of
# its processes is left.
stop_server()
{
	local dir=$1 pids master='' _ p any
	[ -d "$dir" ] || die "no such directory: $dir"
	dir=$(cd "$dir" && pwd)
	if [ -s "$dir/run/watchdog.pid" ]; then
		kill "$(cat "$dir/run/watchdog.pid")" 2>/dev/null || true
		rm -f "$dir/run/watchdog.pid"
	fi
	if [ -s "$dir/run/master.pid" ]; then
		master=$(cat "$dir/run/master.pid")
	fi
	pids=$(
		server_pids "$master"
		dir_pids "$dir"
	)
	pids=$(echo "$pids" | sort -u | tr '\n' ' ')
	[ -n "${pids// /}" ] || return 0
	# shellcheck disable=SC2086 # one pid per word
	kill -TERM $pids 2>/dev/null || true
	for _ in $(seq 1 100); do
		any=
		for p in $pids; do
			alive "$p" && any=1
		done
		[ -z "$any" ] && break
		sleep 0.1
	done
	for p in $pids; do
		kill -KILL "$p" 2>/dev/null || true
	done
	for _ in $(seq 1 30); do
		any=
		for p in $pids; do
			alive "$p" && any=1
		done
		[ -z "$any" ] && return 0
		sleep 0.1
	done
	die "processes still alive: $pids"
}
