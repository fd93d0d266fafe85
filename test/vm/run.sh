#!/usr/bin/env bash
# The cgroup v2 + systemd stage of `make test`: boots a Debian bookworm VM (unified cgroup v2,
# systemd 252 as pid 1, containerd 1.6.20 as the distribution's containerd.service, Type=notify,
# runc 1.1.5) under qemu and runs a subset of the e2e suite in it against that containerd.
#
#   test/vm/run.sh             the whole stage (from the project root: make vm-test)
#   test/vm/run.sh --prepare   only the host tools, qemu and the cached guest root file system
#
# Host side: the Debian packages it needs (debootstrap, e2fsprogs, qemu-system-x86_64's
# libraries), qemu-system-x86 unpacked privately (this image's qemu-utils from backports
# conflicts with bookworm's qemu-system packages, so they are not installed), a debootstrap of
# bookworm cached in .cache/vm keyed by its package list, an ext4 image made with `mkfs.ext4 -d`
# (loop mounts fail here), qemu under TCG, the results read back from the image with debugfs.
# Guest side: test/vm/guest.sh runs the e2e test binaries built here (`cargo test --no-run`,
# same glibc) with SCRIBE_E2E_CONTAINERD_SOCKET=/run/containerd/containerd.sock.
#
# Env: SCRIBE_SKIP_VM=1 skips the stage. VM_CACHE (default .cache/vm), VM_TIMEOUT (s, the whole
# qemu run, host side; default 540), VM_GUEST_TIMEOUT (s, the guest's own watchdog; default
# VM_TIMEOUT-80: boot takes ~45 s), VM_OOM_RUNS (OOM runs under the systemd driver; default 20), VM_ACCEL (tcg|kvm),
# VM_MIRROR (Debian mirror), VM_TESTS (space-separated test binaries to run; default all of
# guest.sh's list), VM_CPUS, VM_MEM (MiB).
# Output: the guest's test lines, a final "N passed, N failed" line; exit status 0 only when
# every test passed and the guest finished within its time.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ "${SCRIBE_SKIP_VM:-}" = 1 ]; then
  echo "vm-test: skipped (SCRIBE_SKIP_VM=1)"
  exit 0
fi
PREPARE_ONLY=
[ "${1:-}" = --prepare ] && PREPARE_ONLY=1
CACHE=${VM_CACHE:-$ROOT/.cache/vm}
VM_TIMEOUT=${VM_TIMEOUT:-540}
VM_GUEST_TIMEOUT=${VM_GUEST_TIMEOUT:-$((VM_TIMEOUT - 80))}
VM_OOM_RUNS=${VM_OOM_RUNS:-20}
VM_ACCEL=${VM_ACCEL:-tcg}
VM_MIRROR=${VM_MIRROR:-http://deb.debian.org/debian}
VM_CPUS=${VM_CPUS:-2}
VM_MEM=${VM_MEM:-2048}
SHIM=${SCRIBE_SHIM_BIN:-$ROOT/target/release/containerd-shim-scribe-v2}
T_START=$(date +%s)
stamp() { echo "vm-test [+$(($(date +%s) - T_START))s] $*"; }
mkdir -p "$CACHE"

# ---- 1. host tools ----------------------------------------------------------------------------
# qemu-system-x86 is not installed (see above): only the libraries its binary links against and
# the firmware; its three .debs are unpacked into $CACHE/qemu.
export DEBIAN_FRONTEND=noninteractive
need=()
for t in debootstrap:debootstrap mkfs.ext4:e2fsprogs debugfs:e2fsprogs python3:python3; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
QEMU_DIR=$CACHE/qemu
QEMU=$QEMU_DIR/usr/bin/qemu-system-x86_64
if [ ! -x "$QEMU" ] || ! "$QEMU" --version >/dev/null 2>&1 || [ ${#need[@]} -gt 0 ]; then
  stamp "host packages"
  apt-get update -qq
  QLIBS=$(apt-cache depends qemu-system-x86 | awk '$1=="Depends:" {print $2}' | grep -v -e '^qemu-system' -e '^<' | sort -u)
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends debootstrap e2fsprogs python3 $QLIBS >/dev/null
  if [ ! -x "$QEMU" ]; then
    rm -rf "$QEMU_DIR.tmp" && mkdir -p "$QEMU_DIR.tmp/debs"
    (cd "$QEMU_DIR.tmp/debs" && apt-get download -qq qemu-system-x86 qemu-system-common qemu-system-data)
    for d in "$QEMU_DIR.tmp"/debs/qemu-system-*.deb; do dpkg-deb -x "$d" "$QEMU_DIR.tmp"; done
    rm -rf "$QEMU_DIR.tmp/debs" "$QEMU_DIR" && mv "$QEMU_DIR.tmp" "$QEMU_DIR"
  fi
fi
export QEMU_MODULE_DIR=$QEMU_DIR/usr/lib/x86_64-linux-gnu/qemu # accel-tcg-x86_64.so
QEMU_L=(-L "$QEMU_DIR/usr/share/qemu" -L /usr/share/seabios -L /usr/lib/ipxe/qemu)
stamp "$("$QEMU" --version | head -1)"

# ---- 2. guest root file system (cached, keyed by what makes it) --------------------------------
PKGS=systemd-sysv,systemd,udev,dbus,linux-image-amd64,containerd,runc,iproute2,kmod,procps
KEY=$(printf 'bookworm minbase %s %s\n' "$PKGS" "$VM_MIRROR" | sha256sum | cut -c1-16)
R=$CACHE/root-$KEY
if [ ! -e "$R/.debootstrap-done" ]; then
  stamp "debootstrap bookworm ($PKGS) into $R"
  rm -rf "$R"
  t0=$(date +%s)
  debootstrap --variant=minbase --include="$PKGS" bookworm "$R" "$VM_MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log"; exit 1; }
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/usr/share/doc/* \
    "$R"/usr/share/man/* "$R"/usr/share/locale/*
  touch "$R/.debootstrap-done"
  stamp "debootstrap took $(($(date +%s) - t0))s"
else
  stamp "guest root from cache ($R)"
fi
[ -n "$PREPARE_ONLY" ] && exit 0

# ---- 3. test payload, built on this host ------------------------------------------------------
[ -x "$SHIM" ] || { echo "vm-test: no shim at $SHIM (cargo build --release -p containerd-shim-scribe-v2)" >&2; exit 1; }
stamp "building the e2e test binaries (cargo test --no-run)"
TESTS_JSON=$(cd "$ROOT" && cargo test -q -p scribe-e2e --features vm --no-run --message-format=json 2>/dev/null)
P=$R/opt/scribe
rm -rf "$P" && mkdir -p "$P/tests"
# The test binaries guest.sh runs (its PLAN), without their debug info (a tenth of the size).
echo "$TESTS_JSON" | python3 -c '
import json, subprocess, sys
dest, wanted = sys.argv[1], sys.argv[2].split()
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"] \
            and m["target"]["name"] in wanted:
        subprocess.run(["objcopy", "--strip-debug", m["executable"], dest + "/" + m["target"]["name"]], check=True)
' "$P/tests" "$(sed -n 's/^  "\([a-z0-9_]*\):.*/\1/p' "$HERE/guest.sh" | tr '\n' ' ')"
"$ROOT/test/images/build-image.sh" "$P/busybox.tar" >/dev/null
"$ROOT/test/images/build-pause.sh" "$P/pause.tar" >/dev/null
install -m 0755 "$SHIM" "$R/usr/local/bin/containerd-shim-scribe-v2"
install -m 0755 "$HERE/guest.sh" "$P/guest.sh"
cat >"$P/guest.env" <<EOF
VM_GUEST_TIMEOUT=$VM_GUEST_TIMEOUT
VM_OOM_RUNS=$VM_OOM_RUNS
VM_TESTS="${VM_TESTS:-}"
EOF
ls "$P/tests" | tr '\n' ' ' | sed 's/^/vm-test: test binaries: /'
echo

# ---- 4. guest configuration -------------------------------------------------------------------
echo scribe-vm >"$R/etc/hostname"
# minbase has no netbase: CRI copies these into a host-network pod.
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n127.0.1.1 scribe-vm\n' >"$R/etc/hosts"
[ -s "$R/etc/resolv.conf" ] || echo 'nameserver 127.0.0.1' >"$R/etc/resolv.conf"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$R/etc/fstab"
# containerd as Debian runs it (its containerd.service, Type=notify), with CRI on and the Scribe
# runtime registered for CRI pods.
install -m 0644 "$HERE/containerd-config.toml" "$R/etc/containerd/config.toml"
cat >"$R/etc/systemd/system/scribe-vm-test.service" <<'EOF'
[Unit]
Description=Scribe e2e subset against the system containerd
After=containerd.service dbus.service
Wants=containerd.service dbus.service

[Service]
Type=oneshot
ExecStart=/opt/scribe/guest.sh
StandardOutput=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/scribe-vm-test.service \
  "$R/etc/systemd/system/multi-user.target.wants/scribe-vm-test.service"
for u in serial-getty@ttyS0.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer systemd-tmpfiles-clean.timer man-db.timer; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done
rm -f "$R/root/results.txt"

# ---- 5. disk image, boot --------------------------------------------------------------------
W=$CACHE/run
mkdir -p "$W"
stamp "disk image (mkfs.ext4 -d)"
rm -f "$W/disk.img" && truncate -s 3G "$W/disk.img"
mkfs.ext4 -q -F -L vmroot -d "$R" "$W/disk.img"
K=$(ls "$R"/boot/vmlinuz-* | tail -1)
I=$(ls "$R"/boot/initrd.img-* | tail -1)
if [ "$VM_ACCEL" = kvm ]; then A=(-enable-kvm -cpu host); else A=(-accel tcg,thread=multi -cpu max); fi
stamp "boot ($VM_ACCEL, ${VM_CPUS} cpus, ${VM_MEM} MiB; host limit ${VM_TIMEOUT}s, guest watchdog ${VM_GUEST_TIMEOUT}s)"
: >"$W/console.log"
t0=$(date +%s)
set +e
timeout -k 10 "$VM_TIMEOUT" "$QEMU" "${QEMU_L[@]}" "${A[@]}" -m "$VM_MEM" -smp "$VM_CPUS" \
  -nodefaults -no-user-config -nographic -serial file:"$W/console.log" -monitor none -nic none \
  -kernel "$K" -initrd "$I" -drive file="$W/disk.img",if=virtio,format=raw,cache=unsafe \
  -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1 quiet loglevel=1" \
  -no-reboot &
QPID=$!
trap 'kill $QPID 2>/dev/null' EXIT # never leave a VM behind
shown=0
while kill -0 $QPID 2>/dev/null; do
  # Follow the guest's test lines as they come.
  n=$(grep -ac '^VMT ' "$W/console.log" 2>/dev/null || true)
  if [ "${n:-0}" -gt "$shown" ]; then
    tr -d '\r' <"$W/console.log" | grep -a '^VMT ' | sed -n "$((shown + 1)),${n}p" | cut -c5-
    shown=$n
  fi
  sleep 2
done
wait $QPID
qrc=$?
set -e
trap - EXIT
stamp "qemu exited rc=$qrc after $(($(date +%s) - t0))s$([ $qrc = 124 ] && echo ' (host-side timeout)')"

# ---- 6. results ------------------------------------------------------------------------------
# From the image; the console copy instead when it has more (a guest cut off may not have synced).
debugfs -R 'cat /root/results.txt' "$W/disk.img" >"$W/results.txt" 2>/dev/null || true
tr -d '\r' <"$W/console.log" | grep -a '^VMT ' | cut -c5- >"$W/console-results.txt" || true
if [ "$(wc -l <"$W/console-results.txt")" -gt "$(wc -l <"$W/results.txt")" ]; then
  mv "$W/console-results.txt" "$W/results.txt"
fi
# The guest's own totals (libtest's "test result" lines, a crashed binary as one failure); when the
# guest did not finish, what its finished binaries said plus one failure for the rest.
read -r pass fail < <(sed -n 's/^VM-GUEST: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$W/results.txt" | tail -1) || true
if [ -z "${pass:-}" ]; then
  read -r pass fail < <(awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
    END { print p + 0, f + 0 }' "$W/results.txt") || true
fi
echo "vm-test: failing tests and reports:"
grep -aE '\.\.\. FAILED$|^    [a-z0-9_]+$|^REPORT|^VM-GUEST: ====|^VM-WATCHDOG' "$W/results.txt" || true
if ! grep -qa '^VM-TEST-END' "$W/results.txt"; then
  echo "vm-test: the guest did not finish (watchdog or host timeout); console: $W/console.log"
  tr -d '\r' <"$W/console.log" | tail -30
  fail=$((fail + 1))
fi
echo "vm-test: results in $W/results.txt, console in $W/console.log; stage took $(($(date +%s) - T_START))s"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
