#!/usr/bin/env python3
"""The soak workload behind scripts/soak.sh.

Two mounts of one store take mixed load for a while: new files, writes over
`latest` and over old versions, scratch files renamed onto names, reads of versions,
of `latest`, of time-travel and ref files, listings, command-line puts, gets, ls and
log, and now and then `expire` followed by `cat` of what it dropped, and `gc --grace`.

Every version's content starts with a header naming it and the SHA-256 of the rest,
so any reader can tell whole bytes from wrong ones. At the end every acknowledged
version must be in the store with its bytes intact, or have been dropped by an
expire (whose output was read back at the time), and `fsck` must pass.
"""

import argparse
import errno
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

SHARED = ["s0", "s1", "s2", "s3"]
CLI_ANCHORS = ["c0", "c1", "c2"]
# Errors of reads that raced with expire or gc (a version dropped or its blobs
# collected between listing it and reading it) are expected within this long of an
# expire or gc.
RACE_WINDOW = 5.0


def now_rfc3339(offset=0.0):
    t = time.time() + offset
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%09dZ" % int((t % 1) * 1e9)


class Soak:
    def __init__(self, args):
        self.args = args
        self.bin = args.bin
        self.lock = threading.Lock()
        self.ops = Counter()
        self.failed_ops = Counter()
        self.unexpected = []
        self.expected_races = Counter()
        self.attempted = {}
        self.acked = {}
        self.expired = set()
        self.expire_runs = 0
        self.gc_runs = 0
        self.gc_deleted = 0
        self.next_id = 0
        self.maint_active = False
        self.maint_end = 0.0
        self.stop_at = 0.0
        self.daemons = []
        self.stopped_early = None
        self.gc_seconds = []
        self.log_threads = []
        self.ioctl_warnings = 0
        self.log_lines = 0
        self.log_problems = []

    # ---- bookkeeping ----

    def new_id(self, kind):
        with self.lock:
            self.next_id += 1
            return "%s-%d" % (kind, self.next_id)

    def content(self, ident, rng, anchor):
        r = rng.random()
        if r < 0.70:
            size = rng.randrange(0, 4096)
        elif r < 0.97:
            size = rng.randrange(4096, 65536)
        else:
            size = rng.randrange(65536, 1 << 20)
        body = rng.randbytes(size)
        head = ("soak %s %s %d\n" % (ident, hashlib.sha256(body).hexdigest(), size)).encode()
        with self.lock:
            self.attempted[ident] = anchor
        return head + body

    def ok(self, kind):
        with self.lock:
            self.ops[kind] += 1

    def ack(self, kind, ident, anchor):
        with self.lock:
            self.ops[kind] += 1
            self.acked[ident] = anchor

    def error(self, kind, what, err):
        with self.lock:
            self.failed_ops[kind] += 1
            self.unexpected.append("%s: %s: %s" % (kind, what, err))

    def read_error(self, kind, what, err):
        """A read failed: expected if it raced with an expire or gc."""
        code = getattr(err, "errno", None)
        with self.lock:
            racing = self.maint_active or time.time() - self.maint_end < RACE_WINDOW
            if code in (errno.ENOENT, errno.EIO) and racing:
                self.expected_races[kind] += 1
                return
            self.failed_ops[kind] += 1
            self.unexpected.append("%s: %s: %s" % (kind, what, err))

    def skipped(self, r):
        """Whether the writer's draw `r` picked an operation to skip."""
        kind = "write-latest" if r < 0.65 else "write-over-version"
        return kind in self.args.skip.split(",")

    def running(self):
        return time.time() < self.stop_at

    # ---- content checks ----

    @staticmethod
    def parse(data):
        """(ident, intact) of a version's bytes; ident None if it has no header."""
        nl = data.find(b"\n")
        if nl < 0 or not data.startswith(b"soak "):
            return None, False
        parts = data[:nl].decode("ascii", "replace").split()
        if len(parts) != 4:
            return None, False
        _, ident, digest, size = parts
        body = data[nl + 1:]
        intact = size.isdigit() and len(body) == int(size) and \
            hashlib.sha256(body).hexdigest() == digest
        return ident, intact

    def check_bytes(self, kind, what, data):
        ident, intact = self.parse(data)
        with self.lock:
            known = ident in self.attempted
        if ident is None or not intact:
            self.error(kind, what, "WRONG BYTES (%d bytes, header %r)" % (len(data), data[:80]))
            return False
        if not known:
            self.error(kind, what, "bytes of a version nobody wrote: %s" % ident)
            return False
        return True

    # ---- the command line ----

    def cli(self, args, data=None, timeout=600):
        try:
            return subprocess.run(
                [self.bin, "--store", self.store] + args,
                input=data, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(
                args, -1, b"", ("timed out after %d s" % timeout).encode())

    # ---- mounts ----

    def mount(self, mnt, log):
        """Mounts the store (created by the first mount) in the foreground; its
        log goes to `log`, except fuser's warnings about unimplemented ioctls
        (one per isatty() of a file in the mount), which are only counted."""
        os.makedirs(mnt, exist_ok=True)
        p = subprocess.Popen(
            [self.bin, "mount", self.store, mnt, "-f", "-o", self.args.mount_opts],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t = threading.Thread(target=self.copy_log, args=(p.stderr, log), daemon=True)
        t.start()
        self.log_threads.append(t)
        deadline = time.time() + 30
        while not is_mounted(mnt):
            if p.poll() is not None:
                raise SystemExit("soak: the mount of %s exited: see %s" % (mnt, log))
            if time.time() > deadline:
                raise SystemExit("soak: the mount of %s did not appear" % mnt)
            time.sleep(0.02)
        self.daemons.append((mnt, p))
        return p

    def copy_log(self, pipe, log):
        skipping = False
        with open(log, "ab") as out:
            for line in pipe:
                if b"[Not Implemented] ioctl" in line:
                    skipping = True
                    with self.lock:
                        self.ioctl_warnings += 1
                    continue
                if skipping and (line.startswith(b" ") or line.startswith(b")")):
                    continue
                skipping = False
                with self.lock:
                    self.log_lines += 1
                    if b"ERROR" in line or b"WARN" in line:
                        self.log_problems.append(line.decode(errors="replace").strip())
                out.write(line)

    def unmount_all(self):
        codes = []
        for mnt, p in self.daemons:
            subprocess.run(["umount", mnt], capture_output=True)
            try:
                codes.append(p.wait(timeout=30))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                subprocess.run(["umount", "-l", mnt], capture_output=True)
                codes.append(None)
        return codes

    # ---- workers ----

    def writer(self, mnt, wid, seed):
        rng = random.Random(seed)
        own = "w%s" % wid
        while self.running():
            time.sleep(rng.random() * self.args.pause)
            anchor = own if rng.random() < 0.5 else rng.choice(SHARED)
            d = os.path.join(mnt, anchor)
            r = rng.random()
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as e:
                self.error("mkdir", d, e)
                continue
            if r < 0.55 or (r < 0.72 and self.skipped(r)):
                kind, ident = "write", self.new_id("w")
                path = os.path.join(d, "f-" + ident)
            elif r < 0.65:
                kind, ident = "write-latest", self.new_id("l")
                path = os.path.join(d, "latest")
            elif r < 0.72:
                kind, ident = "write-over-version", self.new_id("o")
                try:
                    names = self.versions_in(d, strict=True)
                except OSError as e:
                    self.read_error(kind, d, e)
                    continue
                if not names:
                    continue
                path = os.path.join(d, rng.choice(names))
            else:
                self.rename_op(rng, d, anchor)
                continue
            data = self.content(ident, rng, anchor)
            try:
                f = open(path, "wb")
            except OSError as e:
                if kind == "write-over-version":
                    self.read_error(kind, path, e)  # the version may have expired
                else:
                    self.error(kind, path, e)
                continue
            try:
                with f:
                    piece = rng.choice([512, 4096, 65536, 1 << 20])
                    for i in range(0, len(data), piece):
                        f.write(data[i:i + piece])
                    f.flush()
                    if rng.random() < 0.3:
                        os.fsync(f.fileno())
                self.ack(kind, ident, anchor)
            except OSError as e:
                self.error(kind, path, e)

    def rename_op(self, rng, d, anchor):
        ident = self.new_id("r")
        data = self.content(ident, rng, anchor)
        tmp = os.path.join(d, ".tmp-" + ident)
        target = os.path.join(d, "latest" if rng.random() < 0.3 else "r-" + ident)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, target)
            self.ack("rename", ident, anchor)
        except OSError as e:
            self.error("rename", target, e)

    @staticmethod
    def versions_in(d, strict=False):
        """The version files listed in anchor directory `d`."""
        try:
            return [n for n in os.listdir(d) if n[:2] == "20" and n.endswith("Z")]
        except OSError:
            if strict:
                raise
            return []

    def anchors_in(self, mnt):
        return [n for n in os.listdir(mnt) if n != ".anchorfs"]

    def reader(self, mnt, seed):
        rng = random.Random(seed)
        while self.running():
            r = rng.random()
            try:
                anchors = self.anchors_in(mnt)
            except OSError as e:
                self.error("ls", mnt, e)
                continue
            if not anchors:
                time.sleep(0.05)
                continue
            anchor = rng.choice(anchors)
            d = os.path.join(mnt, anchor)
            if r < 0.4:
                kind = "read-version"
                try:
                    # Version files only: a file being written is listed under its
                    # own name until its close, with what was written so far.
                    names = self.versions_in(d, strict=True)
                    if not names:
                        continue
                    path = os.path.join(d, rng.choice(names))
                except OSError as e:
                    self.read_error(kind, d, e)
                    continue
            elif r < 0.6:
                kind, path = "read-latest", os.path.join(d, "latest")
            elif r < 0.7:
                kind = "read-time-travel"
                path = os.path.join(mnt, ".anchorfs", "at", now_rfc3339(-rng.random() * 30), anchor)
            elif r < 0.8:
                kind = "read-ref"
                try:
                    ref = os.getxattr(os.path.join(d, "latest"), "user.anchorfs.ref").decode()
                except OSError as e:
                    if e.errno == errno.ENOENT and not self.versions_in(d):
                        self.ok(kind)  # no version yet
                    else:
                        self.read_error(kind, d + "/latest", e)
                    continue
                path = os.path.join(mnt, ".anchorfs", "refs", ref)
            else:
                self.ls_op(mnt, d)
                continue
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                if kind == "read-time-travel" and e.errno == errno.ENOENT:
                    self.ok(kind)  # the anchor had no version yet at that time
                elif kind == "read-latest" and e.errno == errno.ENOENT and not self.versions_in(d):
                    self.ok(kind)  # a directory made by mkdir, no version yet
                else:
                    self.read_error(kind, path, e)
                continue
            if self.check_bytes(kind, path, data):
                self.ok(kind)

    def ls_op(self, mnt, d):
        try:
            for n in self.anchors_in(mnt):
                os.stat(os.path.join(mnt, n))
            for n in os.listdir(d):
                try:
                    os.lstat(os.path.join(d, n))
                except OSError as e:
                    # A file being written goes away (becomes a version) at close.
                    if e.errno == errno.ENOENT and not (n[:2] == "20" or n == "latest"):
                        continue
                    raise
            self.ok("ls")
        except OSError as e:
            self.read_error("ls", d, e)

    def cli_worker(self, seed):
        rng = random.Random(seed)
        while self.running():
            r = rng.random()
            if r < 0.5:
                anchor = rng.choice(CLI_ANCHORS + SHARED)
                raw = rng.random() < 0.2
                kind = "cli-put-raw" if raw else "cli-put"
                ident = self.new_id("c")
                data = self.content(ident, rng, anchor)
                res = self.cli(["put", anchor] + (["--raw"] if raw else []), data)
                if res.returncode == 0:
                    self.ack(kind, ident, anchor)
                else:
                    self.error(kind, anchor, res.stderr.decode(errors="replace").strip())
            elif r < 0.65:
                res = self.cli(["ls", "--json"])
                if res.returncode == 0 and isinstance(json.loads(res.stdout), list):
                    self.ok("cli-ls")
                else:
                    self.error("cli-ls", "", res.stderr.decode(errors="replace").strip())
            elif r < 0.9:
                anchor = rng.choice(CLI_ANCHORS + SHARED)
                res = self.cli(["get", anchor])
                if res.returncode == 0:
                    if self.check_bytes("cli-get", anchor, res.stdout):
                        self.ok("cli-get")
                elif res.returncode == 2 and b"not found" in res.stderr:
                    self.ok("cli-get")  # no version yet
                else:
                    self.error("cli-get", anchor, res.stderr.decode(errors="replace").strip())
            else:
                anchor = rng.choice(CLI_ANCHORS + SHARED)
                res = self.cli(["log", anchor, "--json"])
                if res.returncode in (0, 2):
                    self.ok("cli-log")
                else:
                    self.error("cli-log", anchor, res.stderr.decode(errors="replace").strip())

    def maintenance(self, period):
        n = 0
        while True:
            end = time.time() + period
            while time.time() < end:
                if not self.running():
                    return
                time.sleep(0.2)
            n += 1
            with self.lock:
                self.maint_active = True
            try:
                self.expire_op()
                if n % 2 == 0:
                    self.gc_op()
            finally:
                with self.lock:
                    self.maint_active = False
                    self.maint_end = time.time()

    def expire_op(self):
        before = now_rfc3339(-20)
        res = self.cli(["expire", "--before", before, "--keep", "2"])
        if res.returncode != 0:
            self.error("expire", before, res.stderr.decode(errors="replace").strip())
            return
        self.expire_runs += 1
        self.ok("expire")
        # What was dropped is still in the store until gc: read each back, by ref
        # through a mount.
        for line in res.stdout.decode().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            ref = parts[1]
            try:
                with open(os.path.join(self.mnt_a, ".anchorfs", "refs", ref), "rb") as f:
                    data = f.read()
            except OSError as e:
                self.error("expire-read", ref, e)
                continue
            ident, intact = self.parse(data)
            if ident is None or not intact:
                self.error("expire-read", ref, "WRONG BYTES in a dropped version")
                continue
            with self.lock:
                self.expired.add(ident)
            self.ok("expire-read")

    def gc_op(self):
        # Longer than any write takes from its first blob put to its commit.
        t0 = time.time()
        res = self.cli(["gc", "--grace", "15s"])
        self.gc_seconds.append(time.time() - t0)
        if res.returncode != 0:
            self.error("gc", "", res.stderr.decode(errors="replace").strip())
            return
        self.gc_runs += 1
        self.ok("gc")
        words = res.stdout.decode().split()
        if "deleted" in words:
            try:
                self.gc_deleted += int(words[words.index("deleted") + 1])
            except (ValueError, IndexError):
                pass

    # ---- the final check ----

    def final_check(self, mnt_a, mnt_b):
        present = {}
        wrong = []
        res = self.cli(["ls", "--json"])
        if res.returncode != 0:
            raise SystemExit("soak: ls failed at the end: %s" % res.stderr.decode())
        listing = json.loads(res.stdout)
        versions = 0
        for a in listing:
            name = a["name"]
            log = self.cli(["log", name, "--json"])
            if log.returncode != 0:
                wrong.append("log %s: %s" % (name, log.stderr.decode().strip()))
                continue
            for v in json.loads(log.stdout)["versions"]:
                versions += 1
                path = os.path.join(mnt_a, ".anchorfs", "refs", v["ref"])
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError as e:
                    wrong.append("%s: %s" % (path, e))
                    continue
                ident, intact = self.parse(data)
                if ident is None or not intact:
                    wrong.append("%s %s: wrong bytes" % (name, v["at"]))
                    continue
                if ident not in self.attempted:
                    wrong.append("%s %s: a version nobody wrote (%s)" % (name, v["at"], ident))
                if self.attempted.get(ident) not in (None, name):
                    wrong.append("%s: %s was written to %s" % (name, ident, self.attempted[ident]))
                present[ident] = name
                # The same version by its file name, through the other mount.
                if versions % 10 == 0:
                    p = os.path.join(mnt_b, name, v["at"])
                    try:
                        with open(p, "rb") as f:
                            if f.read() != data:
                                wrong.append("%s: differs from the ref's bytes" % p)
                    except OSError as e:
                        wrong.append("%s: %s" % (p, e))
        lost = sorted(i for i in self.acked if i not in present and i not in self.expired)
        a_list = sorted(self.anchors_in(mnt_a))
        b_list = sorted(self.anchors_in(mnt_b))
        if a_list != b_list:
            wrong.append("the mounts list different anchors: %s vs %s" % (a_list, b_list))
        return versions, present, lost, wrong


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            mp = fields[4].encode().decode("unicode_escape")
            if mp == path:
                return True
    return False


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def vm_hwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return line.split()[1] + " kB"
    except OSError:
        pass
    return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--dir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--mount-opts", default="poll=250ms")
    ap.add_argument("--pause", type=float, default=0.05,
                    help="most seconds a writer waits between writes (0: none)")
    ap.add_argument("--min-free-gb", type=float, default=8,
                    help="stop the load early when the work directory's filesystem has less free")
    ap.add_argument("--skip", default="",
                    help="comma-separated operations not to do (e.g. write-latest,write-over-version)")
    args = ap.parse_args()

    work = args.dir or tempfile.mkdtemp(prefix="anchorfs-soak-")
    os.makedirs(work, exist_ok=True)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    s = Soak(args)
    s.store = os.path.join(work, "store")
    mnt_a, mnt_b = os.path.join(work, "mnt-a"), os.path.join(work, "mnt-b")
    s.mnt_a = mnt_a
    print("soak: %ss of load on two mounts (-o %s) of %s (seed %d, %d writers per mount)"
          % (args.seconds, args.mount_opts, s.store, seed, args.writers), flush=True)
    p_a = s.mount(mnt_a, os.path.join(work, "mount-a.log"))
    p_b = s.mount(mnt_b, os.path.join(work, "mount-b.log"))

    start = time.time()
    s.stop_at = start + args.seconds
    threads = []
    for m, tag in ((mnt_a, "a"), (mnt_b, "b")):
        for w in range(args.writers):
            threads.append(threading.Thread(target=s.writer, args=(m, "%s%d" % (tag, w), seed + len(threads))))
        threads.append(threading.Thread(target=s.reader, args=(m, seed + 100 + len(threads))))
        threads.append(threading.Thread(target=s.reader, args=(m, seed + 200 + len(threads))))
    threads.append(threading.Thread(target=s.cli_worker, args=(seed + 300,)))
    threads.append(threading.Thread(target=s.cli_worker, args=(seed + 301,)))
    threads.append(threading.Thread(target=s.maintenance, args=(10,)))
    for t in threads:
        t.daemon = True
        t.start()
    last = start
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        if time.time() - last >= 30:
            last = time.time()
            with s.lock:
                total = sum(s.ops.values())
                bad = len(s.unexpected)
            print("soak: %4.0fs  %d operations, %d unexpected errors" % (last - start, total, bad), flush=True)
        st = os.statvfs(work)
        free_gb = st.f_bavail * st.f_frsize / 1e9
        if s.running() and free_gb < args.min_free_gb:
            s.stop_at = time.time()
            s.stopped_early = "only %.1f GB free on the work directory's filesystem" % free_gb
            print("soak: stopping the load early: %s" % s.stopped_early, flush=True)
        if time.time() > s.stop_at + 900:
            s.unexpected.append("workers still running 900 s after the end: hung")
            break
    elapsed = time.time() - start

    time.sleep(1.0)  # a poll interval or two, so both mounts see the last changes
    hwm = {"a": vm_hwm(p_a.pid), "b": vm_hwm(p_b.pid)}
    versions, present, lost, wrong = s.final_check(mnt_a, mnt_b)
    fsck = s.cli(["fsck"], timeout=1800)
    codes = s.unmount_all()
    for t in s.log_threads:
        t.join(timeout=10)

    acked_by_kind = Counter(i.split("-")[0] for i in s.acked)
    print()
    print("soak: ran %.0f s (asked for %.0f s), seed %d" % (elapsed, args.seconds, seed))
    print("operations (succeeded):")
    for k, n in sorted(s.ops.items()):
        print("  %-20s %8d" % (k, n))
    print("  %-20s %8d" % ("total", sum(s.ops.values())))
    if s.failed_ops:
        print("operations (failed):")
        for k, n in sorted(s.failed_ops.items()):
            print("  %-20s %8d" % (k, n))
    print("expected races (reads of versions expired or collected meanwhile): %d %s"
          % (sum(s.expected_races.values()), dict(s.expected_races)))
    print("expire runs: %d, gc runs: %d, blobs deleted by gc: %d, gc took %s s"
          % (s.expire_runs, s.gc_runs, s.gc_deleted, [round(x) for x in s.gc_seconds]))
    print("versions acknowledged: %d (%s)" % (len(s.acked), dict(acked_by_kind)))
    print("versions in the store at the end: %d, read back and verified: %d" % (versions, len(present)))
    print("store size at the end: %.2f GB" % (du(s.store) / 1e9))
    print("acknowledged versions dropped by expire (verified when dropped): %d"
          % len([i for i in s.acked if i in s.expired and i not in present]))
    print("acknowledged versions LOST: %d" % len(lost))
    print("wrong or unreadable versions at the end: %d" % len(wrong))
    print("fsck: %s" % (fsck.stdout.decode().strip().splitlines() or ["(no output)"])[-1])
    print("daemon peak memory (VmHWM): mount a %s, mount b %s; exit statuses %s" % (hwm["a"], hwm["b"], codes))
    print("mount logs: %d lines, %d warnings or errors; %d fuser warnings about unimplemented ioctls (not kept)"
          % (s.log_lines, len(s.log_problems), s.ioctl_warnings))
    for line in s.log_problems[:10]:
        print("  log: " + line[:200])
    print("unexpected errors: %d" % len(s.unexpected))
    # One example of each kind of error (wrong bytes grouped by operation).
    examples = {}
    for u in s.unexpected + wrong:
        op = u.split(":")[0]
        cls = op + (": WRONG BYTES" if "WRONG BYTES" in u else ": " + u.rsplit(":", 1)[-1].strip()[:50])
        examples.setdefault(cls, [0, u])[0] += 1
    for cls, (n, example) in sorted(examples.items(), key=lambda kv: -kv[1][0])[:40]:
        print("  %6d  %s" % (n, cls))
        print("          e.g. %s" % example[:300])
    for i in lost[:30]:
        print("  lost: %s (anchor %s)" % (i, s.acked[i]))

    if s.stopped_early:
        print("soak: the load stopped early: %s" % s.stopped_early)
    ok = not lost and not wrong and not s.unexpected and fsck.returncode == 0 and not s.stopped_early \
        and all(c == 0 for c in codes)
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    if ok and not args.keep and not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("soak: work directory kept: %s" % work)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
