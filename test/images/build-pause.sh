#!/usr/bin/env bash
# Build the offline pod-sandbox ("pause") image of the CRI e2e test: the busybox image of
# build-image.sh whose entrypoint sleeps forever and exits 0 on SIGTERM/SIGINT.
#
#   test/images/build-pause.sh OUT_TAR
#
# Env: BUSYBOX, as for build-image.sh; IMAGE_NAME (default docker.io/library/scribe-pause:3.9).
set -euo pipefail
# pid 1 ignores signals it has no handler for: trap them, and sleep in the background so that
# the trap runs at once.
IMAGE_NAME=${IMAGE_NAME:-docker.io/library/scribe-pause:3.9} \
IMAGE_ENTRYPOINT='["/bin/sh", "-c", "trap '"'"'exit 0'"'"' TERM INT; while :; do sleep 3600 & wait $!; done"]' \
  exec "$(dirname "$0")/build-image.sh" "$@"
