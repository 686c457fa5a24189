#!/usr/bin/env bash
# Soak test: mixed reads, writes, renames, listings, command-line puts, expire and
# gc against two mounts of one store, then a check of every acknowledged version and
# fsck. Prints the operations done and the errors seen; exits 0 only if nothing
# acknowledged was lost, nothing unexpected failed and fsck passed.
#
#   scripts/soak.sh                      # 10 minutes
#   SOAK_SECONDS=180 scripts/soak.sh     # 3 minutes
#
# Environment:
#   SOAK_SECONDS   how long the load runs (default 600)
#   SOAK_WRITERS   writer threads per mount (default 3)
#   SOAK_MOUNT_OPTS  -o options of both mounts (default poll=250ms)
#   SOAK_SKIP      operations to leave out, comma-separated (e.g. write-latest)
#   SOAK_DIR       work directory (default: a new one under $TMPDIR; removed at the
#                  end unless SOAK_KEEP=1 or the run failed)
#   ANCHORFS_BIN   the anchorfs binary (default: built with cargo build --release)
#
# Needs root (it mounts FUSE), /dev/fuse and python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "soak.sh: run as root: it mounts FUSE filesystems" >&2
    exit 1
fi
if [ ! -e /dev/fuse ]; then
    echo "soak.sh: /dev/fuse is missing" >&2
    exit 1
fi
command -v python3 >/dev/null || { echo "soak.sh: python3 is needed" >&2; exit 1; }

if [ -z "${ANCHORFS_BIN:-}" ]; then
    (cd "$repo" && cargo build --release --bin anchorfs)
    target=${CARGO_TARGET_DIR:-target}
    case "$target" in
        /*) ;;
        *) target="$repo/$target" ;;
    esac
    ANCHORFS_BIN="$target/release/anchorfs"
fi
if [ ! -x "$ANCHORFS_BIN" ]; then
    echo "soak.sh: no anchorfs binary at $ANCHORFS_BIN" >&2
    exit 1
fi

exec python3 "$here/soak/soak.py" \
    --bin "$ANCHORFS_BIN" \
    --seconds "${SOAK_SECONDS:-600}" \
    --writers "${SOAK_WRITERS:-3}" \
    --mount-opts "${SOAK_MOUNT_OPTS:-poll=250ms}" \
    --skip "${SOAK_SKIP:-}" \
    ${SOAK_DIR:+--dir "$SOAK_DIR"} \
    ${SOAK_KEEP:+--keep} \
    "$@"
