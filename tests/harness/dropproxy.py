#!/usr/bin/env python3
"""dropproxy.py - a plain-TCP IMAP proxy that loses the answer to an APPEND.

Usage: dropproxy.py --target HOST:PORT [--drop REGEX] [--max-seconds S]

Prints "PORT=n" once listening on 127.0.0.1. Bytes pass both ways unchanged
until the first APPEND: the server gets the whole command (so it stores the
message), but when its tagged answer comes the proxy swallows it and closes
that connection, as a network cut at the worst moment would. From then on
every new connection is closed at once (the server looks unreachable) until
the proxy gets SIGUSR1; after that it forwards everything, once more without
interfering. The client cannot know whether its upload arrived.

With --drop, the first client line matching REGEX (e.g. "UID MOVE") is
never passed on: the proxy cuts every connection there and then, prints
"DROPPED" on stdout and refuses connections until SIGUSR1, so the client
cannot know that its command never reached the server.
"""
import argparse
import re
import signal
import socket
import sys
import threading
import time

APPEND_RE = re.compile(rb"^(\S+) (?:UID )?APPEND ", re.IGNORECASE)

state = {"armed": True, "down": False}
drop_re = None
lock = threading.Lock()
open_socks = set()


def cut_all():
    """Every connection goes down with the one whose answer was lost."""
    for sock in list(open_socks):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def pump_up(client, server, tags):
    """Client to server; remembers the tag of the first APPEND, or drops
    the first line matching --drop."""
    pending = b""
    try:
        while True:
            data = client.recv(65536)
            if not data:
                break
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                with lock:
                    if drop_re and state["armed"] and drop_re.search(line):
                        state["armed"] = False
                        state["down"] = True
                        cut_all()
                        print("DROPPED", flush=True)
                        raise ConnectionAbortedError
                    match = APPEND_RE.match(line)
                    if (match and state["armed"] and not drop_re and
                            not tags):
                        tags.append(match.group(1))
                        state["armed"] = False
            # Literal payloads may hold no newline for long: keep only
            # the tail a command line could start in.
            pending = pending[-4096:]
            server.sendall(data)
    except OSError:
        pass
    for sock in (client, server):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def pump_down(server, client, tags):
    """Server to client, line by line; drops the APPEND's tagged answer."""
    buf = b""
    try:
        while True:
            data = server.recv(65536)
            if not data:
                break
            buf += data
            out = b""
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if tags and line.startswith(tags[0] + b" "):
                    client.sendall(out)
                    with lock:
                        state["down"] = True
                        cut_all()
                    raise ConnectionAbortedError
                out += line + b"\n"
            client.sendall(out)
    except OSError:
        pass
    for sock in (client, server):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(client, target):
    with lock:
        down = state["down"]
    if down:
        client.close()
        return
    try:
        server = socket.create_connection(target, timeout=10)
    except OSError:
        client.close()
        return
    server.settimeout(None)
    with lock:
        open_socks.update((client, server))
    tags = []
    up = threading.Thread(target=pump_up, args=(client, server, tags),
                          daemon=True)
    up.start()
    pump_down(server, client, tags)
    up.join(timeout=5)
    with lock:
        open_socks.difference_update((client, server))
    client.close()
    server.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--drop")
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    global drop_re
    if args.drop:
        drop_re = re.compile(args.drop.encode(), re.IGNORECASE)
    host, port = args.target.rsplit(":", 1)
    target = (host, int(port))

    def release(_signum, _frame):
        with lock:
            state["down"] = False

    signal.signal(signal.SIGUSR1, release)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.5)
    print("PORT=%d" % listener.getsockname()[1], flush=True)
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        try:
            client, _ = listener.accept()
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        threading.Thread(target=serve, args=(client, target),
                         daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
