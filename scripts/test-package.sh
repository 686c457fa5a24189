#!/usr/bin/env bash
# The Debian package, tried as a newcomer would: built with `cargo deb`, installed
# with `dpkg -i`, then `mount -t anchorfs` through the installed helper, an fstab
# line with noauto mounted by `mount MNT`, `man -w` for both pages, the bash
# completion, and `dpkg -r`, after which nothing of it is left.
#
# Run as root (dpkg, mount, /etc/fstab) on a Debian machine; .ci/run runs it after
# `cargo test`. It changes the system only for its run: /etc/fstab is restored and
# the package removed on every exit. It refuses to run where an anchorfs package or
# a /sbin/mount.anchorfs is installed already, so it never tests (or removes)
# something it did not install.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0

fail() {
  echo "package test: FAILED: $*" >&2
  echo "package test: $passed passed, 1 failed"
  exit 1
}
passed=0
check() {
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok: $what"
  else
    fail "$what"
  fi
}

if [ "$(id -u)" != 0 ]; then
  echo "error: scripts/test-package.sh needs root (dpkg -i, mount, /etc/fstab)" >&2
  exit 1
fi
if dpkg-query -W anchorfs >/dev/null 2>&1 || [ -e /sbin/mount.anchorfs ]; then
  echo "error: anchorfs is installed on this machine already; remove it first (dpkg -r anchorfs, or the /sbin/mount.anchorfs link)" >&2
  exit 1
fi

# What the test needs: cargo-deb (pinned), man-db for man -w, fuse3 (the package's
# dependency, which dpkg -i does not fetch).
if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
need=()
command -v man >/dev/null 2>&1 || need+=(man-db)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

rm -rf target/debian
cargo deb
deb=$(ls target/debian/anchorfs_*.deb)

scratch=$(mktemp -d)
cp /etc/fstab "$scratch/fstab.orig"
cleanup() {
  for m in "$scratch/mnt" "$scratch/mnt2"; do
    if mountpoint -q "$m" 2>/dev/null; then umount "$m" || umount -l "$m" || true; fi
  done
  cp "$scratch/fstab.orig" /etc/fstab
  if dpkg-query -W anchorfs >/dev/null 2>&1; then dpkg -r anchorfs >/dev/null || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT

echo "== the package: $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"
check "it depends on fuse3" sh -c "dpkg-deb --field '$deb' Depends | grep -qw fuse3"
check "it installs with dpkg -i" dpkg -i "$deb"

echo "== installed"
check "/usr/bin/anchorfs is on PATH" sh -c '[ "$(command -v anchorfs)" = /usr/bin/anchorfs ]'
check "/sbin/mount.anchorfs is a link to it" sh -c '[ "$(readlink /sbin/mount.anchorfs)" = /usr/bin/anchorfs ]'
check "man -w anchorfs finds the page" man -w anchorfs
check "man -w mount.anchorfs finds the page" man -w mount.anchorfs
check "man mount.anchorfs renders" sh -c 'MANWIDTH=80 man mount.anchorfs 2>/dev/null | grep -q "MOUNT OPTIONS"'
check "the pages have no roff warnings" sh -c \
  'for p in $(man -w anchorfs) $(man -w mount.anchorfs); do zcat -f "$p" | LC_ALL=C groff -man -ww -z 2>&1 | { ! grep .; } || exit 1; done'
check "bash loads anchorfs completions bash" sh -c \
  "bash -c 'source <(anchorfs completions bash); complete -p anchorfs' | grep -q ' anchorfs\$'"
check "bash loads the installed completion" sh -c \
  "bash -c 'source /usr/share/bash-completion/completions/anchorfs; complete -p anchorfs' | grep -q ' anchorfs\$'"
check "the zsh and fish completions are installed" test -s /usr/share/zsh/vendor-completions/_anchorfs -a -s /usr/share/fish/vendor_completions.d/anchorfs.fish
check "anchorfs --help lists mount" sh -c 'anchorfs --help | grep -q "^  mount "'

echo "== mount -t anchorfs through the installed helper"
mkdir "$scratch/mnt" "$scratch/mnt2"
store="$scratch/store"
echo "from the package" | anchorfs --store "$store" put doc >/dev/null 2>"$scratch/put.err"
check "put says it created the store" grep -qF "created a new store at $store" "$scratch/put.err"
check "mount -t anchorfs mounts" mount -t anchorfs -o ro,_netdev "$store" "$scratch/mnt"
check "it is listed as fuse.anchorfs from the store" grep -qF "$store $scratch/mnt fuse.anchorfs " /proc/mounts
check "it serves the store" sh -c "[ \"\$(cat '$scratch/mnt/doc/latest')\" = 'from the package' ]"
check "-o ro is read-only" sh -c "! echo x 2>/dev/null > '$scratch/mnt/doc/latest'"
check "umount ends it" umount "$scratch/mnt"

echo "== an fstab line with noauto"
echo "$store $scratch/mnt2 anchorfs noauto,names=compact,poll=2s 0 0" >>/etc/fstab
check "mount MNT mounts the fstab line" mount "$scratch/mnt2"
check "with its options (names=compact)" sh -c "ls '$scratch/mnt2/doc' | grep -q '_'"
check "writes through it are versions" sh -c "echo second | tee '$scratch/mnt2/doc/latest' >/dev/null && [ \"\$(anchorfs --store '$store' get doc)\" = second ]"
check "umount MNT ends it" umount "$scratch/mnt2"
cp "$scratch/fstab.orig" /etc/fstab

echo "== dpkg -r"
check "dpkg -r removes it" dpkg -r anchorfs
check "no /usr/bin/anchorfs" test ! -e /usr/bin/anchorfs
check "no /sbin/mount.anchorfs" sh -c '! test -e /sbin/mount.anchorfs && ! test -L /sbin/mount.anchorfs'
check "no man pages" sh -c '! man -w anchorfs 2>/dev/null && ! man -w mount.anchorfs 2>/dev/null'
check "no completions" sh -c '! test -e /usr/share/bash-completion/completions/anchorfs && ! test -e /usr/share/zsh/vendor-completions/_anchorfs && ! test -e /usr/share/fish/vendor_completions.d/anchorfs.fish'
check "mount -t anchorfs no longer finds a helper" sh -c "! mount -t anchorfs '$store' '$scratch/mnt' 2>/dev/null"

echo "package test: $passed passed, 0 failed"
