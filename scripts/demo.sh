#!/usr/bin/env bash
# vmsnap demo (interim): builds vmsnap and shows the command-line tool on a
# snapshot directory — a committed snapshot, its manifest as text and JSON,
# verification, and how damage and an uncommitted directory are reported.
# The snapshot is a sample written by the test fixture tool, not a VM's
# (the plugin's issue turns this into a real VM snapshot and restore).
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
fixture="$build/tests/unit/vmsnap-fixture"
work="$(mktemp -d /tmp/vmsnap-demo.XXXXXX)"
trap 'rm -rf "$work"' EXIT

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

step "vmsnap's commands"
show "$vmsnap" --help

step "a committed snapshot directory"
"$fixture" "$work/snap" >/dev/null
show ls -l "$work/snap"

step "its manifest"
show "$vmsnap" info "$work/snap"

step "the same as JSON (what management layers read)"
show "$vmsnap" info --json "$work/snap"

step "verify: manifest, state.bin size and SHA-256, memory size"
show "$vmsnap" verify "$work/snap"

step "one flipped byte in state.bin is caught"
printf '\xff' | dd of="$work/snap/state.bin" bs=1 seek=100 conv=notrunc status=none
show_fail "$vmsnap" verify "$work/snap"

step "a directory without manifest.bin is an incomplete snapshot, never used"
mkdir "$work/half"
cp "$work/snap/state.bin" "$work/half/"
show_fail "$vmsnap" info "$work/half"

echo
echo "demo done"
