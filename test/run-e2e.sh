#!/usr/bin/env bash
# Run the e2e suite against one or more containerd versions.
#
#   test/run-e2e.sh [VERSION...] [-- extra args for the test binaries]
#
# VERSION: 1.6 (the system's /usr/bin), 1.7, 2.1 (fetched by
# test/fetch-containerd.sh into .cache/containerd/), or all (default: 1.6).
# The runtime under test is SCRIBE_E2E_RUNTIME (default io.containerd.scribe.v2);
# SCRIBE_SHIM_BIN names the shim (default target/release/containerd-shim-scribe-v2).
# Example: SCRIBE_E2E_RUNTIME=io.containerd.runc.v2 test/run-e2e.sh all
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
versions=()
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    all) versions+=(1.6 1.7 2.1) ;;
    1.6|1.7|2.1) versions+=("$1") ;;
    *) echo "unknown argument $1 (versions: 1.6 1.7 2.1 all)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#versions[@]} -eq 0 ] && versions=(1.6)
extra=("$@")
[ ${#extra[@]} -eq 0 ] && extra=(--test-threads=2)

rc=0
summary=()
for v in "${versions[@]}"; do
  if [ "$v" = 1.6 ]; then
    dir=/usr/bin
  else
    dir=$ROOT/.cache/containerd/$v/usr/bin
    [ -x "$dir/containerd" ] || "$HERE/fetch-containerd.sh" "$v" || { rc=1; summary+=("$v: fetch failed"); continue; }
  fi
  echo "=== containerd $v ($dir), runtime ${SCRIBE_E2E_RUNTIME:-io.containerd.scribe.v2}"
  log=$(mktemp)
  (cd "$ROOT" && SCRIBE_CONTAINERD_DIR=$dir cargo test -p scribe-e2e --no-fail-fast -- "${extra[@]}") 2>&1 | tee "$log"
  st=${PIPESTATUS[0]}
  counts=$(grep -E '^test result' "$log" | awk '{p+=$4; f+=$6} END {print p" passed, "f" failed"}')
  failed=$(grep -E '^test .* FAILED$' "$log" | sed 's/^test //; s/ \.\.\. FAILED$//' | tr '\n' ' ')
  rm -f "$log"
  summary+=("$v: $counts${failed:+ ($failed)}")
  [ "$st" -eq 0 ] || rc=1
done
echo
echo "=== summary (runtime ${SCRIBE_E2E_RUNTIME:-io.containerd.scribe.v2})"
printf '%s\n' "${summary[@]}"
exit $rc
