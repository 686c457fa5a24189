#!/usr/bin/env bash
# The test suite, with a throwaway PostgreSQL server for the PostgreSQL store's tests.
#
#   scripts/test.sh [CARGO TEST ARGS...]
#
# Runs `cargo test` with the arguments given. Unless ANCHORFS_TEST_PG already names
# a server (or ANCHORFS_SKIP_PG=1 skips those tests on purpose), it first starts a
# server of its own with scripts/pg-test-cluster.sh in a temporary directory,
# listening only on a Unix socket there, and stops and removes it when the tests end.
# The real-mount tests want root and /dev/fuse, and the Go vectors in ../shared/vectors.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${ANCHORFS_TEST_PG:-}" ] && [ "${ANCHORFS_SKIP_PG:-}" != 1 ]; then
  pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/anchorfs-test-pg.XXXXXX")
  stop_pg() {
    bash scripts/pg-test-cluster.sh stop "$pg_dir" >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  }
  trap stop_pg EXIT
  ANCHORFS_TEST_PG=$(bash scripts/pg-test-cluster.sh start "$pg_dir")
  export ANCHORFS_TEST_PG
  echo "PostgreSQL for the tests: $ANCHORFS_TEST_PG"
fi

cargo test "$@"
