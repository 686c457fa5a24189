#!/usr/bin/env python3
"""The store format's own cost of ingesting a file: what any writer of this layout
must do for it, with nothing else.

    file-floor.py SOURCE DEST [WORKERS]

Cuts SOURCE into pieces of 32-96 KiB (64 KiB on average, as the split writer's
chunks are) and writes each as its own file under DEST/blobs/HH/HHHH/ the way the
file store does: the directory made when missing, a temp file, the whole 4 KiB
blocks with O_DIRECT and the rest buffered, a rename, and one syncfs at the end.
No hashing (names are random), no chunking, no FUSE. Runs WORKERS processes
(default 2) and prints the seconds taken and MB/s.
"""

import ctypes
import fcntl
import mmap
import os
import random
import sys
import time

ALIGN = 4096


def worker(src, dest, index, workers, size):
    # The same piece lengths in every worker; each writes every WORKERS-th piece.
    lengths = random.Random(1)
    known = set()
    buf = mmap.mmap(-1, 128 << 10)  # page-aligned, for O_DIRECT
    fd_in = os.open(src, os.O_RDONLY)
    pos, n = 0, 0
    while pos < size:
        length = min(size - pos, (32 << 10) + lengths.randrange(64 << 10))
        if n % workers == index:
            data = os.pread(fd_in, length, pos)
            name = os.urandom(32).hex()
            d = os.path.join(dest, "blobs", name[:2], name[:4])
            if d not in known:
                os.makedirs(d, exist_ok=True)
                known.add(d)
            tmp = os.path.join(d, ".tmp-" + name[:12])
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            whole = len(data) // ALIGN * ALIGN
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_DIRECT)
            buf.seek(0)
            buf.write(data[:whole])
            os.pwrite(fd, memoryview(buf)[:whole], 0)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl)
            os.pwrite(fd, data[whole:], whole)
            os.rename(tmp, os.path.join(d, name))
            os.close(fd)
        pos += length
        n += 1


def main():
    src, dest = sys.argv[1], sys.argv[2]
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    size = os.path.getsize(src)
    os.makedirs(os.path.join(dest, "blobs"), exist_ok=True)
    t0 = time.monotonic()
    pids = []
    for i in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                worker(src, dest, i, workers, size)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if status != 0:
            sys.exit("a worker failed")
    fd = os.open(dest, os.O_RDONLY)
    if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
        sys.exit("syncfs failed")
    os.close(fd)
    secs = time.monotonic() - t0
    print(f"{secs:.3f} s, {size / secs / 1e6:.0f} MB/s")


if __name__ == "__main__":
    main()
