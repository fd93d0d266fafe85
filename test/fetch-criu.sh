#!/usr/bin/env bash
# Fetch CRIU 4.x from Debian sid, with the libraries it needs (its own glibc included), into
# <repo>/.cache/criu/, and write <repo>/.cache/criu/bin/criu: a wrapper that runs it through
# the unpacked dynamic loader. The system is not touched.
#
# Why: bookworm's CRIU 3.17.1 cannot dump anything on this host's kernel
# ("vdso: Failed to fill self vdso symtable" in `criu check`), so checkpoint/restore could not
# be tested with it; sid's 4.2 passes `criu check`. It needs glibc 2.38 (bookworm has 2.36),
# hence the private loader. runc finds `criu` on PATH: the checkpoint e2e test puts
# .cache/criu/bin first on containerd's PATH. CRIU also needs iptables-restore (network
# locking), which test/install-deps.sh installs from bookworm.
#
#   test/fetch-criu.sh            idempotent: skipped when the wrapper passes `criu check`
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE=$ROOT/.cache
DEST=$CACHE/criu
WRAPPER=$DEST/bin/criu

if [ -x "$WRAPPER" ] && "$WRAPPER" check >/dev/null 2>&1; then
  echo "criu: present in $DEST ($("$WRAPPER" --version | head -1))"
  exit 0
fi

# shellcheck source=test/private-apt.sh
. "$HERE/private-apt.sh"
debs=$DEST.debs
rm -rf "$debs" "$DEST.tmp"
mkdir -p "$debs/partial" "$DEST.tmp/bin"
echo "criu: downloading criu and its libraries from sid"
apt-get "${APTOPT[@]}" -o Dir::Cache::archives="$debs" -o APT::Default-Release=sid \
  install --download-only --no-install-recommends -y criu >"$debs/download.log" 2>&1 ||
  { cat "$debs/download.log" >&2; exit 1; }
for d in "$debs"/*.deb; do
  dpkg -x "$d" "$DEST.tmp/root"
done
cat > "$DEST.tmp/bin/criu" <<WRAP
#!/bin/sh
# CRIU from Debian sid, run with its own glibc (see test/fetch-criu.sh).
R=$DEST/root
exec "\$R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \\
  --library-path "\$R/usr/lib/x86_64-linux-gnu:\$R/lib/x86_64-linux-gnu" "\$R/usr/sbin/criu" "\$@"
WRAP
chmod 0755 "$DEST.tmp/bin/criu"
rm -rf "$DEST" "$debs"
mv "$DEST.tmp" "$DEST"

"$WRAPPER" --version | head -1
if ! out=$("$WRAPPER" check 2>&1); then
  echo "criu check fails on this machine:" >&2
  echo "$out" | tail -5 >&2
  exit 1
fi
echo "criu check: $(echo "$out" | tail -1)"
