#!/bin/busybox sh
# /init of the kernel-matrix VM (`cargo xtask vm`, `cargo xtask vm-e2e`). Mounts what podlife
# needs, reports the capture features the real agent enables, runs every test binary in /tests
# (vm-e2e: once per cgroup layout, as <binary>@<layout>), and prints one parseable line per
# step for the host:
#   PODLIFE-VM KERNEL <release> <cgroup mode>
#   PODLIFE-VM FEATURE <name> <0|1>
#   PODLIFE-VM BEGIN <test binary>   ... libtest output ...   PODLIFE-VM RESULT <test binary> rc=<n> secs=<s>
#   PODLIFE-VM DONE
# then powers off. The cgroup layout comes from the kernel command line: podlife.cgroup=hybrid
# (v1 controllers under /sys/fs/cgroup/<ctrl>, cgroup2 at /sys/fs/cgroup/unified, as systemd's
# hybrid mode and the project's machines) or podlife.cgroup=v2 (cgroup2 alone at /sys/fs/cgroup).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export RUST_BACKTRACE=1 HOME=/root TMPDIR=/tmp

mount -t proc proc /proc
# The e2e suite's runc pivot_root()s into each container's rootfs, which the kernel refuses
# while / is the initramfs (rootfs cannot be pivoted): move to a tmpfs root first.
# switch_root frees the initramfs on its way.
if grep -q podlife.suite=e2e /proc/cmdline && ! [ -e /.tmpfs-root ]; then
    mkdir -p /newroot
    mount -t tmpfs -o mode=755 tmpfs /newroot
    for f in /*; do
        case "$f" in /proc | /newroot) ;; *) cp -a "$f" /newroot/ ;; esac
    done
    mkdir /newroot/proc
    touch /newroot/.tmpfs-root
    umount /proc
    exec switch_root /newroot /init
fi
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
ip link set lo up

mode=hybrid
suite=kernel
layouts=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        podlife.cgroup=*) mode=${arg#podlife.cgroup=} ;;
        podlife.suite=*) suite=${arg#podlife.suite=} ;;
        podlife.layouts=*) layouts=$(echo "${arg#podlife.layouts=}" | tr , ' ') ;;
    esac
done

case "$mode" in
    v2)
        mount -t cgroup2 cgroup2 /sys/fs/cgroup
        # Enable the controllers the tests use for their children (memory.max of the OOM test).
        for c in memory pids cpu; do echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control; done
        ;;
    *)
        mode=hybrid
        mount -t tmpfs cgroup_root /sys/fs/cgroup
        for c in memory pids "cpu,cpuacct"; do
            mkdir -p "/sys/fs/cgroup/$c"
            mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
        done
        mkdir -p /sys/fs/cgroup/unified
        mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
        ;;
esac
echo "PODLIFE-VM KERNEL $(uname -r) $mode"
# What the cgroup controllers and mounts really are (a failed v1 mount shows here).
grep cgroup /proc/self/mountinfo | sed 's/^/mount: /'

# The fields of the tracepoints podlife reads, for docs/PORTABILITY.md (kernels add fields).
for tp in sched/sched_process_exec sched/sched_process_exit task/task_newtask \
    signal/signal_generate signal/signal_deliver cgroup/cgroup_mkdir cgroup/cgroup_attach_task \
    oom/mark_victim syscalls/sys_enter_setns syscalls/sys_enter_execve; do
    f=/sys/kernel/tracing/events/$tp/format
    if [ -r "$f" ]; then
        echo "format: $tp:" $(sed -n 's/^.*field:[^;]*[ *]\([a-z_0-9]*\)\(\[[0-9]*\]\)\{0,1\};.*/\1/p' "$f" | grep -v '^common_')
    else
        echo "format: $tp: MISSING"
    fi
done

# Capture features as the real agent reports them: podlife_feature_enabled{feature} on /metrics.
/bin/podlife --listen 127.0.0.1:9090 --state-dir /tmp/podlife-state > /tmp/agent.log 2>&1 &
agent=$!
got=
for i in $(seq 1 150); do
    if wget -q -O /tmp/metrics http://127.0.0.1:9090/metrics 2>/dev/null; then got=1; break; fi
    kill -0 $agent 2>/dev/null || break
    sleep 0.1
done
if [ -n "$got" ]; then
    sed -n 's/^podlife_feature_enabled{feature="\([^"]*\)"} \([0-9]*\)$/PODLIFE-VM FEATURE \1 \2/p' /tmp/metrics
else
    echo "PODLIFE-VM AGENT-FAILED"
fi
kill $agent 2>/dev/null
wait $agent 2>/dev/null
# The agent's log: its start-up steps and the reason of every degraded feature.
sed 's/^/agent: /' /tmp/agent.log

# run NAME BINARY ARGS...: one test binary between BEGIN and RESULT lines.
run() {
    name=$1
    shift
    echo "PODLIFE-VM BEGIN $name"
    start=$(date +%s)
    "$@" --test-threads=1 2>&1
    rc=$?
    echo "PODLIFE-VM RESULT $name rc=$rc secs=$(($(date +%s) - start))"
}

if [ "$suite" = e2e ]; then
    # What the pods need that Debian builds as modules (the CNI bridge and its veths, overlay
    # snapshots), in dependency order; a failure shows as the pods' own errors.
    for m in llc stp bridge veth overlay; do
        insmod "/lib/modules/$(uname -r)/$m.ko" || echo "insmod $m failed"
    done
    export PODLIFE_BIN=/bin/podlife E2E_IMAGES=/images
    # One layout after the other: side by side (two containerds, two agents) the agents' start
    # overran the harness's 20 s readiness bound under TCG on a loaded host.
    for layout in $layouts; do
        export PODLIFE_E2E_CGROUP_LAYOUT=$layout
        for t in /tests/*; do
            [ -x "$t" ] || continue
            # --include-ignored: the cgroup-v2-only tests the host's e2e suite cannot run.
            run "${t##*/}@$layout" "$t" --include-ignored
        done
    done
else
    for t in /tests/*; do
        [ -x "$t" ] || continue
        run "${t##*/}" "$t"
    done
fi
echo "PODLIFE-VM DONE"
poweroff -f
