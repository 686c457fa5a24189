#!/usr/bin/env bash
# Counts the FUSE requests a command causes, by opcode, with their sizes, from the
# kernel's fuse tracepoints (perf). For WRITE the size is the data carried; for READ
# and READDIR it is the size of the reply. Latency is from the request being queued
# to its reply, so it includes the wait for a free daemon thread.
#
# Usage (as root): scripts/bench/fuse-requests.sh [-m MOUNTPOINT] COMMAND [ARGS...]
#   e.g. scripts/bench/fuse-requests.sh -m /mnt/anchors cp big.bin /mnt/anchors/notes/new
# With -m, only the requests of that mount count (other FUSE mounts may be busy).
set -euo pipefail
conn=""
if [ "${1:-}" = -m ]; then
    conn=$(stat -c %d "$2") || exit 1
    shift 2
fi
[ $# -gt 0 ] || {
    echo "usage: $0 [-m MOUNTPOINT] COMMAND [ARGS...]" >&2
    exit 2
}
command -v perf >/dev/null || {
    echo "perf is needed (Debian: linux-perf)" >&2
    exit 1
}
out=$(mktemp)
trap 'rm -f "$out" "$out.txt"' EXIT
perf record -q -a -e fuse:fuse_request_send -e fuse:fuse_request_end -o "$out" -- "$@" >/dev/null
perf script -i "$out" -F time,event,trace 2>/dev/null >"$out.txt"
awk -v conn="$conn" '
    conn != "" && !($0 ~ "connection " conn " ") { next }
    # fuse_request_send: connection C req U opcode N (NAME) len L
    /fuse_request_send/ {
        t = $1; sub(/:$/, "", t)
        for (i = 1; i <= NF; i++) {
            if ($i == "req") u = $(i + 1)
            if ($i == "opcode") { name = $(i + 2); gsub(/[()]/, "", name) }
            if ($i == "len") l = $(i + 1)
        }
        op[u] = name; sent[u] = l; start[u] = t; count[name]++
        next
    }
    # fuse_request_end: connection C req U len L error E
    /fuse_request_end/ {
        t = $1; sub(/:$/, "", t)
        for (i = 1; i <= NF; i++) {
            if ($i == "req") u = $(i + 1)
            if ($i == "len") l = $(i + 1)
            if ($i == "error") e = $(i + 1)
        }
        name = op[u]
        if (name == "") next
        # Payload: WRITE carries data (request minus 40-byte header and 40-byte write_in);
        # READ and READDIR return data (reply minus 16-byte header).
        if (name == "FUSE_WRITE") size = sent[u] - 80
        else if (name == "FUSE_READ" || name == "FUSE_READDIR" || name == "FUSE_READDIRPLUS") size = l - 16
        else size = -1
        if (e != 0) errs[name]++
        lat[name] += t - start[u]; done[name]++
        if (size >= 0) {
            bytes[name] += size
            hist[name, size]++
            if (size > max[name]) max[name] = size
        }
        delete op[u]; delete start[u]
    }
    END {
        printf "%-22s %9s %8s %10s %14s %10s %10s  %s\n", "opcode", "requests", "errors", "mean µs", "payload bytes", "mean", "max", "most common sizes"
        for (n in count) {
            common = ""
            k = 0
            # the three most frequent sizes
            for (t = 0; t < 3; t++) {
                best = -1; bs = ""
                for (key in hist) {
                    split(key, p, SUBSEP)
                    if (p[1] != n || (p[2] in used)) continue
                    if (hist[key] > best) { best = hist[key]; bs = p[2] }
                }
                if (best < 0) break
                used[bs] = 1
                common = common sprintf("%s×%d ", bs, best)
            }
            delete used
            mean = (n in bytes && count[n] > 0) ? bytes[n] / count[n] : 0
            us = (done[n] > 0) ? lat[n] / done[n] * 1e6 : 0
            printf "%-22s %9d %8d %10.1f %14d %10.0f %10d  %s\n", n, count[n], errs[n], us, bytes[n], mean, max[n], common
        }
    }' "$out.txt" | sort -k2 -n -r
