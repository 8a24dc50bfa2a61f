#!/bin/sh
# vmsnap benchmarks: the apply-diff benchmark (tests/bench/bench-apply.c) at
# full size, on tmpfs (/dev/shm) and on the disk filesystem, hot and cold.
#
#   scripts/bench.sh [BUILD_DIR] [-- extra bench-apply options]
#
# BUILD_DIR defaults to ./build (configured and built if missing). Needs
# about 2 GiB free in /dev/shm and in the disk directory (VMSNAP_BENCH_DISK,
# default /var/tmp); everything it writes is removed at the end. Takes 5-10
# minutes. The output is Markdown, ready for doc/performance.md.
set -eu

src_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${1:-$src_dir/build}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift

if [ ! -d "$build_dir" ]; then
  meson setup "$build_dir" "$src_dir"
fi
meson compile -C "$build_dir" tests/bench/bench-apply >/dev/null

disk_root=${VMSNAP_BENCH_DISK:-/var/tmp}
tmpfs_dir=/dev/shm/vmsnap-bench-$$
disk_dir=$disk_root/vmsnap-bench-$$
cleanup() { rm -rf "$tmpfs_dir" "$disk_dir"; }
trap cleanup EXIT INT TERM

for d in /dev/shm "$disk_root"; do
  avail_kib=$(df -Pk "$d" | awk 'NR == 2 { print $4 }')
  if [ "$avail_kib" -lt $((2 * 1024 * 1024 + 512 * 1024)) ]; then
    echo "bench.sh: need 2.5 GiB free in $d" >&2
    exit 1
  fi
done

echo "<!-- $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg) -->"
"$build_dir/tests/bench/bench-apply" --size-mib 1024 --reps 3 \
  --dir "tmpfs=$tmpfs_dir" --dir "disk=$disk_dir" "$@"

# Restore latency, vmsnap against QEMU's own restore (tests/bench/bench-restore.c;
# doc/performance.md "Restore latency"). Needs qemu-system-x86_64 and, for
# the 4 GiB size, about 13 GiB free in /dev/shm. VMSNAP_BENCH_RESTORE=0 skips
# it; VMSNAP_BENCH_RESTORE_SIZES (MiB, comma-separated) and
# VMSNAP_BENCH_RESTORE_REPS override the sizes and runs. Takes 3-6 minutes.
if [ "${VMSNAP_BENCH_RESTORE:-1}" != 0 ]; then
  meson compile -C "$build_dir" >/dev/null
  echo
  echo "<!-- restore: $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg) -->"
  VMSNAP_PLUGIN="$build_dir/plugin/qemu/libvmsnap.so" \
  VMSNAP_GUEST="$build_dir/tests/guest/guest.elf" \
    "$build_dir/tests/bench/bench-restore" --dir /dev/shm \
      --sizes "${VMSNAP_BENCH_RESTORE_SIZES:-256,1024,4096}" \
      --reps "${VMSNAP_BENCH_RESTORE_REPS:-7}"
fi

# snapshot-save downtime, vmsnap link and copy against QEMU's own save and
# cp, and the guest's speed with and without the plugin
# (tests/bench/bench-save.c; doc/performance.md "Snapshot-save downtime").
# Needs qemu-system-x86_64 and, for 4 GiB, about 13 GiB free in /dev/shm.
# VMSNAP_BENCH_SAVE=0 skips it; VMSNAP_BENCH_SAVE_SIZES (MiB, comma-separated)
# and VMSNAP_BENCH_SAVE_REPS override the sizes and runs. Takes 5-8 minutes.
if [ "${VMSNAP_BENCH_SAVE:-1}" != 0 ]; then
  meson compile -C "$build_dir" >/dev/null
  echo
  echo "<!-- save: $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg) -->"
  VMSNAP_PLUGIN="$build_dir/plugin/qemu/libvmsnap.so" \
  VMSNAP_GUEST="$build_dir/tests/guest/guest.elf" \
    "$build_dir/tests/bench/bench-save" --dir /dev/shm \
      --sizes "${VMSNAP_BENCH_SAVE_SIZES:-256,1024,4096}" \
      --reps "${VMSNAP_BENCH_SAVE_REPS:-3}" --speed-secs 5 --speed-reps 7
fi

# Diff-save downtime against dirty pages (0.1%, 1%, 10%, 50% of 1 GiB, and
# 1 GiB's 1% count at 256 MiB), next to copy mode of the same VM
# (tests/bench/bench-diff.c; doc/performance.md "Diff snapshots"). The base
# guest fills all its RAM first. QEMU's stderr with the save's step times
# goes to $VMSNAP_BENCH_DIFF_LOG (default /dev/null). VMSNAP_BENCH_DIFF=0
# skips it; VMSNAP_BENCH_DIFF_REPS overrides the runs. Takes 3-5 minutes.
if [ "${VMSNAP_BENCH_DIFF:-1}" != 0 ]; then
  meson compile -C "$build_dir" >/dev/null
  echo
  echo "<!-- diff: $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg) -->"
  G_MESSAGES_DEBUG=vmsnap \
  VMSNAP_PLUGIN="$build_dir/plugin/qemu/libvmsnap.so" \
  VMSNAP_GUEST="$build_dir/tests/guest/guest.elf" \
    "$build_dir/tests/bench/bench-diff" --dir /dev/shm --show-qemu-log \
      --reps "${VMSNAP_BENCH_DIFF_REPS:-3}" 2>"${VMSNAP_BENCH_DIFF_LOG:-/dev/null}"
fi

# What disks add to save downtime and to restore: 0, 1 and 4 disks of 64 MiB
# and 4 GiB (64 MiB written in each), vmsnap's freeze against copying the
# images with the VM paused (tests/bench/bench-disks.c; doc/performance.md
# "Disks"). Images are sparse beyond the data written, so /dev/shm needs
# about 1.5 GiB. VMSNAP_BENCH_DISKS=0 skips it; VMSNAP_BENCH_DISKS_REPS
# overrides the runs. Takes 3-6 minutes.
if [ "${VMSNAP_BENCH_DISKS:-1}" != 0 ]; then
  meson compile -C "$build_dir" >/dev/null
  echo
  echo "<!-- disks: $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg) -->"
  VMSNAP_PLUGIN="$build_dir/plugin/qemu/libvmsnap.so" \
  VMSNAP_GUEST="$build_dir/tests/guest/guest.elf" \
  VMSNAP_CLI="$build_dir/plugin/cli/vmsnap" \
    "$build_dir/tests/bench/bench-disks" --dir /dev/shm --sizes 64,4096 --disks 0,1,4 \
      --reps "${VMSNAP_BENCH_DISKS_REPS:-5}"
fi

# Push and pull of a 1 GiB snapshot (a quarter real data) and of a 1%-dirty
# diff through a local docker-registry, against tar --sparse | zstd -T0 + a
# monolithic upload and skopeo copy of the same files
# (tests/bench/bench-registry.c; doc/performance.md "Push and pull"). Needs
# docker-registry, zstd, skopeo (optional) and about 5 GiB free in /dev/shm.
# VMSNAP_BENCH_REGISTRY=0 skips it; VMSNAP_BENCH_REGISTRY_REPS overrides the
# runs. Takes 2-4 minutes.
if [ "${VMSNAP_BENCH_REGISTRY:-1}" != 0 ]; then
  meson compile -C "$build_dir" >/dev/null
  echo
  echo "<!-- registry: $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg) -->"
  VMSNAP_CLI="$build_dir/plugin/cli/vmsnap" \
    "$build_dir/tests/bench/bench-registry" --dir /dev/shm --size-mib 1024 \
      --reps "${VMSNAP_BENCH_REGISTRY_REPS:-3}"
fi

# Fleet costs (issue 15): diff save of restored 2 GiB and 4 GiB VMs at 0.1, 1
# and 10% dirty, RAM overlay against today's private mapping, with a CPU hog
# beside the guest; PSS of 1, 4, 16 clones of a 512 MiB snapshot beside
# QEMU's own restore; warm-clone start; 16 clones at once against 16 in a
# row (tests/bench/bench-fleet*.c; doc/performance.md "Fleet"). Needs about
# 12 GiB free in /dev/shm. Every save's step times, with the save worker's
# CPU time, go to $VMSNAP_BENCH_FLEET_STEPS (default /dev/null).
# VMSNAP_BENCH_FLEET=0 skips it; VMSNAP_BENCH_FLEET_REPS overrides the runs.
# Takes 15-30 minutes on a loaded machine (most of it today's path).
if [ "${VMSNAP_BENCH_FLEET:-1}" != 0 ]; then
  meson compile -C "$build_dir" >/dev/null
  echo
  echo "<!-- fleet: $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg) -->"
  G_MESSAGES_DEBUG=vmsnap \
  VMSNAP_PLUGIN="$build_dir/plugin/qemu/libvmsnap.so" \
  VMSNAP_GUEST="$build_dir/tests/guest/guest.elf" \
    "$build_dir/tests/bench/bench-fleet" --dir /dev/shm --sizes 2048,4096 --dirty 0.1,1,10 \
      --density-mib 512 --clones 1,4,16 --fleet 16 --reps "${VMSNAP_BENCH_FLEET_REPS:-3}" \
      2>"${VMSNAP_BENCH_FLEET_STEPS:-/dev/null}"
  echo "<!-- fleet end: $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg) -->"
fi
