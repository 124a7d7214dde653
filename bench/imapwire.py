"""imapwire.py - a deliberately minimal IMAP client on a raw TLS socket, for
the benchmark floors and the corpus check: one connection, one command at a
time, literals streamed and discarded (or kept when asked). No imaplib: its
per-line overhead would inflate the floor we compare imapfs against.
"""
import re
import socket
import ssl

LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
CHUNK = 1 << 20


class WireError(Exception):
    pass


class Wire:
    def __init__(self, host, port, ca_file, server_name="localhost",
                 timeout=300):
        ctx = ssl.create_default_context(cafile=ca_file)
        raw = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_name)
        self.f = self.sock.makefile("rb", buffering=CHUNK)
        self.tag = 0
        self.literal_bytes = 0
        greeting = self._line()
        if not greeting.startswith(b"* OK"):
            raise WireError("greeting: %r" % greeting[:200])

    def _line(self):
        line = self.f.readline()
        if not line:
            raise WireError("connection closed by the server")
        return line

    def _literal(self, n, keep):
        self.literal_bytes += n
        if keep:
            data = self.f.read(n)
            if len(data) != n:
                raise WireError("short literal")
            return data
        while n > 0:
            got = self.f.read(min(n, CHUNK))
            if not got:
                raise WireError("short literal")
            n -= len(got)
        return None

    def run(self, command, keep_lines=True, keep_literals=False):
        """Sends one command; returns the untagged responses, each as
        (text with literals replaced by {N}, [literals])."""
        self.tag += 1
        tag = b"W%d" % self.tag
        if isinstance(command, str):
            command = command.encode()
        self.sock.sendall(tag + b" " + command + b"\r\n")
        out = []
        while True:
            line = self._line()
            text, lits = line, []
            m = LITERAL.search(line)
            while m:
                lit = self._literal(int(m.group(1)), keep_literals)
                if keep_literals:
                    lits.append(lit)
                line = self._line()
                text += line
                m = LITERAL.search(line)
            if text.startswith(tag + b" "):
                if text.split(b" ", 2)[1].upper() != b"OK":
                    raise WireError("%s: %r" % (command[:60], text[:300]))
                return out
            if keep_lines:
                out.append((text, lits))

    def login(self, user, password):
        self.run('LOGIN "%s" "%s"' % (user, password))

    def list_mailboxes(self):
        names = []
        for text, _ in self.run('LIST "" "*"'):
            m = re.match(rb'\* LIST \(([^)]*)\) (?:"[^"]*"|NIL) (.*)\r\n$',
                         text)
            if not m or b"\\noselect" in m.group(1).lower():
                continue
            name = m.group(2)
            if name.startswith(b'"'):
                name = name[1:-1]
            names.append(name.decode())
        return names

    def examine(self, mailbox):
        exists = 0
        for text, _ in self.run('EXAMINE "%s"' % mailbox):
            m = re.match(rb"\* (\d+) EXISTS", text)
            if m:
                exists = int(m.group(1))
        return exists

    def status_messages(self, mailbox):
        for text, _ in self.run('STATUS "%s" (MESSAGES)' % mailbox):
            m = re.search(rb"MESSAGES (\d+)", text)
            if m:
                return int(m.group(1))
        raise WireError("no STATUS for " + mailbox)

    def logout(self):
        try:
            self.run("LOGOUT", keep_lines=False)
        except (WireError, OSError):
            pass
        self.sock.close()


META_ITEM = re.compile(
    rb"UID (\d+)|RFC822\.SIZE (\d+)|INTERNALDATE \"([^\"]+)\"")


def parse_meta(text):
    """uid, size, internaldate string from one FETCH response line."""
    uid = size = date = None
    for m in META_ITEM.finditer(text):
        if m.group(1):
            uid = int(m.group(1))
        elif m.group(2):
            size = int(m.group(2))
        else:
            date = m.group(3).decode()
    return uid, size, date
