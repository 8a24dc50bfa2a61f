#!/usr/bin/env bash
# vmsnap demo: boots the test guest in QEMU with the vmsnap plugin, takes
# snapshots from the monitor console and from the command line, shows the
# manifest, verifies it, restores a clone, takes a diff snapshot of the
# clone and flattens it, snapshots a VM with a disk and restores a clone with
# its own overlay on the frozen image, and shows how damage (a changed
# frozen disk, a flipped state.bin byte) and an uncommitted directory are
# reported. Everything lives in a temporary directory on /dev/shm and
# QEMU is always stopped at the end.
#
#   scripts/demo.sh            # BUILD_DIR overrides ./build
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"

"$root/scripts/setup.sh" >/dev/null
if [ ! -d "$build/meson-private" ]; then
  meson setup "$build" "$root" >/dev/null
fi
meson compile -C "$build" >/dev/null

vmsnap="$build/plugin/cli/vmsnap"
plugin="$build/plugin/qemu/libvmsnap.so"
guest="$build/tests/guest/guest.elf"
work="$(mktemp -d /dev/shm/vmsnap-demo.XXXXXX)"
qemu_pid=""
cleanup() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid"
    wait "$qemu_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
# Runs a command that is expected to fail, and shows its exit status.
show_fail() {
  local rc=0
  printf '$ %s\n' "$*"
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then echo "(unexpectedly succeeded)"; exit 1; fi
  echo "(exit status $rc)"
}
# Sends one line to the plugin's monitor console and prints the exchange.
monitor() {
  monitor_at "$work/monitor.sock" "$1"
}
monitor_at() {
  printf '(vmsnap) %s\n' "$2"
  printf '%s\n' "$2" | socat -t 30 - "UNIX-CONNECT:$1" |
    sed -e '1d' -e 's/^(vmsnap) //' -e '/^$/d'
}
wait_for() { for _ in $(seq 1 300); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

step "boot the test guest with the plugin"
qemu=(qemu-system-x86_64 -accel tcg -m 128M -smp 2 -display none -nodefaults
  -object "memory-backend-file,id=ram0,size=128M,mem-path=$work/guest.ram,share=on"
  -machine pc,memory-backend=ram0
  -chardev "socket,id=vmsnap-qmp,path=$work/qmp.sock,server=on,wait=off"
  -mon chardev=vmsnap-qmp,mode=control
  -kernel "$guest"
  -device isa-debugcon,chardev=dbg -chardev "file,id=dbg,path=$work/debugcon.log"
  -plugin "$plugin,qmp=$work/qmp.sock,control=$work/control.sock,monitor=$work/monitor.sock")
printf '$ %s \\\n    %s\n' "${qemu[*]:0:9}" "${qemu[*]:9}"
"${qemu[@]}" 2>"$work/qemu.stderr" &
qemu_pid=$!
wait_for "$work/monitor.sock"
for _ in $(seq 1 200); do grep -q "ready" "$work/debugcon.log" 2>/dev/null && break; sleep 0.05; done
show cat "$work/debugcon.log"

step "the plugin's monitor console (socat - UNIX-CONNECT:monitor.sock)"
sleep 0.3
monitor "info status"

step "a copy snapshot from the monitor; the guest keeps running"
monitor "save $work/snap-copy memory=copy then=resume"
show ls -l "$work/snap-copy"

step "its manifest"
show "$vmsnap" info "$work/snap-copy"

step "verify: manifest, state.bin size and SHA-256, memory size"
show "$vmsnap" verify "$work/snap-copy"

step "a link snapshot from the command line: memory.bin is the VM's memory file, QEMU quits"
show "$vmsnap" save --control "$work/control.sock" "$work/snap-link" --then quit
wait "$qemu_pid" || true
qemu_pid=""
show ls -li "$work/guest.ram" "$work/snap-link/memory.bin"

step "how to start a clone from it (vmsnap restore --dry-run)"
show "$vmsnap" restore --dry-run "$work/snap-link"

step "restore it: a clone maps memory.bin copy-on-write and continues the guest"
mkdir -p "$work/clone"
printf '$ %s\n' "$vmsnap restore $work/snap-link --runtime-dir $work/clone &"
"$vmsnap" restore "$work/snap-link" --runtime-dir "$work/clone" 2>"$work/clone.stderr" &
qemu_pid=$!
wait_for "$work/clone/monitor.sock"
sleep 0.5
monitor_at "$work/clone/monitor.sock" "info status"

step "the clone forks: a diff snapshot holds only the pages written since the restore"
monitor_at "$work/clone/monitor.sock" "save $work/snap-diff memory=diff then=resume"
show "$vmsnap" verify "$work/snap-diff"
printf '$ %s\n' "du -h --apparent-size memory.diff; du -h memory.diff"
echo "$(du -h --apparent-size "$work/snap-diff/memory.diff" | cut -f1) apparent, $(du -h "$work/snap-diff/memory.diff" | cut -f1) on disk"
kill "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""

step "flatten the chain (link snapshot + diff) into a full snapshot"
show "$vmsnap" flatten "$work/snap-diff" "$work/snap-flat"
show "$vmsnap" verify "$work/snap-flat"

step "disks: a VM with a disk; the snapshot freezes it, each clone writes its own overlay"
truncate -s 64M "$work/data.raw"
qemu_disk=("${qemu[@]}" -drive "file=$work/data.raw,format=raw,if=none,id=data"
  -device virtio-blk-pci,drive=data -device vmgenid)
qemu_disk=("${qemu_disk[@]//$work\/monitor.sock/$work/disk-monitor.sock}")
qemu_disk=("${qemu_disk[@]//$work\/control.sock/$work/disk-control.sock}")
qemu_disk=("${qemu_disk[@]//$work\/qmp.sock/$work/disk-qmp.sock}")
"${qemu_disk[@]}" 2>"$work/qemu-disk.stderr" &
qemu_pid=$!
wait_for "$work/disk-monitor.sock"
sleep 0.5
monitor_at "$work/disk-monitor.sock" "save $work/snap-disk memory=copy then=resume"
show ls -li "$work/data.raw" "$work/snap-disk/disk-data.raw" "$work/data-snap-disk.qcow2"
echo "(the frozen image is a read-only hard link; the running VM now writes data-snap-disk.qcow2)"
kill "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""
mkdir -p "$work/disk-clone"
printf '$ %s\n' "$vmsnap restore $work/snap-disk --runtime-dir $work/disk-clone &"
"$vmsnap" restore "$work/snap-disk" --runtime-dir "$work/disk-clone" 2>"$work/disk-clone.stderr" &
qemu_pid=$!
wait_for "$work/disk-clone/disk-monitor.sock"
sleep 0.5
show cat "$work/disk-clone.stderr"
show qemu-img info -U --backing-chain "$work/disk-clone/disk-data.qcow2"
kill "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""
step "a frozen image that changed is refused by name"
chmod u+w "$work/snap-disk/disk-data.raw"
printf 'x' | dd of="$work/snap-disk/disk-data.raw" bs=1 seek=0 conv=notrunc status=none
show_fail "$vmsnap" verify "$work/snap-disk"

step "one flipped byte in state.bin is caught"
printf '\xff' | dd of="$work/snap-copy/state.bin" bs=1 seek=100 conv=notrunc status=none
show_fail "$vmsnap" verify "$work/snap-copy"

step "a directory without manifest.bin is an incomplete snapshot, never used"
mkdir "$work/half"
cp "$work/snap-link/state.bin" "$work/half/"
show_fail "$vmsnap" info "$work/half"

echo
echo "demo done"
