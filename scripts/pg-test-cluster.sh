#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests of the PostgreSQL store.
#
#   scripts/pg-test-cluster.sh start DIR   # initdb in DIR, start it, print its URL
#   scripts/pg-test-cluster.sh stop DIR    # stop it (DIR is left for the caller to remove)
#   scripts/pg-test-cluster.sh kill DIR    # stop it at once, as a crash would (`-m immediate`)
#
# The server listens only on a Unix socket in DIR (no TCP), trusts local
# connections, and keeps fsync on. It runs as the invoking user, or as `postgres`
# when invoked as root (the server refuses to run as root). The URL printed names
# the superuser `postgres` and the socket directory, e.g.
# postgres://postgres@%2Ftmp%2Fpg/postgres; the tests take it from ANCHORFS_TEST_PG.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR | stop DIR | kill DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

# The server's programs: on PATH, else Debian's versioned directory.
bindir=""
if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
  bindir=$(dirname "$(command -v pg_ctl)")
else
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && bindir=$d
  done
fi
if [ -z "$bindir" ]; then
  echo "error: initdb and pg_ctl not found (install the postgresql package)" >&2
  exit 1
fi

# Runs a server program as the cluster's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case $cmd in
start)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      echo "error: running as root, but there is no postgres user to run the server" >&2
      exit 1
    fi
    chown postgres: "$dir"
  fi
  chmod 0755 "$dir"
  # The server's programs run from a directory their user may enter.
  cd "$dir"
  if [ ! -e "$dir/data/PG_VERSION" ]; then
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust \
      --no-instructions -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
  fi
  if as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    : # already running
  elif ! as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses='' -k '$dir' -c fsync=on -c max_connections=200" \
    start >/dev/null; then
    cat "$dir/server.log" >&2
    exit 1
  fi
  # The socket directory, percent-encoded as the URL's host.
  host=$(printf '%s' "$dir" | sed 's|%|%25|g; s|/|%2F|g')
  echo "postgres://postgres@$host/postgres"
  ;;
stop | kill)
  dir=$(cd "$dir" && pwd)
  cd "$dir"
  mode=fast
  [ "$cmd" = kill ] && mode=immediate
  if [ -e "$dir/data/postmaster.pid" ]; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m "$mode" -w stop >/dev/null
  fi
  ;;
*)
  usage
  ;;
esac
