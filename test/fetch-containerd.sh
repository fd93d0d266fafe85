#!/usr/bin/env bash
# Fetch containerd 1.7 (Debian trixie) and 2.1 (Debian sid) as .deb files with a
# PRIVATE apt configuration (own sources.list, state and cache under
# <repo>/.cache/apt/; the system's apt sources and dpkg database are not touched)
# and unpack them with `dpkg -x` into <repo>/.cache/containerd/<v>/.
#
#   test/fetch-containerd.sh [1.7] [2.1]      (default: both)
#
# Afterwards: SCRIBE_CONTAINERD_DIR=<repo>/.cache/containerd/<v>/usr/bin
# Idempotent: a version whose binaries are present (and run) is skipped.
# Env: DEBIAN_MIRROR (default http://deb.debian.org/debian; see private-apt.sh).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE=$ROOT/.cache

# version -> suite, and the package version prefix we want
suite_of() { case $1 in 1.7) echo trixie ;; 2.1) echo sid ;; *) return 1 ;; esac; }
want_of() { case $1 in 1.7) echo '1.7.' ;; 2.1) echo '2.1.' ;; esac; }

VERSIONS=("$@")
[ ${#VERSIONS[@]} -eq 0 ] && VERSIONS=(1.7 2.1)
for v in "${VERSIONS[@]}"; do
  suite_of "$v" >/dev/null || { echo "unknown version $v (known: 1.7 2.1)" >&2; exit 2; }
done

runs_ok() { # dir
  "$1/usr/bin/containerd" --version >/dev/null 2>&1 && "$1/usr/bin/ctr" --version >/dev/null 2>&1
}

need=()
for v in "${VERSIONS[@]}"; do
  if [ -x "$CACHE/containerd/$v/usr/bin/containerd" ] && [ -x "$CACHE/containerd/$v/usr/bin/ctr" ]; then
    echo "containerd $v: present in $CACHE/containerd/$v"
  else
    need+=("$v")
  fi
done

if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "apt-get is required" >&2; exit 1; }
  # shellcheck source=test/private-apt.sh
  . "$HERE/private-apt.sh"

  for v in "${need[@]}"; do
    suite=$(suite_of "$v"); want=$(want_of "$v")
    # pick the containerd version in that suite (madison: "pkg | version | mirror suite/main amd64 Packages")
    ver=$(apt-cache "${APTOPT[@]}" madison containerd | awk -F'|' -v s="$suite" '$3 ~ " "s"/" {gsub(/ /,"",$2); print $2}' | head -1)
    if [ -z "$ver" ]; then echo "containerd not found in $suite" >&2; exit 1; fi
    case $ver in "$want"*) ;; *) echo "warning: $suite has containerd $ver, not $want*" >&2 ;; esac
    echo "containerd $v: downloading containerd=$ver from $suite"
    (cd "$APTDIR/debs" && apt-get "${APTOPT[@]}" download "containerd=$ver")
    deb=$(ls "$APTDIR/debs"/containerd_"${ver//:/%3a}"_*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || deb=$(ls -t "$APTDIR/debs"/containerd_*.deb | head -1)
    rm -rf "$CACHE/containerd/$v.tmp"
    mkdir -p "$CACHE/containerd/$v.tmp"
    dpkg -x "$deb" "$CACHE/containerd/$v.tmp"
    rm -rf "$CACHE/containerd/$v"
    mv "$CACHE/containerd/$v.tmp" "$CACHE/containerd/$v"
    echo "$ver" > "$CACHE/containerd/$v/DEB_VERSION"
  done
fi

# Check that each binary runs here (bookworm: glibc 2.36).
rc=0
for v in "${VERSIONS[@]}"; do
  d=$CACHE/containerd/$v
  if runs_ok "$d"; then
    echo "containerd $v OK: $("$d/usr/bin/containerd" --version) | $("$d/usr/bin/ctr" --version)"
    echo "  SCRIBE_CONTAINERD_DIR=$d/usr/bin"
  else
    echo "containerd $v does NOT run on this machine:" >&2
    "$d/usr/bin/containerd" --version 2>&1 | head -3 >&2 || true
    file "$d/usr/bin/containerd" >&2 || true
    rc=1
  fi
done
exit $rc
