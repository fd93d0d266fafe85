#!/usr/bin/env bash
# Installs the Debian packages Scribe needs to build and run containers, when missing.
set -euo pipefail
# iptables: CRIU locks the network with iptables-restore (checkpoint e2e)
# docker.io: dockerd 20.10 and its CLI, the reference the local-driver e2e checks Scribe's files against
pkgs=(containerd runc busybox-static protobuf-compiler iptables docker.io)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo (the Rust toolchain, e.g. from rustup) is required" >&2; exit 1; }
