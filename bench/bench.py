#!/usr/bin/env python3
"""bench.py - the "Fast at scale" benchmarks: imapfs against mbsync, a local
Maildir and raw-protocol floors, on loopback and through a 20 ms RTT proxy.
Run it through bench/run (which installs and builds first); see
bench/README.md for what each row measures.
"""
import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import corpus  # noqa: E402
from imapwire import Wire, parse_meta  # noqa: E402

DOVECOT_SH = os.path.join(ROOT, "tests", "harness", "dovecot.sh")
MAIL_USER = "imapfs-test"
DELAY_MS = 10
READERS = 8
# Sampling budgets (seconds): more runs only while the total stays below.
CHEAP = 20
DEAR = 45

# Targets from the issue: (op, bound).
TARGETS = {
    "a": ("<=", 0.5), "a@20ms": ("<=", 0.6), "b": ("<=", 1.5),
    "c-cold": ("<=", 1.2), "c-warm": ("<=", 3.0), "d": ("<=", 0.5),
    "e@20ms": (">=", 4.0), "f": ("<=", 200.0),
}


class BenchError(Exception):
    pass


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def run(cmd, timeout, check=True, capture=False, **kw):
    if capture:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
    try:
        r = subprocess.run(cmd, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise BenchError("timed out after %ds: %s" % (timeout, " ".join(cmd)))
    if check and r.returncode != 0:
        err = r.stderr.decode(errors="replace")[-800:] if capture else ""
        raise BenchError("exit %d: %s %s" % (r.returncode, " ".join(cmd),
                                             err))
    return r


def timed(cmd, timeout, **kw):
    """Seconds cmd took, and its result (stdout captured)."""
    t0 = time.monotonic()
    r = run(cmd, timeout, capture=True, **kw)
    return time.monotonic() - t0, r


def interleave(contenders, runs):
    """Runs each (fn, budget) of contenders once per round, for up to runs
    rounds, so that a change in machine load hits all of them alike. fn
    returns seconds; a contender sits out further rounds once another run
    would likely take its total past budget seconds. Returns the times,
    one list per contender."""
    times = [[] for _ in contenders]
    for r in range(runs):
        for t, (fn, budget) in zip(times, contenders):
            if r == 0 or sum(t) + t[-1] <= budget:
                t.append(fn())
    return times


def cpu_ticks():
    """(busy, all) clock ticks of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    idle = v[3] + v[4]  # idle, iowait
    return sum(v) - idle, sum(v)


def busy_share(fn, shares):
    """Wraps fn (returning seconds) so that each call also appends to
    shares the fraction of the machine's CPU time that was busy (any
    process) while it ran: near 1.0 means the run was CPU-bound."""
    def wrapped():
        b0, a0 = cpu_ticks()
        t = fn()
        b1, a1 = cpu_ticks()
        shares.append((b1 - b0) / max(1, a1 - a0))
        return t
    return wrapped


def server_tmpfs_ok():
    """Whether /dev/shm is a tmpfs with room for the servers' mail."""
    try:
        st = os.statvfs("/dev/shm")
        with open("/proc/self/mountinfo") as f:
            tmpfs = any(line.split()[4] == "/dev/shm" and
                        " - tmpfs " in line for line in f)
    except OSError:
        return False
    return tmpfs and st.f_bavail * st.f_frsize > 2 << 30


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def med(times):
    return statistics.median(times)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS for pid %d" % pid)


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid, secs):
    for _ in range(int(secs * 10)):
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


class Server:
    def __init__(self, env, directory):
        self.env = env
        self.dir = directory
        self.tls_port = int(env["TLS_PORT"])
        self.password_file = os.path.join(directory, "bench-password")
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (env["PASSWORD"] + "\n").encode())
        os.close(fd)

    def maildir(self):
        return os.path.join(self.dir, "mail", "alice", "Maildir")


class Mount:
    def __init__(self, path, pid, port, cache_dir):
        self.path = path
        self.pid = pid
        self.port = port
        self.cache_dir = cache_dir


class Bench:
    def __init__(self, o):
        self.o = o
        self.profile = "quick" if o.quick else "full"
        self.imapfs = os.path.realpath(os.path.join(o.build_dir, "fs",
                                                    "imapfs"))
        if not os.access(self.imapfs, os.X_OK):
            raise BenchError("no imapfs binary at " + self.imapfs)
        self.work = tempfile.mkdtemp(prefix="imapfs-bench.", dir="/tmp")
        os.chmod(self.work, 0o755)
        self.server_root = self.work
        if server_tmpfs_ok():
            # The servers stand for a remote machine: keep their mail in
            # RAM so that disk contention on this one does not show up as
            # server time. Client-side copies stay on disk, as for users.
            self.server_root = tempfile.mkdtemp(prefix="imapfs-bench.",
                                                dir="/dev/shm")
            os.chmod(self.server_root, 0o755)
        self.servers = []
        self.mounts = []
        self.proxies = []
        self.nmounts = 0
        self.rows = []
        self.notes = []
        self.phases = []
        self.proxy_kind = None
        self.mount_opts = o.mount_opts.split() if o.mount_opts else []
        self.fusefloor = os.path.realpath(os.path.join(
            o.build_dir, "bench", "fusefloor"))
        if not os.access(self.fusefloor, os.X_OK):
            self.fusefloor = None
        # The tree as built: others may commit while the suite runs.
        self.tree = (
            run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], 10,
                check=False, capture=True).stdout.decode().strip(),
            run(["git", "-C", ROOT, "status", "--porcelain", "fs", "cache",
                 "imap", "include"], 10, check=False,
                capture=True).stdout.strip())
        helptext = run([self.imapfs, "--help"], 30, check=False,
                       capture=True)
        helptext = helptext.stdout + helptext.stderr
        self.has_cache_dir = b"cache_dir=" in helptext
        # Older builds (a baseline binary) may lack it.
        self.has_exact_sizes = b"exact_sizes" in helptext

    # --- lifecycle ----------------------------------------------------

    def cleanup(self):
        t0 = time.monotonic()
        for m in list(self.mounts):
            try:
                self.unmount(m)
            except Exception as e:  # keep cleaning up the rest
                log("cleanup: unmount %s: %s" % (m.path, e))
        for p in self.proxies:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        for s in self.servers:
            run([DOVECOT_SH, "stop", s.dir], 60, check=False,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t1 = time.monotonic()
        if self.o.keep:
            log("kept %s and %s" % (self.work, self.server_root))
        else:
            shutil.rmtree(self.work, ignore_errors=True)
            shutil.rmtree(self.server_root, ignore_errors=True)
        log("cleanup: %.1f s stopping, %.1f s removing files" %
            (t1 - t0, time.monotonic() - t1))

    def phase(self, name, t0):
        self.phases.append((name, time.monotonic() - t0))

    def start_server(self, name):
        d = os.path.join(self.server_root, name)
        extra = os.path.join(self.work, "dovecot-extra.conf")
        with open(extra, "w") as f:
            # Several mounts and mbsync may overlap for a moment.
            f.write("protocol imap {\n  mail_max_userip_connections = "
                    "500\n}\n")
        r = run([DOVECOT_SH, "start", d, "--extra-conf", extra,
                 "--watch-pid", str(os.getpid())], 120, capture=True)
        env = {}
        for line in r.stdout.decode().splitlines():
            k, _, v = line.partition("=")
            env[k] = v
        s = Server(env, d)
        self.servers.append(s)
        return s

    def seed(self, server, dataset):
        t0 = time.monotonic()
        man = corpus.seed(self.profile, dataset, server.maildir(), MAIL_USER)
        took = time.monotonic() - t0
        problems = corpus.verify(man, "127.0.0.1", server.tls_port, "alice",
                                 server.env["PASSWORD"],
                                 server.env["CA_FILE"])
        if problems:
            raise BenchError("Dovecot does not serve the corpus as "
                             "written: " + "; ".join(problems))
        s = corpus.summary(man)
        log("%s: %d messages, %.1f MB in %d folders, written in %.1f s, "
            "verified (STATUS, RFC822.SIZE, INTERNALDATE) in %.1f s" %
            (dataset, s["messages"], s["bytes"] / 1e6, s["folders"], took,
             time.monotonic() - t0 - took))
        return man, s

    def start_proxy(self, server):
        fp = os.path.join(self.o.build_dir, "tests", "tools", "faultproxy")
        target = "127.0.0.1:%d" % server.tls_port
        if os.access(fp, os.X_OK):
            cmd = [fp, "--target", target, "--delay-ms", str(DELAY_MS)]
            self.proxy_kind = "tests/tools/faultproxy"
        else:
            cmd = [sys.executable, os.path.join(HERE, "delayproxy.py"),
                   "--target", target, "--delay-ms", str(DELAY_MS)]
            self.proxy_kind = "bench/delayproxy.py (faultproxy not built)"
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        self.proxies.append(p)
        line = p.stdout.readline().decode().strip()
        if not line.startswith("PORT="):
            raise BenchError("proxy printed %r" % line)
        log("latency proxy (%s) on port %s" % (self.proxy_kind, line[5:]))
        return int(line[5:])

    # --- imapfs mounts ------------------------------------------------

    def find_pid(self, path, exe_path=None):
        exe_path = exe_path or self.imapfs
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                exe = os.readlink("/proc/%s/exe" % p)
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if exe.removesuffix(" (deleted)") == exe_path and \
                    path.encode() in args:
                return int(p)
        raise BenchError("no %s process serves %s" %
                         (os.path.basename(exe_path), path))

    def mount_fusefloor(self, *what):
        """fusefloor N (a listing of N files) or fusefloor --mirror DIR
        (a read-only copy of DIR served as cheaply as FUSE allows)."""
        self.nmounts += 1
        path = os.path.join(self.work, "mnt", "fusefloor-%d" % self.nmounts)
        os.makedirs(path)
        run([self.fusefloor] + [str(w) for w in what] + [path], 60,
            stdin=subprocess.DEVNULL, capture=True)
        for _ in range(100):
            if mounted(path):
                break
            time.sleep(0.1)
        else:
            raise BenchError("fusefloor did not mount " + path)
        m = Mount(path, self.find_pid(path, self.fusefloor), None, None)
        self.mounts.append(m)
        return m

    def mount(self, server, port, label, cache_dir=None, opts=()):
        """Mounts a new daemon. Where imapfs has a persistent cache, it
        gets cache_dir, else a new empty one: a fresh mount is cold. opts:
        more options, after --mount-opts."""
        self.nmounts += 1
        name = "%s-%d" % (label, self.nmounts)
        path = os.path.join(self.work, "mnt", name)
        os.makedirs(path)
        errfile = path + ".log"
        extra = []
        if self.has_cache_dir:
            if cache_dir is None:
                cache_dir = os.path.join(self.work, "cache", name)
            extra = ["-o", "cache_dir=" + cache_dir]
        with open(errfile, "wb") as err:
            r = run([self.imapfs, "-o",
                     "password_file=" + server.password_file,
                     "-o", "tls_ca_file=" + server.env["CA_FILE"]] +
                    extra + self.mount_opts + list(opts) +
                    ["imaps://alice@localhost:%d/" % port, path], 60,
                    check=False, stdin=subprocess.DEVNULL, stdout=err,
                    stderr=err)
        if r.returncode != 0:
            with open(errfile, errors="replace") as f:
                raise BenchError("imapfs exited %d: %s" %
                                 (r.returncode, f.read()[-600:]))
        for _ in range(100):
            if mounted(path):
                break
            time.sleep(0.1)
        else:
            raise BenchError("imapfs did not mount " + path)
        m = Mount(path, self.find_pid(path), port, cache_dir)
        self.mounts.append(m)
        return m

    def unmount(self, m):
        self.mounts.remove(m)
        if mounted(m.path):
            for cmd in (["fusermount3", "-u", m.path],
                        ["umount", "-l", m.path]):
                if run(cmd, 30, check=False, stderr=subprocess.DEVNULL)\
                        .returncode == 0:
                    break
        if not wait_gone(m.pid, 10):
            os.kill(m.pid, signal.SIGTERM)
            if not wait_gone(m.pid, 5):
                os.kill(m.pid, signal.SIGKILL)

    # --- measurements -------------------------------------------------

    def grep(self, top, expect, timeout=300):
        t, r = timed(["grep", "-rl", "NEEDLE", top], timeout, check=False)
        hits = len(r.stdout.splitlines())
        if r.returncode != 0 or hits != expect:
            raise BenchError("grep -rl NEEDLE %s: exit %d, %d files (want "
                             "%d): %s" % (top, r.returncode, hits, expect,
                                          r.stderr.decode()[-400:]))
        return t

    def mbsync_rc(self, server, port, maildir):
        os.makedirs(maildir, exist_ok=True)
        rc = os.path.join(os.path.dirname(maildir), "mbsyncrc")
        with open(rc, "w") as f:
            # FSync yes is mbsync's default, spelt out: the reference is
            # mbsync as people run it, fsyncing every message.
            f.write("FSync yes\n\n"
                    "IMAPAccount bench\nHost localhost\nPort %d\n"
                    "User alice\nPass %s\nSSLType IMAPS\n"
                    "CertificateFile %s\n\n"
                    "IMAPStore far\nAccount bench\n\n"
                    "MaildirStore near\nPath %s/\nInbox %s/INBOX\n"
                    "SubFolders Verbatim\n\n"
                    "Channel pull\nFar :far:\nNear :near:\nPatterns *\n"
                    "Create Near\nSync Pull\nSyncState *\nExpunge None\n" %
                    (port, server.env["PASSWORD"], server.env["CA_FILE"],
                     maildir, maildir))
        os.chmod(rc, 0o600)
        return rc

    def mbsync(self, rc, timeout=300):
        t, _ = timed(["mbsync", "-q", "-c", rc, "-a"], timeout)
        return t

    def floor_bodies(self, server, port, expect_bytes):
        t0 = time.monotonic()
        w = Wire("127.0.0.1", port, server.env["CA_FILE"])
        w.login("alice", server.env["PASSWORD"])
        for mbox in w.list_mailboxes():
            if w.examine(mbox):
                w.run("UID FETCH 1:* BODY.PEEK[]", keep_lines=False)
        w.logout()
        t = time.monotonic() - t0
        if w.literal_bytes != expect_bytes:
            raise BenchError("floor fetched %d bytes, corpus has %d" %
                             (w.literal_bytes, expect_bytes))
        return t

    def floor_meta(self, server, port, mailbox, expect):
        t0 = time.monotonic()
        w = Wire("127.0.0.1", port, server.env["CA_FILE"])
        w.login("alice", server.env["PASSWORD"])
        w.examine(mailbox)
        lines = w.run("UID FETCH 1:* (UID RFC822.SIZE INTERNALDATE FLAGS)")
        w.logout()
        t = time.monotonic() - t0
        n = sum(1 for text, _ in lines if parse_meta(text)[0] is not None)
        if n != expect:
            raise BenchError("meta floor got %d messages, want %d" %
                             (n, expect))
        return t

    def floor_readers(self, server, port, picked, expect_bytes):
        """e's floor: the picked (size, folder, uid) bodies fetched by one
        connection in turn, and by one connection each at once; all are
        logged in before the clock starts, EXAMINE is timed (imapfs must
        select too). Returns (one, parallel) seconds."""
        def wire():
            w = Wire("127.0.0.1", port, server.env["CA_FILE"])
            w.login("alice", server.env["PASSWORD"])
            return w

        def fetch(w, folder, uid, select=True):
            if select:
                w.examine(folder)
            w.run("UID FETCH %d BODY.PEEK[]" % uid, keep_lines=False)
        one = wire()
        many = [wire() for _ in picked]
        t0 = time.monotonic()
        current = None
        for _, folder, uid in picked:
            fetch(one, folder, uid, folder != current)
            current = folder
        one_t = time.monotonic() - t0
        errors = []

        def fetch_one(w, folder, uid):
            try:
                fetch(w, folder, uid)
            except Exception as e:  # reported below, in this thread
                errors.append(e)
        threads = [threading.Thread(target=fetch_one, args=(w, f, u))
                   for w, (_, f, u) in zip(many, picked)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        par_t = time.monotonic() - t0
        for w in many + [one]:
            w.logout()
        got = one.literal_bytes, sum(w.literal_bytes for w in many)
        if errors or got != (expect_bytes, expect_bytes):
            raise BenchError("reader floor: %s, bytes %r, want %d" %
                             (errors[:1], got, expect_bytes))
        return one_t, par_t

    def ls_l(self, path, expect, timeout=300):
        t, r = timed(["ls", "-l", path], timeout)
        n = r.stdout.count(b"\n") - 1  # minus "total N"
        if n != expect:
            raise BenchError("ls -l %s listed %d entries, want %d" %
                             (path, n, expect))
        return t

    def rsync(self, src, dst, expect_changed=None, timeout=300):
        t, r = timed(["rsync", "-a", "-i", src.rstrip("/") + "/",
                      dst.rstrip("/") + "/"], timeout)
        changed = sum(1 for line in r.stdout.splitlines()
                      if line.startswith(b">f"))
        if expect_changed is not None and changed != expect_changed:
            raise BenchError("rsync %s transferred %d files, expected %d" %
                             (src, changed, expect_changed))
        return t

    def readers(self, m, paths, parallel, timeout=300):
        full = [os.path.join(m.path, p) for p in paths]
        t0 = time.monotonic()
        if not parallel:
            run(["cat"] + full, timeout, stdout=subprocess.DEVNULL)
            return time.monotonic() - t0
        procs = [subprocess.Popen(["cat", f], stdout=subprocess.DEVNULL)
                 for f in full]
        deadline = t0 + timeout
        for p in procs:
            try:
                p.wait(max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                raise BenchError("parallel cat timed out")
            if p.returncode != 0:
                raise BenchError("cat exited %d" % p.returncode)
        return time.monotonic() - t0

    def row(self, rid, what, value, ref_name, ref, detail="", ratio=None,
            target_key=None, unit="s"):
        if ratio is None and ref:
            ratio = value / ref
        target = TARGETS.get(target_key or rid)
        result = "-"
        if target and ratio is not None:
            op, bound = target
            ok = ratio <= bound if op == "<=" else ratio >= bound
            result = "PASS" if ok else "MISS"
        self.rows.append({"id": rid, "what": what, "value": value,
                          "unit": unit, "ref_name": ref_name, "ref": ref,
                          "ratio": ratio, "target": target,
                          "result": result, "detail": detail})

    # --- the suite ----------------------------------------------------

    def mail_suite(self, srv, port, tag, man, stats, local):
        """a, b (loopback only), d and e against port. local: the
        loopback mbsync copy and the backup, made on the first pass."""
        runs = self.o.runs
        lat = tag != "loopback"
        sfx = "@20ms" if lat else ""
        t0 = time.monotonic()
        # a. cold grep on fresh mounts; b. warm grep on the same mount.
        warm = []
        warm_cache = []
        n_sync = [0]

        busy = ([], [], [])  # CPU busy share: imapfs, mbsync, floor

        def cold():
            m = self.mount(srv, port, "grep-" + tag)
            t = busy_share(lambda: self.grep(m.path, stats["needles"]),
                           busy[0])()
            if not lat:
                warm.append(self.grep(m.path, stats["needles"]))
                warm_cache.append(m.cache_dir)
            self.unmount(m)
            return t
        def full_pull():
            n_sync[0] += 1
            md = os.path.join(self.work, "mbsync-%s-%d" % (tag, n_sync[0]),
                              "mail")
            return self.mbsync(self.mbsync_rc(srv, port, md))
        cold_t, pull_t, floor_t = interleave([
            (cold, DEAR),
            (busy_share(full_pull, busy[1]), DEAR),
            (busy_share(lambda: self.floor_bodies(srv, port,
                                                  stats["bytes"]),
                        busy[2]), CHEAP),
        ], runs)
        rc = os.path.join(self.work, "mbsync-%s-%d" % (tag, n_sync[0]),
                          "mbsyncrc")
        maildir = os.path.join(os.path.dirname(rc), "mail")
        self.phase("a grep/mbsync/floor " + tag, t0)
        self.row("a" + sfx, "cold `grep -rl` (%s)" % tag, med(cold_t),
                 "mbsync full pull", med(pull_t),
                 "floor (1 conn, UID FETCH 1:* BODY.PEEK[]) %.2f s; imapfs "
                 "= %.1fx floor; CPU busy (all %d cores, any process, "
                 "steal included) during imapfs/mbsync/floor "
                 "%.0f%%/%.0f%%/%.0f%%; "
                 "runs %d/%d/%d" %
                 (med(floor_t), med(cold_t) / med(floor_t),
                  os.cpu_count(), 100 * med(busy[0]), 100 * med(busy[1]),
                  100 * med(busy[2]), len(cold_t), len(pull_t),
                  len(floor_t)))

        if not lat:
            t0 = time.monotonic()
            self.grep(maildir, stats["needles"])  # warm the page cache
            local_t, = interleave([
                (lambda: self.grep(maildir, stats["needles"]), CHEAP)],
                runs)
            self.phase("b local grep", t0)
            self.row("b", "warm `grep -rl` (same mount, 2nd run)",
                     med(warm), "grep on local Maildir", med(local_t),
                     "runs %d/%d" % (len(warm), len(local_t)))
            local["maildir"] = maildir
            if self.fusefloor:
                self.fuse_floor_grep(maildir, stats["needles"], local_t)
            if self.has_cache_dir and self.has_exact_sizes:
                self.read_only_grep(srv, port, warm_cache[-1],
                                    stats["needles"], local_t)

        # d. no-change rsync into a full backup vs no-change mbsync.
        t0 = time.monotonic()
        backup = local.get("backup")
        if backup is None:
            backup = os.path.join(self.work, "backup")
            m = self.mount(srv, port, "rsync-full")
            full = self.rsync(m.path, backup,
                              expect_changed=stats["messages"])
            self.unmount(m)
            self.notes.append("first full `rsync -a MNT/ backup/` "
                              "(loopback): %.2f s" % full)
            local["backup"] = backup
            local["rsync_cache"] = m.cache_dir
        same = []

        def fresh():
            m = self.mount(srv, port, "rsync-" + tag,
                           cache_dir=local["rsync_cache"])
            t = self.rsync(m.path, backup, expect_changed=0)
            same.append(self.rsync(m.path, backup, expect_changed=0))
            self.unmount(m)
            return t
        fresh_t, nochange_t = interleave([
            (fresh, CHEAP), (lambda: self.mbsync(rc), CHEAP)], runs)
        self.phase("d rsync/mbsync no-change " + tag, t0)
        self.row("d" + sfx, "no-change `rsync -a`, remount (%s)" % tag,
                 med(fresh_t), "mbsync no-change", med(nochange_t),
                 "runs %d/%d" % (len(fresh_t), len(nochange_t)),
                 target_key="d")
        self.row("d2" + sfx, "no-change `rsync -a`, same mount again (%s)"
                 % tag, med(same), "mbsync no-change", med(nochange_t),
                 "listings cached (dir_cache_timeout)", target_key="d")
        if not lat:
            self.local_rsync_floor(local["maildir"], stats["messages"],
                                   nochange_t)

        # e. 8 parallel readers of large messages vs 1 reading them all.
        t0 = time.monotonic()
        biggest = sorted(((size, folder, uid)
                          for folder, rows in man.items()
                          for uid, size, _, _ in rows), reverse=True)
        picked = biggest[:READERS]
        paths = ["%s/%d.eml" % (f, u) for _, f, u in picked]
        nbytes = sum(s for s, _, _ in picked)

        def reader_run(parallel):
            m = self.mount(srv, port, "cat-" + tag)
            # Throughput of reading: the mount's one-time work (first
            # connection, the folders' listings) is done before the
            # clock starts; the bodies are still cold.
            for p in paths:
                os.stat(os.path.join(m.path, p))
            t = self.readers(m, paths, parallel)
            self.unmount(m)
            return t
        floor_one, floor_par = [], []

        def floor_run():
            one, par = self.floor_readers(srv, port, picked, nbytes)
            floor_one.append(one)
            floor_par.append(par)
            return one
        one_t, par_t, _ = interleave([
            (lambda: reader_run(False), CHEAP),
            (lambda: reader_run(True), CHEAP),
            (floor_run, CHEAP)], runs)
        self.phase("e readers " + tag, t0)
        self.row("e" + sfx, "%d parallel `cat` vs 1 (%s), throughput ratio"
                 % (READERS, tag), med(one_t) / med(par_t), "", None,
                 "%d msgs %.1f MB, listed first, bodies cold: 1 reader "
                 "%.2f s (%.1f MB/s), %d readers %.2f s (%.1f MB/s)" %
                 (READERS, nbytes / 1e6, med(one_t),
                  nbytes / 1e6 / med(one_t), READERS, med(par_t),
                  nbytes / 1e6 / med(par_t)),
                 ratio=med(one_t) / med(par_t), target_key="e" + sfx,
                 unit="x")
        self.row("e-floor" + sfx, "floor: %d connections fetching at once "
                 "vs 1 in turn (%s), throughput ratio" % (READERS, tag),
                 med(floor_one) / med(floor_par), "", None,
                 "bench/imapwire.py, connections logged in before the "
                 "clock, EXAMINE timed: 1 connection %.2f s, %d "
                 "connections %.2f s; runs %d" %
                 (med(floor_one), READERS, med(floor_par), len(floor_one)),
                 ratio=med(floor_one) / med(floor_par), unit="x")

    def fuse_floor_grep(self, maildir, needles, local_t):
        """b-fuse: warm grep over fusefloor --mirror of the Maildir."""
        t0 = time.monotonic()
        m = self.mount_fusefloor("--mirror", maildir)
        self.grep(m.path, needles)  # fills the page cache through FUSE
        fuse_t, = interleave([(lambda: self.grep(m.path, needles), CHEAP)],
                             self.o.runs)
        self.unmount(m)
        self.phase("b-fuse grep", t0)
        self.row("b-fuse", "warm `grep -rl` over a do-nothing FUSE mirror "
                 "of the Maildir (bench/fusefloor.c --mirror)", med(fuse_t),
                 "grep on local Maildir", med(local_t),
                 "what any FUSE daemon that answers OPEN pays per file: "
                 "OPEN and RELEASE (pages kept, no FLUSH); runs %d"
                 % len(fuse_t))

    def read_only_grep(self, srv, port, cache_dir, needles, local_t):
        """b-ro: warm grep on a -o read_only,exact_sizes mount, where the
        kernel opens messages without asking the daemon."""
        t0 = time.monotonic()
        m = self.mount(srv, port, "grep-ro", cache_dir=cache_dir,
                       opts=["-o", "read_only,exact_sizes"])
        self.grep(m.path, needles)  # bodies cached; fills the page cache
        ro_t, = interleave([(lambda: self.grep(m.path, needles), CHEAP)],
                           self.o.runs)
        self.unmount(m)
        self.phase("b-ro grep", t0)
        self.row("b-ro", "warm `grep -rl`, `-o read_only,exact_sizes` "
                 "(no OPEN per file)", med(ro_t), "grep on local Maildir",
                 med(local_t), "remount of a cold run's cache, one grep "
                 "to fill the page cache, then runs %d" % len(ro_t))

    def local_rsync_floor(self, maildir, messages, nochange_t):
        """d-local: no-change rsync -a between two local directories."""
        t0 = time.monotonic()
        backup = os.path.join(self.work, "backup-local")
        self.rsync(maildir, backup)
        local_t, = interleave([(lambda: self.rsync(maildir, backup,
                                                   expect_changed=0),
                                CHEAP)], self.o.runs)
        self.phase("d-local rsync", t0)
        self.row("d-local", "no-change `rsync -a` of the local Maildir into "
                 "a local backup", med(local_t), "mbsync no-change",
                 med(nochange_t), "rsync's own cost over %d local files "
                 "(lstat both sides); runs %d" % (messages, len(local_t)))

    def scale_suite(self, srv, man):
        runs = self.o.runs
        (folder, rows), = man.items()
        count = len(rows)
        t0 = time.monotonic()
        rss = []
        caches = []

        def listing(warm):
            def once():
                m = self.mount(srv, srv.tls_port,
                               "ls-remount" if warm else "ls-cold",
                               cache_dir=caches[-1] if warm else None)
                time.sleep(0.2)
                before = rss_kib(m.pid)
                t = self.ls_l(os.path.join(m.path, folder), count)
                if not warm:
                    rss.append((before, rss_kib(m.pid)))
                    caches.append(m.cache_dir)
                self.unmount(m)
                return t
            return once
        local_dir = os.path.join(corpus.folder_dir(srv.maildir(), folder),
                                 "cur")
        self.ls_l(local_dir, count)  # warm the dentry and inode caches

        fuse_rss = []

        def fuse_floor():
            m = self.mount_fusefloor(count)
            time.sleep(0.2)
            before = rss_kib(m.pid)
            t = self.ls_l(m.path, count)
            fuse_rss.append((before, rss_kib(m.pid)))
            self.unmount(m)
            return t
        meta_rss = []

        def metadata_only():
            # The listing loaded (a stat needs it), no ls: what the
            # daemon holds per message, without libfuse's inodes.
            m = self.mount(srv, srv.tls_port, "ls-meta")
            time.sleep(0.2)
            before = rss_kib(m.pid)
            os.stat(os.path.join(m.path, folder, "%d.eml" % rows[0][0]))
            meta_rss.append((before, rss_kib(m.pid)))
            self.unmount(m)
            return 0.0
        cold_t, warm_t, meta_t, local_t, fuse_t, _ = interleave([
            (listing(False), DEAR),
            (listing(True), DEAR),
            (lambda: self.floor_meta(srv, srv.tls_port, folder, count),
             CHEAP),
            (lambda: self.ls_l(local_dir, count), CHEAP),
            (fuse_floor if self.fusefloor else lambda: 0.0, CHEAP),
            (metadata_only, DEAR)], runs)
        self.phase("c ls -l %d, floor" % count, t0)
        floor = med(meta_t) + med(local_t)
        self.row("c-cold", "cold `ls -l` of %d messages" % count,
                 med(cold_t), "floor: FETCH meta + local ls -l", floor,
                 "UID FETCH 1:* (UID RFC822.SIZE INTERNALDATE FLAGS) %.2f s"
                 " + local ls -l %.2f s; runs %d" %
                 (med(meta_t), med(local_t), len(cold_t)))
        self.row("c-warm", "warm-remount `ls -l` of %d messages" % count,
                 med(warm_t), "local ls -l (%d-file dir)" % count,
                 med(local_t),
                 ("remount with the cold run's cache_dir; runs %d"
                  if self.has_cache_dir else
                  "no persistent cache in this imapfs: remount == cold; "
                  "runs %d") % len(warm_t))
        if self.fusefloor:
            self.row("c-fuse", "`ls -l` of a do-nothing FUSE fs with %d "
                     "files (bench/fusefloor.c)" % count, med(fuse_t),
                     "local ls -l", med(local_t),
                     "what any FUSE daemon pays here: READDIRPLUS, and "
                     "getxattr (ENOTSUP) for the first file only; runs %d"
                     % len(fuse_t))
        if meta_rss:
            self.row("f-meta", "daemon RSS growth per message, listing "
                     "loaded, no `ls`", med([(a - b) * 1024.0 / count
                                             for b, a in meta_rss]),
                     "", None, "the metadata imapfs holds; VmRSS (KiB): %s"
                     % ", ".join("%d->%d" % r for r in meta_rss),
                     ratio=None, unit="B")
        if fuse_rss:
            self.row("f-fuse", "fusefloor RSS growth per file during "
                     "`ls -l`", med([(a - b) * 1024.0 / count
                                     for b, a in fuse_rss]),
                     "", None, "libfuse's node per inode the kernel "
                     "knows, paid by any high-level libfuse daemon "
                     "(not imapfs: computed message inodes); "
                     "VmRSS (KiB): %s"
                     % ", ".join("%d->%d" % r for r in fuse_rss),
                     ratio=None, unit="B")
        per = med([(a - b) * 1024.0 / count for b, a in rss])
        self.row("f", "daemon RSS growth per listed message", per, "", None,
                 "median over %d cold mounts; VmRSS after mount -> after "
                 "ls -l "
                 "(KiB): %s" % (len(rss), ", ".join("%d->%d" % r
                                                    for r in rss)),
                 ratio=per, unit="B")

    def go(self):
        self.load = [loadavg()]
        t_all = time.monotonic()
        do_mail = self.o.only in (None, "mail")
        do_scale = self.o.only in (None, "scale")
        stats = sstats = None
        if do_mail:
            t0 = time.monotonic()
            mail_srv = self.start_server("mail")
            man, stats = self.seed(mail_srv, "mail")
            self.phase("Dovecot, seed+verify mail", t0)
        if do_scale:
            t0 = time.monotonic()
            scale_srv = self.start_server("scale")
            sman, sstats = self.seed(scale_srv, "scale")
            self.phase("Dovecot, seed+verify scale", t0)
        self.corpus_stats = (stats, sstats)

        local = {}
        if do_mail:
            self.mail_suite(mail_srv, mail_srv.tls_port, "loopback", man,
                            stats, local)
        if do_scale:
            self.scale_suite(scale_srv, sman)
        if do_mail and not self.o.no_proxy:
            port = self.start_proxy(mail_srv)
            self.mail_suite(mail_srv, port, "20ms-RTT", man, stats, local)
        self.total = time.monotonic() - t_all
        self.load.append(loadavg())

    # --- report -------------------------------------------------------

    def machine(self):
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
        rev, dirty = self.tree
        mb = run(["mbsync", "--version"], 10, check=False,
                 capture=True).stdout.decode().strip()
        dv = run(["dovecot", "--version"], 10, check=False,
                 capture=True).stdout.decode().strip()
        with open(self.imapfs, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        if self.o.prebuilt:
            built = datetime.fromtimestamp(os.stat(self.imapfs).st_mtime,
                                           timezone.utc)
            daemon = ("prebuilt %s (built %s, sha256 %s; tree now at %s)" %
                      (self.imapfs, built.strftime("%Y-%m-%d %H:%M UTC"),
                       digest, rev or "?"))
        else:
            daemon = "%s%s (sha256 %s)" % (
                rev or "?", " + uncommitted changes" if dirty else "",
                digest)
        return ("nproc %d, %s, %d MiB RAM, kernel %s; imapfs %s; %s; "
                "Dovecot %s" % (os.cpu_count(), cpu, mem, platform.release(),
                                daemon, mb, dv))

    def table(self):
        def fmt(v, unit):
            if v is None:
                return "-"
            if unit == "s":
                return "%.2f s" % v
            if unit == "x":
                return "%.2fx" % v
            return "%.0f %s" % (v, unit)
        out = ["| id | measurement | imapfs | reference | ref | ratio | "
               "target | result | detail |",
               "|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            tgt = "%s %g%s" % (r["target"][0], r["target"][1],
                               " B" if r["unit"] == "B" else "x") \
                if r["target"] else "-"
            ratio = "-" if r["ratio"] is None or r["unit"] != "s" \
                else "%.2fx" % r["ratio"]
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" %
                       (r["id"], r["what"], fmt(r["value"], r["unit"]),
                        r["ref_name"] or "-", fmt(r["ref"], "s"), ratio,
                        tgt, r["result"], r["detail"]))
        return "\n".join(out)

    def report(self):
        stats, sstats = self.corpus_stats
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            "## %s, profile %s%s%s" % (when, self.profile,
                                       " (no proxy)" if self.o.no_proxy
                                       else " (only %s)" % self.o.only
                                       if self.o.only else "",
                                       ": " + self.o.label if self.o.label
                                       else ""),
            "",
            "Machine: " + self.machine() + ". Load average (1, 5, 15 min)"
            " at start %s, at end %s." % tuple(self.load),
            "",
            "Corpus: %s; metadata: %s. Median of up to %d runs. "
            "Latency: %s. Mount options: %s. Server mail "
            "in %s." %
            ("%d messages, %.1f MB in %d folders (%d with NEEDLE)" %
             (stats["messages"], stats["bytes"] / 1e6, stats["folders"],
              stats["needles"]) if stats else "not run",
             "%d messages in one folder" % sstats["messages"]
             if sstats else "not run", self.o.runs,
             "%s, %d ms each way" % (self.proxy_kind, DELAY_MS)
             if self.proxy_kind else "none (--no-proxy)"
             if self.o.no_proxy else "not run",
             (" ".join(self.mount_opts) or "defaults") +
             (" + own cache_dir per mount (empty for cold ones)"
              if self.has_cache_dir else ""),
             "tmpfs" if self.server_root != self.work else "/tmp"),
            "",
            self.table(),
            "",
        ]
        passed = sum(r["result"] == "PASS" for r in self.rows)
        judged = sum(r["result"] != "-" for r in self.rows)
        lines.append("Targets met: %d of %d. Total run time %.0f s "
                     "(phases: %s)." %
                     (passed, judged, self.total,
                      ", ".join("%s %.1f s" % p for p in self.phases)))
        for n in self.notes:
            lines.append("Note: " + n + ".")
        return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build-dir", required=True)
    p.add_argument("--quick", action="store_true",
                   help="small corpus (200 messages, 10,000 for metadata)")
    p.add_argument("--runs", type=int, default=3,
                   help="runs per measurement, where cheap (default 3)")
    p.add_argument("--append-results", action="store_true",
                   help="append the report to bench/RESULTS.md")
    p.add_argument("--no-proxy", action="store_true",
                   help="skip the 20 ms RTT repetition")
    p.add_argument("--only", choices=["mail", "scale"],
                   help="only rows a, b, d, e (mail) or c, f (scale)")
    p.add_argument("--mount-opts", default=os.environ.get(
        "IMAPFS_BENCH_MOUNT_OPTS", ""),
        help="extra imapfs arguments, e.g. '-o max_conns=8'")
    p.add_argument("--label", help="a few words for the results heading")
    p.add_argument("--prebuilt", action="store_true",
                   help="the binary was not rebuilt from this tree")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (logs, copies)")
    p.add_argument("--json", help="also write the rows as JSON here")
    o = p.parse_args()
    if os.geteuid() != 0:
        print("bench: run me as root (Dovecot, FUSE)", file=sys.stderr)
        return 1

    try:
        b = Bench(o)
    except BenchError as e:
        print("bench: FAILED: %s" % e, file=sys.stderr)
        return 1

    def on_signal(signum, frame):
        log("interrupted by signal %d; cleaning up" % signum)
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        b.go()
        text = b.report()
    except BenchError as e:
        print("bench: FAILED: %s" % e, file=sys.stderr)
        return 1
    finally:
        b.cleanup()
    print()
    print(text)
    if o.json:
        with open(o.json, "w") as f:
            json.dump(b.rows, f, indent=1)
    if o.append_results:
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write("\n" + text)
        log("appended to bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
