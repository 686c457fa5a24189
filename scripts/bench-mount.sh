#!/usr/bin/env bash
# Mount benchmark: anchorfs against a plain disk, bindfs, borg and restic, all on the
# same pseudo-random data in one run. Prints a Markdown table of figures and ratios,
# the targets met or missed, and the curve of daemon peak RSS against -o cache=.
# Random 4 KiB writes and reads (fio, one job) on a version of RAND_MB MiB are
# measured against bindfs over a directory on the same disk.
#
# Usage (as root, on a Debian machine with /dev/fuse):
#   scripts/bench-mount.sh                 # 1 GiB, the full run
#   SIZE_MB=64 scripts/bench-mount.sh      # a quick try
#
# Settings (environment):
#   SIZE_MB          size of the big file in MiB (default 1024)
#   SMALL_VERSIONS   new versions of a 1 KiB file, and borg/restic runs (default 100)
#   MANY_VERSIONS    versions of the long anchor listed with ls -l (default 10000)
#   REPS             repetitions of the cheap measurements, medians taken (default 3)
#   BIG_REPS         repetitions of the big writes and first reads (default 1)
#   LS_REPS          first listings after the caches are dropped, of the plain
#                    directory and of each anchor, medians taken (default 9)
#   CACHE_CURVE      -o cache= sizes for the RSS curve (default "16M 64M 256M")
#   WRITERS          parallel writers used to build the long anchor (default 4)
#   RAND_MB          size of the version written and read at random offsets (default 64)
#   BENCH_DIR        where to make the scratch directory (default: REPO/target);
#                    it must be on a real disk, not tmpfs
#   KEEP=1           keep the scratch directory (the stores and logs) at the end
#   CHUNKING         how the anchorfs store cuts content: empty (default) for what a
#                    new store gets, or an `anchorfs init` option: `go` (Go's 64 KiB),
#                    or a size such as 256KiB
#
# It is a benchmark, not a test: CI does not run it. It installs bindfs, restic,
# borgbackup, fio and FUSE bindings with apt-get, builds anchorfs in release mode, drops
# the page cache before every first read, and unmounts everything it mounted when it
# ends, also on failure or Ctrl-C.
set -euo pipefail
export LC_ALL=C

SIZE_MB=${SIZE_MB:-1024}
SMALL_VERSIONS=${SMALL_VERSIONS:-100}
MANY_VERSIONS=${MANY_VERSIONS:-10000}
REPS=${REPS:-3}
BIG_REPS=${BIG_REPS:-1}
LS_REPS=${LS_REPS:-9}
CACHE_CURVE=${CACHE_CURVE:-"16M 64M 256M"}
WRITERS=${WRITERS:-4}
RAND_MB=${RAND_MB:-64}
KEEP=${KEEP:-0}
CHUNKING=${CHUNKING:-}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START_US=${EPOCHREALTIME/./}

say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root: it installs packages, mounts filesystems and drops caches"
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
[ -e /dev/fuse ] || die "/dev/fuse is missing: FUSE is needed"
for v in SIZE_MB SMALL_VERSIONS MANY_VERSIONS REPS BIG_REPS LS_REPS WRITERS RAND_MB; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ "$SMALL_VERSIONS" -ge 3 ] || die "SMALL_VERSIONS must be at least 3"
[ "$MANY_VERSIONS" -ge $((2 * SMALL_VERSIONS)) ] || die "MANY_VERSIONS must be at least twice SMALL_VERSIONS"

# ---------------------------------------------------------------------------------
# What it compares against: install, or say clearly why not.
# ---------------------------------------------------------------------------------
declare -A MISSING=() # tool -> why it is not there
PACKAGES=(bindfs restic borgbackup fio fuse3 python3-pyfuse3 python3-llfuse)

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
pkg_candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }'; }

install_packages() {
    local need=() p cand
    for p in "${PACKAGES[@]}"; do pkg_installed "$p" || need+=("$p"); done
    [ ${#need[@]} -gt 0 ] || return 0
    export DEBIAN_FRONTEND=noninteractive
    say "installing: ${need[*]}"
    apt-get update -qq >/dev/null 2>&1 || warn "apt-get update failed; using the package lists as they are"
    local ok=()
    for p in "${need[@]}"; do
        cand=$(pkg_candidate "$p")
        if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
            MISSING[$p]="no installation candidate (apt-cache policy $p)"
        else
            ok+=("$p")
        fi
    done
    [ ${#ok[@]} -gt 0 ] || return 0
    if ! apt-get install -y -qq "${ok[@]}" >/dev/null 2>&1; then
        for p in "${ok[@]}"; do
            apt-get install -y -qq "$p" >/dev/null 2>&1 || MISSING[$p]="apt-get install -y $p failed"
        done
    fi
}
install_packages

declare -A HAVE=([bindfs]=0 [borg]=0 [restic]=0 [fio]=0)
tool_check() { # tool package
    if command -v "$1" >/dev/null 2>&1; then
        HAVE[$1]=1
    else
        MISSING[$1]=${MISSING[$2]:-"package $2 is installed but $1 is not on PATH"}
    fi
}
tool_check bindfs bindfs
tool_check restic restic
tool_check borg borgbackup
tool_check fio fio
# borg mount needs pyfuse3 or llfuse in the Python that runs borg.
BORG_PY=python3
if [ "${HAVE[borg]}" = 1 ]; then
    BORG_PY=$(head -n1 "$(command -v borg)" | sed -n 's/^#! *\([^ ]*\).*/\1/p')
    case $BORG_PY in */env) BORG_PY=python3 ;; "") BORG_PY=python3 ;; esac
fi
if [ "${HAVE[borg]}" = 1 ] && ! "$BORG_PY" -c 'import pyfuse3' 2>/dev/null && ! "$BORG_PY" -c 'import llfuse' 2>/dev/null; then
    MISSING[borg-mount]="neither python3-pyfuse3 nor python3-llfuse could be installed: borg mount will fail"
fi
command -v fusermount3 >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1 ||
    MISSING[fusermount]="fuse3 could not be installed: restic mount and borg mount need fusermount"

baseline_status() {
    local t
    for t in bindfs borg restic fio; do
        if [ "${HAVE[$t]}" = 1 ]; then
            case $t in
                restic) say "  $t: $(restic version 2>&1 | head -n1)" ;;
                *) say "  $t: $("$t" --version 2>&1 | head -n1)" ;;
            esac
        else
            say "  $t: NOT AVAILABLE — ${MISSING[$t]}; its rows are left empty"
        fi
    done
    for t in borg-mount fusermount; do
        [ -z "${MISSING[$t]:-}" ] || say "  $t: NOT AVAILABLE — ${MISSING[$t]}"
    done
    for t in "${PACKAGES[@]}"; do
        [ -z "${MISSING[$t]:-}" ] || say "  package $t: NOT INSTALLED — ${MISSING[$t]}"
    done
}

# ---------------------------------------------------------------------------------
# Build anchorfs.
# ---------------------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo is needed to build anchorfs"
say "building anchorfs (cargo build --release)"
(cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO/$TARGET_DIR ;; esac
AFS=$TARGET_DIR/release/anchorfs
[ -x "$AFS" ] || die "no binary at $AFS after the build"

# ---------------------------------------------------------------------------------
# Scratch directory on the repository's disk, and cleanup on any exit.
# ---------------------------------------------------------------------------------
PARENT=${BENCH_DIR:-$REPO/target}
mkdir -p "$PARENT"
T=$(mktemp -d "$PARENT/bench-mount.XXXXXX")
T=$(cd "$T" && pwd -P)
: >"$T/mounts"
: >"$T/pids"
: >"$T/results"

SECTION_PID=
children_of() { # PID: its child processes, from /proc
    cat /proc/[0-9]*/stat 2>/dev/null | sed -n 's/^\([0-9]*\) (.*) [A-Za-z] \([0-9]*\) .*/\1 \2/p' |
        awk -v p="$1" '$2 == p { print $1 }'
}
kill_tree() { # PID: the process and its descendants, deepest first
    local c
    for c in $(children_of "$1"); do kill_tree "$c"; done
    kill "$1" 2>/dev/null || true
}

cleanup() {
    local rc=$? m p left=0
    trap - EXIT INT TERM
    # A section still running (interrupted): stop it before unmounting under it.
    if [ -n "$SECTION_PID" ] && kill -0 "$SECTION_PID" 2>/dev/null; then
        kill_tree "$SECTION_PID"
        sleep 0.2
    fi
    if [ -s "$T/mounts" ]; then
        while read -r m; do
            if mountpoint -q "$m" 2>/dev/null; then
                umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
                    fusermount3 -uz "$m" 2>/dev/null || true
            fi
        done < <(tac "$T/mounts")
    fi
    if [ -s "$T/pids" ]; then
        while read -r p; do
            if kill -0 "$p" 2>/dev/null; then
                kill "$p" 2>/dev/null || true
            fi
        done <"$T/pids"
        sleep 0.2
    fi
    if awk -v t="$T/" 'index($5 "/", t) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        left=1
        warn "something is still mounted under $T; leaving it in place"
    fi
    if [ "$KEEP" = 1 ]; then
        say "kept $T"
    elif [ "$left" = 0 ]; then
        rm -rf --one-file-system "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

FSTYPE=$(df --output=fstype "$T" | tail -n1 | tr -d " ")
[ "$FSTYPE" != tmpfs ] || warn "$T is on tmpfs: the 'same disk' baselines are then memory; set BENCH_DIR to a directory on a disk"

export BORG_BASE_DIR=$T/borg-home
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_PASSPHRASE=bench
export RESTIC_PASSWORD=bench
export RESTIC_REPOSITORY=$T/restic.repo
export RESTIC_CACHE_DIR=$T/restic-cache
export XDG_CACHE_HOME=$T/cache

BIG=$T/src/big.bin
BYTES=$((SIZE_MB * 1048576))

# ---------------------------------------------------------------------------------
# Helpers: results, timing, caches, mounts.
# ---------------------------------------------------------------------------------
rec() { printf '%s %s\n' "$1" "$2" >>"$T/results"; }
get() { awk -v k="$1" '$1 == k { v = $2 } END { if (v != "") print v }' "$T/results"; }
rec_max() { # key value: keeps the larger
    local old
    old=$(get "$1")
    if [ -z "$old" ] || awk -v a="$2" -v b="$old" 'BEGIN { exit !(a > b) }'; then rec "$1" "$2"; fi
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
now_us() { echo "${EPOCHREALTIME/./}"; }

# timed CMD...: runs CMD, sets LAST_US to its wall time in microseconds.
LAST_US=0
timed() {
    local t0
    t0=$(now_us)
    "$@"
    LAST_US=$(($(now_us) - t0))
}
mbps() { awk -v b="$BYTES" -v us="$1" 'BEGIN { printf "%.1f", b / us }'; } # bytes/us = MB/s
ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }

DROP_OK=1
drop_caches() {
    sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        [ "$DROP_OK" = 0 ] || warn "cannot drop caches: first reads may be served from memory"
        DROP_OK=0
    fi
    # Load the measuring tools again, so a first read or listing times the
    # filesystem, not the loading of ls or cat from disk.
    ls -l / >/dev/null 2>&1 || true
    cat </dev/null || true
}

hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# wait_mounted MNT PID [SUBPATH]: until MNT is a mount point (and SUBPATH exists).
wait_mounted() {
    local i
    for ((i = 0; i < 600; i++)); do
        if mountpoint -q "$1" && { [ -z "${3:-}" ] || [ -e "$1/$3" ]; }; then return 0; fi
        kill -0 "$2" 2>/dev/null || {
            warn "the daemon for $1 exited before the mount was live"
            return 1
        }
        sleep 0.05
    done
    warn "timed out waiting for the mount at $1"
    return 1
}

# started PID MNT: remember what to stop and unmount on exit.
started() {
    echo "$1" >>"$T/pids"
    echo "$2" >>"$T/mounts"
}

# stop_daemon PID MNT HWM_KEY: records the daemon's peak RSS (KiB), unmounts, waits.
stop_daemon() {
    local kb
    kb=$(hwm_kb "$1")
    [ -z "$kb" ] || rec_max "$3" "$kb"
    umount "$2" 2>/dev/null || fusermount3 -u "$2" 2>/dev/null || umount -l "$2"
    local i
    for ((i = 0; i < 200; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$1" 2>/dev/null && kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

AFS_PID=
afs_mount() { # STORE MNT [OPTIONS]
    mkdir -p "$2"
    if [ -n "${3:-}" ]; then
        "$AFS" mount "$1" "$2" -f -o "$3" 2>>"$T/anchorfs.log" &
    else
        "$AFS" mount "$1" "$2" -f 2>>"$T/anchorfs.log" &
    fi
    AFS_PID=$!
    started "$AFS_PID" "$2"
    wait_mounted "$2" "$AFS_PID"
}
# afs_umount MNT [KEY]: the peak RSS goes to KEY, or to the overall maximum and to
# the maximum of the phase named by AFS_PHASE.
AFS_PHASE=other
afs_umount() {
    if [ -n "${2:-}" ]; then
        stop_daemon "$AFS_PID" "$1" "$2"
    else
        local kb
        kb=$(hwm_kb "$AFS_PID")
        [ -z "$kb" ] || rec_max "afs_hwm_${AFS_PHASE}_kb" "$kb"
        stop_daemon "$AFS_PID" "$1" afs_hwm_kb
    fi
}

warm_source() { cat "$BIG" >/dev/null; }

# section NAME FUNCTION: runs FUNCTION in a subshell with errexit; a failure is
# reported and the rest of the run goes on (its figures are then missing).
section() {
    local name=$1 t0
    shift
    say ""
    say "== $name"
    t0=$(now_us)
    (
        set -eE
        trap 'warn "$name: failed at line $LINENO: $BASH_COMMAND"' ERR
        "$@"
    ) &
    SECTION_PID=$!
    if wait "$SECTION_PID"; then
        say "   ($(awk -v us=$(($(now_us) - t0)) 'BEGIN { printf "%.1f", us / 1e6 }') s)"
    else
        warn "$name: failed; its figures are missing from the table"
        rec "failed_$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_')" 1
    fi
}

# ---------------------------------------------------------------------------------
# The data.
# ---------------------------------------------------------------------------------
prepare_data() {
    mkdir -p "$T/src" "$T/small" "$T/smallsrc"
    say "writing $SIZE_MB MiB of pseudo-random data"
    head -c "$BYTES" /dev/urandom >"$BIG"
    # One distinct 1 KiB file per new version.
    head -c $((SMALL_VERSIONS * 1024)) /dev/urandom | split -b 1024 -d -a 5 - "$T/small/s"
    sync
}

# ---------------------------------------------------------------------------------
# The plain disk: page cache, cold read, dd conv=fsync.
# ---------------------------------------------------------------------------------
bench_disk() {
    local r v=()
    drop_caches
    timed cat "$BIG" >/dev/null
    rec disk_cold_read "$(mbps "$LAST_US")"
    for ((r = 0; r < REPS; r++)); do
        timed cat "$BIG" >/dev/null
        v+=("$(mbps "$LAST_US")")
    done
    rec pagecache_read "$(median "${v[@]}")"
    v=()
    for ((r = 0; r < BIG_REPS; r++)); do
        warm_source
        sync
        timed dd if="$BIG" of="$T/dd.out" bs=1M conv=fsync status=none
        v+=("$(mbps "$LAST_US")")
        rm -f "$T/dd.out"
    done
    rec dd_fsync_write "$(median "${v[@]}")"
    v=()
    local f
    for f in "$T"/small/s*; do
        timed dd if="$f" of="$T/dd.small" bs=1k conv=fsync status=none
        v+=("$(ms "$LAST_US")")
    done
    rm -f "$T/dd.small"
    rec dd_fsync_small_ms "$(median "${v[@]}")"
    # ls -l of a plain directory holding as many small files as the small anchor
    # has versions, first after the caches are dropped (as a fresh mount is).
    v=()
    for ((r = 0; r < LS_REPS; r++)); do
        drop_caches
        timed ls -l "$T/small" >/dev/null
        v+=("$(ms "$LAST_US")")
    done
    rec plain_ls_n "$(find "$T/small" -type f | wc -l)"
    rec plain_ls_first "$(median "${v[@]}")"
    say "   page cache $(get pagecache_read) MB/s, cold disk read $(get disk_cold_read) MB/s, dd conv=fsync $(get dd_fsync_write) MB/s, 1 KiB dd conv=fsync $(get dd_fsync_small_ms) ms, ls -l of $(get plain_ls_n) files first $(get plain_ls_first) ms"
}

# ---------------------------------------------------------------------------------
# anchorfs.
# ---------------------------------------------------------------------------------
STORE=$T/anchorfs.store
AMNT=$T/anchorfs.mnt

bench_anchorfs_write() {
    AFS_PHASE=write
    local r v=() f i=0
    case $CHUNKING in
    "") ;;
    go | default) "$AFS" --store "$STORE" init --chunking "$CHUNKING" >/dev/null ;;
    *) "$AFS" --store "$STORE" init --chunk-size "$CHUNKING" >/dev/null ;;
    esac
    afs_mount "$STORE" "$AMNT"
    mkdir "$AMNT/big"
    for ((r = 0; r < BIG_REPS; r++)); do
        warm_source
        sync
        # cp closes the file: the version is committed (and durable) before cp exits.
        timed cp "$BIG" "$AMNT/big/data$r"
        v+=("$(mbps "$LAST_US")")
    done
    rec afs_write "$(median "${v[@]}")"
    [ "$(stat -L -c %s "$AMNT/big/latest")" = "$BYTES" ] || {
        warn "the new version has the wrong size"
        return 1
    }
    # New versions of a 1 KiB file, one cp each.
    mkdir "$AMNT/small"
    v=()
    for f in "$T"/small/s*; do
        i=$((i + 1))
        timed cp "$f" "$AMNT/small/f$i"
        v+=("$(ms "$LAST_US")")
    done
    rec afs_small_ms "$(median "${v[@]}")"
    rec afs_small_mean_ms "$(printf '%s\n' "${v[@]}" | awk '{ s += $1 } END { printf "%.3f", s / NR }')"
    local n
    n=$(find "$AMNT/small" -mindepth 1 -maxdepth 1 ! -name latest | wc -l)
    [ "$n" = "$SMALL_VERSIONS" ] || {
        warn "anchor small has $n versions, expected $SMALL_VERSIONS"
        return 1
    }
    afs_umount "$AMNT"
    say "   cp ${SIZE_MB} MiB: $(get afs_write) MB/s; new 1 KiB version: median $(get afs_small_ms) ms, mean $(get afs_small_mean_ms) ms"
}

# The store format's own cost for the same data: its files written directly in the
# store's layout (O_DIRECT, temp file and rename, one syncfs), without hashing,
# chunking or FUSE, by two processes. Kept until the end: deleting many files just
# before another measurement would slow that one's file creation.
bench_file_floor() {
    warm_source
    sync
    local out
    out=$(python3 "$REPO/scripts/bench/file-floor.py" "$BIG" "$T/floor" 2)
    rec file_floor_write "$(awk '{ print $3 }' <<<"$out")"
    say "   store layout written directly: $out"
}

bench_anchorfs_read() {
    AFS_PHASE=read
    local r v=() name
    for ((r = 0; r < BIG_REPS; r++)); do
        afs_mount "$STORE" "$AMNT"
        name=$(readlink "$AMNT/big/latest")
        drop_caches
        timed cat "$AMNT/big/$name" >/dev/null
        v+=("$(mbps "$LAST_US")")
        [ $((r + 1)) = "$BIG_REPS" ] || afs_umount "$AMNT"
    done
    rec afs_read1 "$(median "${v[@]}")"
    v=()
    for ((r = 0; r < REPS; r++)); do
        timed cat "$AMNT/big/$name" >/dev/null
        v+=("$(mbps "$LAST_US")")
    done
    rec afs_read2 "$(median "${v[@]}")"
    cmp -s "$AMNT/big/$name" "$BIG" || {
        warn "the version read back differs from the source"
        return 1
    }
    afs_umount "$AMNT"
    # The floor of the layout: every file of the store read directly, caches dropped,
    # four at a time (no hashing, no FUSE). One file per chunk, and its directory,
    # are what a first read pays for beyond one contiguous file.
    drop_caches
    timed sh -c 'find "$1" -type f -print0 | xargs -0 -P4 -n64 cat >/dev/null' sh "$STORE"
    rec file_floor_read "$(awk -v b="$(du -sb "$STORE" | cut -f1)" -v us="$LAST_US" 'BEGIN { printf "%.1f", b / us }')"
    say "   first read $(get afs_read1) MB/s, second read $(get afs_read2) MB/s; the store's files read directly $(get file_floor_read) MB/s"
}

# Builds the long anchor: calibrates the command line and a loop of writers over the
# mount on a few versions each, then adds the rest with the faster one.
mount_writers() { # DIR FROM COUNT
    local dir=$1 from=$2 count=$3 w pids=() rc=0
    for ((w = 0; w < WRITERS; w++)); do
        (
            for ((i = from + w; i < from + count; i += WRITERS)); do
                printf 'version %s\n' "$i" >"$dir/f$i"
            done
        ) &
        pids+=($!)
    done
    # Only the writers: the mount daemon is a child of this shell too.
    for w in "${pids[@]}"; do wait "$w" || rc=1; done
    return "$rc"
}
cli_puts() { # FROM COUNT
    local i
    for ((i = $1; i < $1 + $2; i++)); do
        printf 'version %s\n' "$i" >"$T/cli.in"
        "$AFS" --store "$STORE" put many "$T/cli.in" >/dev/null
    done
}
build_many() {
    AFS_PHASE=many
    local cal=$SMALL_VERSIONS t_cli t_mnt done_n rest
    afs_mount "$STORE" "$AMNT"
    mkdir "$AMNT/many"
    timed mount_writers "$AMNT/many" 0 "$cal"
    t_mnt=$LAST_US
    timed cli_puts "$cal" "$cal"
    t_cli=$LAST_US
    done_n=$((2 * cal))
    rest=$((MANY_VERSIONS - done_n))
    rec many_cli_ms "$(ms $((t_cli / cal)))"
    rec many_mount_ms "$(ms $((t_mnt / cal)))"
    if [ "$t_cli" -lt "$t_mnt" ]; then
        rec many_method cli
        timed cli_puts "$done_n" "$rest"
    else
        rec many_method "mount-x$WRITERS"
        timed mount_writers "$AMNT/many" "$done_n" "$rest"
    fi
    rec many_rest_s "$(awk -v us="$LAST_US" 'BEGIN { printf "%.1f", us / 1e6 }')"
    afs_umount "$AMNT"
    say "   calibration on $cal versions each: command line $(get many_cli_ms) ms/version, $WRITERS writers over the mount $(get many_mount_ms) ms/version"
    say "   built the other $rest versions with $(get many_method) in $(get many_rest_s) s"
}

bench_anchorfs_ls() {
    AFS_PHASE=ls
    local anchor key r v1 v2
    for anchor in small many; do
        key=afs_ls_$anchor
        v1=() v2=()
        for ((r = 0; r < LS_REPS; r++)); do
            afs_mount "$STORE" "$AMNT"
            drop_caches
            timed ls -l "$AMNT/$anchor" >/dev/null
            v1+=("$(ms "$LAST_US")")
            timed ls -l "$AMNT/$anchor" >/dev/null
            v2+=("$(ms "$LAST_US")")
            if [ "$r" = 0 ]; then
                local n
                n=$(ls "$AMNT/$anchor" | grep -vc '^latest$')
                rec "${key}_n" "$n"
            fi
            afs_umount "$AMNT"
        done
        rec "${key}_first" "$(median "${v1[@]}")"
        rec "${key}_warm" "$(median "${v2[@]}")"
        say "   ls -l of $(get "${key}_n") versions: first $(get "${key}_first") ms, warm $(get "${key}_warm") ms"
    done
}

# Peak RSS against -o cache=: one daemon writes the big file as a new version, a
# fresh one reads it cold and warm and lists both anchors.
bench_cache_curve() {
    local c name
    for c in $CACHE_CURVE; do
        afs_mount "$STORE" "$AMNT" "cache=$c"
        mkdir -p "$AMNT/curve-$c"
        warm_source
        cp "$BIG" "$AMNT/curve-$c/data"
        afs_umount "$AMNT" "curve_${c}_write_kb"
        afs_mount "$STORE" "$AMNT" "cache=$c"
        name=$(readlink "$AMNT/curve-$c/latest")
        drop_caches
        timed cat "$AMNT/curve-$c/$name" >/dev/null
        rec "curve_${c}_read1" "$(mbps "$LAST_US")"
        cat "$AMNT/curve-$c/$name" >/dev/null
        ls -l "$AMNT/many" "$AMNT/small" >/dev/null
        afs_umount "$AMNT" "curve_${c}_read_kb"
        say "   cache=$c: peak RSS writing $(($(get "curve_${c}_write_kb") / 1024)) MiB, reading $(($(get "curve_${c}_read_kb") / 1024)) MiB; first read $(get "curve_${c}_read1") MB/s"
    done
}

# ---------------------------------------------------------------------------------
# bindfs.
# ---------------------------------------------------------------------------------
bench_bindfs() {
    local under=$T/bind.under mnt=$T/bind.mnt r v=() opts
    mkdir -p "$under" "$mnt"
    for opts in default big_writes; do
        v=()
        for ((r = 0; r < BIG_REPS; r++)); do
            if [ "$opts" = default ]; then bindfs "$under" "$mnt"; else bindfs -o big_writes "$under" "$mnt"; fi
            echo "$mnt" >>"$T/mounts"
            rm -f "$under/big.bin"
            warm_source
            sync
            # cp, then fsync of the file through the mount: durable, like a version.
            timed eval 'cp "$BIG" "$mnt/big.bin" && sync "$mnt/big.bin"'
            v+=("$(mbps "$LAST_US")")
            umount "$mnt"
        done
        rec "bindfs_write_$opts" "$(median "${v[@]}")"
    done
    v=()
    for ((r = 0; r < BIG_REPS; r++)); do
        bindfs "$under" "$mnt"
        echo "$mnt" >>"$T/mounts"
        drop_caches
        timed cat "$mnt/big.bin" >/dev/null
        v+=("$(mbps "$LAST_US")")
        [ $((r + 1)) = "$BIG_REPS" ] || umount "$mnt"
    done
    rec bindfs_read1 "$(median "${v[@]}")"
    v=()
    for ((r = 0; r < REPS; r++)); do
        timed cat "$mnt/big.bin" >/dev/null
        v+=("$(mbps "$LAST_US")")
    done
    rec bindfs_read2 "$(median "${v[@]}")"
    umount "$mnt"
    rm -f "$under/big.bin"
    say "   write $(get bindfs_write_default) MB/s (big_writes $(get bindfs_write_big_writes)), first read $(get bindfs_read1) MB/s, second $(get bindfs_read2) MB/s"
}

# ---------------------------------------------------------------------------------
# Random 4 KiB writes and reads on a RAND_MB MiB version: anchorfs against bindfs.
# ---------------------------------------------------------------------------------
RAND_BYTES=$((RAND_MB * 1048576))
mibps() { awk -v b="$RAND_BYTES" -v us="$1" 'BEGIN { printf "%.1f", b / 1048576 / (us / 1e6) }'; } # MiB/s

# fio_rand FILE rw|randread: one job of 4 KiB psync I/O at random offsets over the
# whole file (each block once), through the page cache (--direct=0); writes end with
# an fsync, and the close that follows is in the time (it commits the version).
fio_rand() {
    fio --name=rand --filename="$1" --rw="$2" --bs=4k --size="$RAND_BYTES" \
        --ioengine=psync --direct=0 --numjobs=1 --end_fsync=1 --fallocate=none \
        --randrepeat=1 --output="$T/fio.out" >/dev/null
}

# rand_io KEY FILE: random writes to FILE, then random reads of it, REPS times each
# (caches dropped before each), medians recorded as KEY_write and KEY_read in MiB/s.
rand_io() {
    local key=$1 file=$2 r w=() rd=()
    for ((r = 0; r < REPS; r++)); do
        drop_caches
        timed fio_rand "$file" randwrite
        w+=("$(mibps "$LAST_US")")
        drop_caches
        timed fio_rand "$file" randread
        rd+=("$(mibps "$LAST_US")")
    done
    rec "${key}_write" "$(median "${w[@]}")"
    rec "${key}_read" "$(median "${rd[@]}")"
}

bench_random_io() {
    local under=$T/rand.under mnt=$T/rand.mnt src=$T/src/rand.bin
    head -c "$RAND_BYTES" /dev/urandom >"$src"
    # anchorfs: one version of RAND_MB MiB, then fio in place on latest (O_RDWR, no
    # O_TRUNC): every write run is a new version of the same size.
    AFS_PHASE=random
    afs_mount "$STORE" "$AMNT"
    mkdir "$AMNT/rand"
    cp "$src" "$AMNT/rand/data"
    rand_io afs_rand "$AMNT/rand/latest"
    [ "$(stat -L -c %s "$AMNT/rand/latest")" = "$RAND_BYTES" ] || {
        warn "the version written at random offsets has the wrong size"
        return 1
    }
    afs_umount "$AMNT"
    say "   anchorfs: random 4 KiB writes $(get afs_rand_write) MiB/s, reads $(get afs_rand_read) MiB/s"
    if [ "${HAVE[bindfs]}" = 1 ]; then
        mkdir -p "$under" "$mnt"
        cp "$src" "$under/data"
        bindfs "$under" "$mnt"
        echo "$mnt" >>"$T/mounts"
        rand_io bindfs_rand "$mnt/data"
        umount "$mnt"
        rm -f "$under/data"
        say "   bindfs: random 4 KiB writes $(get bindfs_rand_write) MiB/s, reads $(get bindfs_rand_read) MiB/s"
        say "   anchorfs ÷ bindfs: writes $(ratio_of "$(get afs_rand_write)" "$(get bindfs_rand_write)")×, reads $(ratio_of "$(get afs_rand_read)" "$(get bindfs_rand_read)")×"
    fi
    rm -f "$src"
}

# ---------------------------------------------------------------------------------
# borg.
# ---------------------------------------------------------------------------------
bench_borg() {
    local repo=$T/borg.repo mnt=$T/borg.mnt r v=() f i=0 pid
    mkdir -p "$mnt"
    borg init --encryption=none "$repo" >/dev/null
    for ((r = 0; r < BIG_REPS; r++)); do
        warm_source
        sync
        timed borg create "$repo::big$r" -- "$BIG"
        v+=("$(mbps "$LAST_US")")
    done
    rec borg_write "$(median "${v[@]}")"
    v=()
    for f in "$T"/small/s*; do
        i=$((i + 1))
        cp "$f" "$T/smallsrc/file.bin"
        timed borg create "$repo::small$i" -- "$T/smallsrc/file.bin"
        v+=("$(ms "$LAST_US")")
    done
    rec borg_small_ms "$(median "${v[@]}")"
    say "   create ${SIZE_MB} MiB: $(get borg_write) MB/s; one small archive: $(get borg_small_ms) ms"
    v=()
    for ((r = 0; r < BIG_REPS; r++)); do
        borg mount -f "$repo::big0" "$mnt" 2>>"$T/borg.log" &
        pid=$!
        started "$pid" "$mnt"
        wait_mounted "$mnt" "$pid" "${BIG#/}"
        drop_caches
        timed cat "$mnt/${BIG#/}" >/dev/null
        v+=("$(mbps "$LAST_US")")
        cat "$mnt/${BIG#/}" >/dev/null
        stop_daemon "$pid" "$mnt" borg_hwm_kb
    done
    rec borg_read1 "$(median "${v[@]}")"
    say "   mount first read $(get borg_read1) MB/s, daemon peak RSS $(($(get borg_hwm_kb) / 1024)) MiB"
}

# ---------------------------------------------------------------------------------
# restic.
# ---------------------------------------------------------------------------------
bench_restic() {
    local mnt=$T/restic.mnt r v=() f i=0 pid file
    mkdir -p "$mnt"
    restic init --quiet >/dev/null
    for ((r = 0; r < BIG_REPS; r++)); do
        warm_source
        sync
        timed restic backup --quiet --tag big -- "$BIG"
        v+=("$(mbps "$LAST_US")")
    done
    rec restic_write "$(median "${v[@]}")"
    v=()
    for f in "$T"/small/s*; do
        i=$((i + 1))
        cp "$f" "$T/smallsrc/file.bin"
        timed restic backup --quiet --tag small -- "$T/smallsrc/file.bin"
        v+=("$(ms "$LAST_US")")
    done
    rec restic_small_ms "$(median "${v[@]}")"
    say "   backup ${SIZE_MB} MiB: $(get restic_write) MB/s; one small snapshot: $(get restic_small_ms) ms"
    # First read of the big file, through a mount of every snapshot.
    v=()
    for ((r = 0; r < BIG_REPS; r++)); do
        restic mount "$mnt" >>"$T/restic.log" 2>&1 &
        pid=$!
        started "$pid" "$mnt"
        wait_mounted "$mnt" "$pid" snapshots
        file=$(find "$mnt/tags/big/" -name big.bin -type f | head -n1)
        [ -n "$file" ] || {
            warn "big.bin not found in the restic mount"
            return 1
        }
        drop_caches
        timed cat "$file" >/dev/null
        v+=("$(mbps "$LAST_US")")
        ls -l "$mnt/snapshots/" >/dev/null
        stop_daemon "$pid" "$mnt" restic_hwm_kb
    done
    rec restic_read1 "$(median "${v[@]}")"
    # ls -l of snapshots/ holding exactly the small snapshots.
    local v1=() v2=()
    for ((r = 0; r < REPS; r++)); do
        restic mount --tag small "$mnt" >>"$T/restic.log" 2>&1 &
        pid=$!
        started "$pid" "$mnt"
        wait_mounted "$mnt" "$pid" snapshots
        drop_caches
        timed ls -l "$mnt/snapshots/" >/dev/null
        v1+=("$(ms "$LAST_US")")
        timed ls -l "$mnt/snapshots/" >/dev/null
        v2+=("$(ms "$LAST_US")")
        [ "$r" != 0 ] || rec restic_ls_n "$(ls "$mnt/snapshots/" | grep -vc '^latest$')"
        stop_daemon "$pid" "$mnt" restic_hwm_kb
    done
    rec restic_ls_first "$(median "${v1[@]}")"
    rec restic_ls_warm "$(median "${v2[@]}")"
    say "   mount first read $(get restic_read1) MB/s; ls -l snapshots/ ($(get restic_ls_n)): first $(get restic_ls_first) ms, warm $(get restic_ls_warm) ms; daemon peak RSS $(($(get restic_hwm_kb) / 1024)) MiB"
}

# ---------------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------------
fmt() { # a figure, or "—" when missing
    if [ -z "${1:-}" ]; then printf '—'; else awk -v v="$1" 'BEGIN { a = v < 0 ? -v : v; if (a >= 100) printf "%.0f", v; else if (a >= 10) printf "%.1f", v; else if (a >= 1) printf "%.2f", v; else printf "%.3f", v }'; fi
}
kb_mib() { [ -z "${1:-}" ] || awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# row WORK AFS_FIGURE BASELINE_LABEL BASELINE_FIGURE DIRECTION(higher|lower) [WHY_MISSING]
row() {
    local work=$1 a=${2:-} label=$3 b=${4:-} dir=$5 why=${6:-} ratio="—" reading="—"
    if [ -n "$a" ] && [ -n "$b" ]; then
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b == 0) print ""; else printf "%.3g", a / b }')
        reading=$(awk -v a="$a" -v b="$b" -v d="$dir" 'BEGIN {
            if (a == 0 || b == 0) { print "—"; exit }
            f = (d == "higher") ? a / b : b / a
            if (f >= 1) printf "%.3g× faster", f; else printf "%.3g× slower", 1 / f }')
        [ "$dir" != mem ] || reading=$(awk -v a="$a" -v b="$b" 'BEGIN { f = b / a; if (f >= 1) printf "%.3g× less", f; else printf "%.3g× more", 1 / f }')
    fi
    [ -n "$b" ] || [ -z "$why" ] || label="$label ($why)"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$work" "$(fmt "$a")" "$label" "$(fmt "$b")" "$ratio" "$reading"
}

why_not() { # tool: why its figures are missing
    if [ "${HAVE[$1]}" != 1 ]; then
        printf 'not available: %s' "${MISSING[$1]}"
    elif [ -n "$(get "failed_$1")" ]; then
        printf 'failed, see the log above'
    fi
}

target() { # TEXT MEASURED OK(1/0/"")
    local verdict
    case ${3:-} in 1) verdict=met ;; 0) verdict="**MISSED**" ;; *) verdict="not measured" ;; esac
    printf '| %s | %s | %s |\n' "$1" "$2" "$verdict"
}
cmp_ge() { [ -n "${1:-}" ] && [ -n "${2:-}" ] && awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? 1 : 0 }'; }
cmp_le() { [ -n "${1:-}" ] && [ -n "${2:-}" ] && awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? 1 : 0 }'; }
ratio_of() { [ -n "${1:-}" ] && [ -n "${2:-}" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b != 0) printf "%.3g", a / b }'; }

report() {
    local size="${SIZE_MB} MiB" afs_hwm borg_hwm restic_hwm nb nr
    afs_hwm=$(kb_mib "$(get afs_hwm_kb)")
    borg_hwm=$(kb_mib "$(get borg_hwm_kb)")
    restic_hwm=$(kb_mib "$(get restic_hwm_kb)")
    nb=$(why_not bindfs)
    nr=$(why_not restic)
    local ng
    ng=$(why_not borg)
    say ""
    say "## Results"
    say ""
    say "$(date -u '+%Y-%m-%d %H:%M UTC'); SIZE_MB=$SIZE_MB, $SMALL_VERSIONS small versions, $MANY_VERSIONS-version anchor, medians of $REPS (cheap) / $BIG_REPS (big) runs."
    say "MB/s = 10^6 bytes per second. Ratio = anchorfs ÷ baseline."
    say ""
    say "| work | anchorfs | baseline (same run) | baseline | ratio | anchorfs is |"
    say "|---|---:|---|---:|---:|---|"
    row "\`cp\` $size into a new anchor, close included, durable (MB/s)" "$(get afs_write)" "\`dd bs=1M conv=fsync\`, same disk" "$(get dd_fsync_write)" higher
    row "" "$(get afs_write)" "the store's files written directly (no hashing, no FUSE; \`scripts/bench/file-floor.py\`)" "$(get file_floor_write)" higher
    row "" "$(get afs_write)" "bindfs, \`cp\` + fsync" "$(get bindfs_write_default)" higher "$nb"
    row "" "$(get afs_write)" "bindfs \`-o big_writes\`, \`cp\` + fsync" "$(get bindfs_write_big_writes)" higher "$nb"
    row "" "$(get afs_write)" "\`borg create\`" "$(get borg_write)" higher "$ng"
    row "" "$(get afs_write)" "\`restic backup\`" "$(get restic_write)" higher "$nr"
    row "\`cat\` of that version, first read after a fresh mount, caches dropped (MB/s)" "$(get afs_read1)" "page-cache read of the source" "$(get pagecache_read)" higher
    row "" "$(get afs_read1)" "disk read of the source, caches dropped" "$(get disk_cold_read)" higher
    row "" "$(get afs_read1)" "the store's files read directly, caches dropped, 4 at a time (no hashing, no FUSE)" "$(get file_floor_read)" higher
    row "" "$(get afs_read1)" "bindfs first read" "$(get bindfs_read1)" higher "$nb"
    row "" "$(get afs_read1)" "\`borg mount\` first read" "$(get borg_read1)" higher "$ng"
    row "" "$(get afs_read1)" "\`restic mount\` first read" "$(get restic_read1)" higher "$nr"
    row "\`cat\` again (MB/s)" "$(get afs_read2)" "page-cache read of the source" "$(get pagecache_read)" higher
    row "" "$(get afs_read2)" "bindfs second read" "$(get bindfs_read2)" higher "$nb"
    row "new version of a 1 KiB file, one \`cp\`, durable (ms per version, median of $SMALL_VERSIONS)" "$(get afs_small_ms)" "\`dd conv=fsync\` of 1 KiB, same disk" "$(get dd_fsync_small_ms)" lower
    row "" "$(get afs_small_ms)" "one \`borg create\`" "$(get borg_small_ms)" lower "$ng"
    row "" "$(get afs_small_ms)" "one \`restic backup\`" "$(get restic_small_ms)" lower "$nr"
    row "\`ls -l\` of an anchor with $(get afs_ls_small_n) versions, first after mount (ms)" "$(get afs_ls_small_first)" "\`ls -l\` of a plain directory of $(get plain_ls_n) files, caches dropped" "$(get plain_ls_first)" lower
    row "" "$(get afs_ls_small_first)" "\`ls -l\` restic \`snapshots/\` ($(get restic_ls_n)), first" "$(get restic_ls_first)" lower "$nr"
    row "\`ls -l\`, $(get afs_ls_small_n) versions, warm (ms)" "$(get afs_ls_small_warm)" "\`ls -l\` restic \`snapshots/\` ($(get restic_ls_n)), warm" "$(get restic_ls_warm)" lower "$nr"
    row "\`ls -l\` of an anchor with $(get afs_ls_many_n) versions, first after mount (ms)" "$(get afs_ls_many_first)" "—" "" lower
    row "\`ls -l\`, $(get afs_ls_many_n) versions, warm (ms)" "$(get afs_ls_many_warm)" "—" "" lower
    row "random 4 KiB writes on a ${RAND_MB} MiB version in place, fio, one job, \`--direct=0\`, end fsync and close included (MiB/s)" "$(get afs_rand_write)" "bindfs, same fio job on a file of the same disk" "$(get bindfs_rand_write)" higher "$(why_not bindfs)$(why_not fio)"
    row "random 4 KiB reads of that version, fio, one job, caches dropped (MiB/s)" "$(get afs_rand_read)" "bindfs, same fio job" "$(get bindfs_rand_read)" higher "$(why_not bindfs)$(why_not fio)"
    row "daemon peak RSS (VmHWM) over all of the above, default cache (MiB)" "$afs_hwm" "\`borg mount\` daemon" "$borg_hwm" mem "$ng"
    row "" "$afs_hwm" "\`restic mount\` daemon" "$restic_hwm" mem "$nr"
    say ""
    say "anchorfs daemon peak RSS by phase (MiB): cp ${size} + ${SMALL_VERSIONS} small versions $(fmt "$(kb_mib "$(get afs_hwm_write_kb)")"); first and second read $(fmt "$(kb_mib "$(get afs_hwm_read_kb)")"); building the $MANY_VERSIONS-version anchor $(fmt "$(kb_mib "$(get afs_hwm_many_kb)")"); \`ls -l\` $(fmt "$(kb_mib "$(get afs_hwm_ls_kb)")"); random 4 KiB writes and reads $(fmt "$(kb_mib "$(get afs_hwm_random_kb)")")."

    say ""
    say "### Targets"
    say ""
    say "| target | measured | verdict |"
    say "|---|---|---|"
    local r
    r=$(ratio_of "$(get afs_write)" "$(get borg_write)")
    target "\`cp\` ≥ 2× \`borg create\`" "${r:-—}×" "$(cmp_ge "$r" 2)"
    r=$(ratio_of "$(get afs_write)" "$(get bindfs_write_big_writes)")
    target "\`cp\` ≥ 1.3× bindfs \`-o big_writes\` + fsync" "${r:-—}×" "$(cmp_ge "$r" 1.3)"
    r=$(ratio_of "$(get afs_read1)" "$(get bindfs_read1)")
    target "first \`cat\` ≥ 0.7× bindfs first read" "${r:-—}×" "$(cmp_ge "$r" 0.7)"
    r=$(ratio_of "$(get afs_read1)" "$(get borg_read1)")
    target "first \`cat\` ≥ 3× \`borg mount\` first read" "${r:-—}×" "$(cmp_ge "$r" 3)"
    r=$(ratio_of "$(get afs_read2)" "$(get pagecache_read)")
    target "\`cat\` again ≥ 0.9× page-cache read" "${r:-—}×" "$(cmp_ge "$r" 0.9)"
    r=$(ratio_of "$(get afs_small_ms)" "$(get dd_fsync_small_ms)")
    target "1 KiB new version ≤ 1.3× \`dd conv=fsync\` of 1 KiB" "${r:-—}×" "$(cmp_le "$r" 1.3)"
    r=$(ratio_of "$(get afs_ls_small_first)" "$(get plain_ls_first)")
    target "\`ls -l\` of $(get afs_ls_small_n) versions ≤ 1.5× a plain directory's, first" "${r:-—}×" "$(cmp_le "$r" 1.5)"
    target "daemon peak RSS ≤ 48 MiB" "${afs_hwm:-—} MiB" "$(cmp_le "$afs_hwm" 48)"
    local c best=""
    for c in $CACHE_CURVE; do
        local w rd
        w=$(get "curve_${c}_write_kb")
        rd=$(get "curve_${c}_read_kb")
        if [ -n "$w" ] && [ -n "$rd" ] && [ "$w" -le 49152 ] && [ "$rd" -le 49152 ] && [ -z "$best" ]; then best=$c; fi
    done
    if [ -n "$best" ]; then
        target "daemon peak RSS ≤ 48 MiB with a lower \`-o cache=\`" "fits with cache=$best" 1
    else
        target "daemon peak RSS ≤ 48 MiB with a lower \`-o cache=\`" "no size tried fits ($CACHE_CURVE)" 0
    fi

    say ""
    say "### Peak RSS of the anchorfs daemon against \`-o cache=\`"
    say ""
    say "| \`-o cache=\` | writing $size (MiB) | first + second read, \`ls -l\` of both anchors (MiB) | first read (MB/s) |"
    say "|---|---:|---:|---:|"
    for c in $CACHE_CURVE; do
        printf '| %s | %s | %s | %s |\n' "$c" "$(fmt "$(kb_mib "$(get "curve_${c}_write_kb")")")" \
            "$(fmt "$(kb_mib "$(get "curve_${c}_read_kb")")")" "$(fmt "$(get "curve_${c}_read1")")"
    done
    say ""
    say "Long anchor built with $(get many_method) (calibration: command line $(get many_cli_ms) ms/version, $WRITERS writers over the mount $(get many_mount_ms) ms/version; the rest took $(get many_rest_s) s)."
    [ "$DROP_OK" = 1 ] || say "Caches could NOT be dropped: first reads may have been served from memory."
}

# ---------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------
say ""
say "== machine"
say "   $(nproc) cores, $(awk '/^model name/ { sub(/^[^:]*: /, ""); print; exit }' /proc/cpuinfo), $(free -h | awk '/^Mem:/ { print $2 }') memory, kernel $(uname -r)"
say "   scratch: $T ($(df -T "$T" | awk 'NR == 2 { print $1 ", " $2 }'))"
say "   load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "   anchorfs chunking: ${CHUNKING:-the default of new stores}"
say "   baselines:"
baseline_status

section "data" prepare_data
[ -s "$BIG" ] || die "could not write the data"
section "plain disk" bench_disk
section "anchorfs: write" bench_anchorfs_write
section "store layout, written directly" bench_file_floor
section "anchorfs: read" bench_anchorfs_read
section "anchorfs: long anchor" build_many
section "anchorfs: ls -l" bench_anchorfs_ls
if [ "${HAVE[bindfs]}" = 1 ]; then section bindfs bench_bindfs; fi
if [ "${HAVE[fio]}" = 1 ]; then section "random 4 KiB I/O: anchorfs and bindfs" bench_random_io; fi
if [ "${HAVE[borg]}" = 1 ]; then section borg bench_borg; fi
if [ "${HAVE[restic]}" = 1 ]; then section restic bench_restic; fi
section "anchorfs: RSS against -o cache=" bench_cache_curve

report
say ""
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
say "total: $(awk -v us=$(($(now_us) - START_US)) 'BEGIN { printf "%.0f", us / 1e6 }') s"
