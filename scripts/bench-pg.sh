#!/usr/bin/env bash
# The PostgreSQL store's benchmark: every figure beside a floor measured in the same
# run with plain SQL on the same server and data (benches/pg.rs says which).
#
#   scripts/bench-pg.sh                          # a throwaway local server, 1 GiB
#   BENCH_PG_SIZE_MB=256 scripts/bench-pg.sh     # a quicker try
#   ANCHORFS_BENCH_PG=postgres://u@host/db scripts/bench-pg.sh   # a server of yours
#
# Run as root (mounts, and dropping the page cache for cold first reads). The
# throwaway server listens only on a Unix socket in a temporary directory, keeps
# fsync on, and is stopped and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=$(mktemp -d "${TMPDIR:-/tmp}/anchorfs-bench-pg.XXXXXX")
# The server runs as its own user, who must be able to enter its directory here.
chmod 0755 "$scratch"
cleanup() {
  for m in "$scratch"/mnt*; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m"
  done
  if [ -n "${own_pg:-}" ]; then
    bash scripts/pg-test-cluster.sh stop "$scratch/pg" >/dev/null 2>&1 || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

if [ -z "${ANCHORFS_BENCH_PG:-}" ]; then
  own_pg=1
  ANCHORFS_BENCH_PG=$(bash scripts/pg-test-cluster.sh start "$scratch/pg")
fi
export ANCHORFS_BENCH_PG

cargo build --release --quiet --bin anchorfs
# The bench's own executable: cargo may list the anchorfs binary's artifact too.
bench=$(cargo bench --bench pg --no-run --message-format=json 2>/dev/null |
  grep '"kind":\["bench"\]' |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$bench" ] || { echo "error: the pg benchmark did not build" >&2; exit 1; }

echo "# PostgreSQL store benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), ${BENCH_PG_SIZE_MB:-1024} MiB"
echo "server: $(psql -X -At "$ANCHORFS_BENCH_PG" -c 'SELECT version()' 2>/dev/null || echo "$ANCHORFS_BENCH_PG")"
echo
ANCHORFS_BIN=$PWD/target/release/anchorfs BENCH_PG_DIR=$scratch/work "$bench"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
