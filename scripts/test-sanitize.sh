#!/usr/bin/env bash
# Build vmsnap with AddressSanitizer + UndefinedBehaviorSanitizer in a build
# directory of its own and run the unit, fuzz and integration suites there.
#
#   scripts/test-sanitize.sh [BUILD_DIR [MAIN_BUILD_DIR]]
#                                  # default: ./build-sanitize, ./build
#
# scripts/test.sh runs it after the normal suites (one after the other, so
# the sanitized QEMU runs never compete with the normal ones for the CPU).
# QEMU is not built with ASan and loads an ASan plugin only if the runtime
# comes first: the integration harness runs QEMU through wrappers that
# preload it (tests/integration/meson.build sets VMSNAP_TEST_QEMU_PRELOAD;
# harness-private.h). Leak checks run in our own processes (CLI, unit and
# fuzz tests), not in QEMU.
# Writes BUILD_DIR/meson-logs/testlog.json; the exit status is meson's.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-${SANITIZE_BUILD_DIR:-$root/build-sanitize}}"
main_build="${2:-${BUILD_DIR:-$root/build}}"
cd "$root"

opts=(-Db_sanitize=address,undefined -Db_lundef=false)
if [ -d "$build/meson-private" ]; then
  meson setup --reconfigure "$build" "$root" "${opts[@]}"
else
  meson setup "$build" "$root" "${opts[@]}"
fi
meson compile -C "$build"

# The Linux test guest is built from Debian packages and cached per build
# directory: share the normal build's instead of building it twice.
for arch_dir in "$main_build"/tests/linux-guest/*/; do
  [ -d "$arch_dir" ] || continue
  arch="$(basename "$arch_dir")"
  [ -e "$build/tests/linux-guest/$arch" ] || ln -s "${arch_dir%/}" "$build/tests/linux-guest/$arch"
done

# Any finding fails the test that hit it. GLib keeps some allocations for
# the life of the process; tests/lsan.supp names them.
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp:print_suppressions=0}"
rm -f "$build/meson-logs/testlog.json"
# The libvirt suite runs too: its domains' <emulator> is then a wrapper
# that preloads the ASan runtime (tests/libvirt/libvirtd.sh, lv_sanitizers),
# and the vmsnap CLI it drives is the sanitized one.
exec meson test -C "$build" --print-errorlogs --timeout-multiplier 3 \
  --suite unit --suite fuzz --suite integration
