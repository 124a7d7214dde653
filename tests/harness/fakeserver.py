#!/usr/bin/env python3
"""fakeserver.py - a scripted fake IMAP server for edge cases and hostile
servers.

Usage: fakeserver.py [--timeout SECONDS] SCRIPT      (SCRIPT '-' = stdin)

It listens on 127.0.0.1 on a free port, prints "PORT=n" on stdout (flushed),
accepts ONE connection and plays SCRIPT line by line, then closes the
connection. The whole run is bounded by --timeout (default 30 s).

Script lines (blank lines and lines starting with '#' are ignored):
  S <text>     send text followed by CRLF
  R <text>     send text as is, without CRLF (raw bytes, e.g. half a line)
  C <regex>    read one line from the client (CRLF or LF stripped) and
               require that the regex matches the WHOLE line. Group 1, if
               the regex has one, becomes $TAG; a named group (?P<x>...)
               becomes $x.
  READ <n>     read exactly n bytes from the client (a literal's payload)
  STARTTLS <certfile> <keyfile>
               wrap the connection in TLS, server side ($VARS and ~ in the
               paths are expanded from the environment)
  SLEEP <ms>   pause
  EOF          read and discard until the client closes the connection
  CLOSE        close the connection now and exit 0

In S and R text, $TAG (and $name of named groups) are replaced by the last
captured values, then the escapes \\r \\n \\t \\\\ \\$ and \\xHH are
interpreted, so any byte can be sent. Everything read from the client is
echoed to stderr prefixed "C: " to help debugging.

Exit status: 0 script completed, 1 client line did not match or the client
closed early, 2 bad script, 3 TLS handshake failed, 4 timed out.
"""
import argparse
import os
import re
import signal
import socket
import ssl
import sys
import time


class ScriptError(Exception):
    pass


class Mismatch(Exception):
    pass


class TlsFailed(Exception):
    pass


def unescape(text):
    """Turns the escapes of S/R lines into bytes; other chars go as UTF-8."""
    out = bytearray()
    i = 0
    simple = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\", "$": b"$"}
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        if i + 1 >= len(text):
            raise ScriptError("dangling backslash in %r" % text)
        nxt = text[i + 1]
        if nxt in simple:
            out += simple[nxt]
            i += 2
        elif nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2:i + 4]):
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            raise ScriptError("unknown escape \\%s in %r" % (nxt, text))
    return bytes(out)


def substitute(text, captures):
    """Replaces $NAME by captured values, leaving \\$ for unescape()."""
    def repl(m):
        if m.group(0).startswith("\\"):
            return m.group(0)
        name = m.group(1)
        if name not in captures:
            raise ScriptError("$%s used before it was captured" % name)
        return captures[name]
    return re.sub(r"\\\$|\$([A-Za-z_][A-Za-z0-9_]*)", repl, text)


class Connection:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Mismatch("client closed the connection")
        sys.stderr.write("C: %r\n" % chunk)
        self.buf += chunk

    def readline(self):
        while b"\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line[:-1] if line.endswith(b"\r") else line

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def drain(self):
        try:
            while True:
                self._fill()
        except Mismatch:
            pass

    def starttls(self, cert, key):
        if self.buf:
            raise Mismatch("client sent data before TLS: %r" % self.buf)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.expanduser(os.path.expandvars(cert)),
                            os.path.expanduser(os.path.expandvars(key)))
        try:
            self.sock = ctx.wrap_socket(self.sock, server_side=True)
        except OSError as e:
            raise TlsFailed(str(e))


def play(conn, lines):
    captures = {}
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        try:
            if op == "S":
                conn.send(unescape(substitute(arg, captures)) + b"\r\n")
            elif op == "R":
                conn.send(unescape(substitute(arg, captures)))
            elif op == "C":
                got = conn.readline().decode("utf-8", errors="surrogateescape")
                m = re.fullmatch(arg, got)
                if not m:
                    raise Mismatch("expected /%s/, got %r" % (arg, got))
                if m.re.groups >= 1 and m.group(1) is not None:
                    captures["TAG"] = m.group(1)
                for k, v in m.groupdict().items():
                    if v is not None:
                        captures[k] = v
            elif op == "READ":
                conn.read(int(arg))
            elif op == "STARTTLS":
                cert, key = arg.split()
                conn.starttls(cert, key)
            elif op == "SLEEP":
                time.sleep(int(arg) / 1000.0)
            elif op == "EOF":
                conn.drain()
            elif op == "CLOSE":
                return
            else:
                raise ScriptError("unknown command %r" % op)
        except (ScriptError, ValueError, re.error) as e:
            raise ScriptError("line %d: %s" % (lineno, e))
        except Mismatch as e:
            raise Mismatch("line %d: %s" % (lineno, e))


def on_timeout(signum, frame):
    sys.stderr.write("fakeserver: timed out\n")
    sys.stderr.flush()
    os._exit(4)


def main():
    p = argparse.ArgumentParser(description="Scripted fake IMAP server.")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("script")
    o = p.parse_args()

    signal.signal(signal.SIGALRM, on_timeout)
    signal.setitimer(signal.ITIMER_REAL, o.timeout)

    try:
        if o.script == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(o.script, encoding="utf-8") as f:
                lines = f.read().splitlines()
    except OSError as e:
        print("fakeserver: %s" % e, file=sys.stderr)
        return 2

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    print("PORT=%d" % listener.getsockname()[1], flush=True)

    sock, _ = listener.accept()
    listener.close()
    conn = Connection(sock)
    try:
        play(conn, lines)
    except ScriptError as e:
        print("fakeserver: bad script: %s" % e, file=sys.stderr)
        return 2
    except TlsFailed as e:
        print("fakeserver: TLS handshake failed: %s" % e, file=sys.stderr)
        return 3
    except Mismatch as e:
        print("fakeserver: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("fakeserver: connection error: %s" % e, file=sys.stderr)
        return 1
    finally:
        try:
            conn.sock.close()
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
