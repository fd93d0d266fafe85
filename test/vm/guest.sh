#!/bin/bash
# In the VM (run by scribe-vm-test.service after containerd.service): runs the e2e test binaries
# built on the host against the system containerd, writes their output to /root/results.txt and,
# prefixed "VMT ", to the serial console, then powers off. A watchdog powers off after
# VM_GUEST_TIMEOUT seconds whatever happens (the host reads the missing VM-TEST-END as a failure).
exec > >(tee /root/results.txt | sed -u 's/^/VMT /' >/dev/ttyS0) 2>&1
set -u
. /opt/scribe/guest.env
up() { cut -d' ' -f1 /proc/uptime; }
(
  sleep "$VM_GUEST_TIMEOUT"
  echo "VM-WATCHDOG: the tests ran longer than ${VM_GUEST_TIMEOUT}s; powering off"
  ps -eo pid,ppid,stat,etimes,args | grep -E 'containerd|runc|scribe|/opt/scribe' | grep -v grep | cut -c1-200
  sync
  systemctl poweroff -ff
) &
echo "VM-GUEST: uptime $(up)s; kernel $(uname -r); $(systemctl --version | head -1); cgroup fs $(stat -fc %T /sys/fs/cgroup)"
for _ in $(seq 150); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
echo "VM-GUEST: $(containerd --version); $(runc --version | head -1)"
echo "VM-GUEST: containerd.service $(systemctl show -p Type,ActiveState containerd | tr '\n' ' ')"
echo "VM-GUEST: containerd's NOTIFY_SOCKET=$(tr '\0' '\n' </proc/"$(pidof containerd)"/environ | sed -n 's/^NOTIFY_SOCKET=//p')"

export SCRIBE_E2E_CONTAINERD_SOCKET=/run/containerd/containerd.sock
export SCRIBE_CONTAINERD_DIR=/usr/bin
export SCRIBE_SHIM_BIN=/usr/local/bin/containerd-shim-scribe-v2
export SCRIBE_E2E_IMAGE_TAR=/opt/scribe/busybox.tar
export SCRIBE_E2E_PAUSE_TAR=/opt/scribe/pause.tar
export SCRIBE_E2E_OOM_RUNS=3
export SCRIBE_VM_OOM_RUNS=$VM_OOM_RUNS
export RUST_BACKTRACE=0

# binary: exact test names (none: all of the binary's tests)
PLAN=(
  "lifecycle:run_rm_keeps_stdout_and_stderr_apart_and_returns_exit_code sigkill_reports_137 events_of_detached_task_match_task_ls_pid"
  "exec:exec_returns_its_exit_code_and_publishes_its_events"
  "task_api:oom_kill_yields_task_oom_before_exit_137_and_records"
  "cgroup2_systemd:--nocapture"
)
P=0
F=0
for entry in "${PLAN[@]}"; do
  bin=${entry%%:*}
  names=${entry#*:}
  if [ -n "$VM_TESTS" ] && ! [[ " $VM_TESTS " == *" $bin "* ]]; then continue; fi
  echo "VM-GUEST: ==== $bin (uptime $(up)s)"
  # shellcheck disable=SC2086
  /opt/scribe/tests/"$bin" --test-threads=1 --exact $names 2>&1 | tee /root/"$bin".out
  rc=${PIPESTATUS[0]}
  read -r p f < <(awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
    END { print p + 0, f + 0 }' /root/"$bin".out)
  # A binary that failed without a failing test (crashed, refused its arguments) counts as one.
  [ "$rc" != 0 ] && [ "$f" = 0 ] && f=1
  P=$((P + p))
  F=$((F + f))
  echo "VM-GUEST: ==== $bin exited $rc: $p passed, $f failed (uptime $(up)s)"
done
echo "VM-GUEST: leftovers: tasks [$(ctr -n default task ls -q | tr '\n' ' ')] namespaces [$(ctr namespaces ls -q | tr '\n' ' ')] shims [$(pgrep -c containerd-shim)]"
journalctl -u containerd --no-pager -o cat | grep -E 'level=(error|warning)' | grep -v -e cni -e 'failed to load plugin' | tail -15 | cut -c1-250 | sed 's/^/VM-GUEST: journal: /'
echo "VM-GUEST: $P passed, $F failed"
echo "VM-TEST-END uptime $(up)s"
sync
sleep 1
systemctl poweroff
