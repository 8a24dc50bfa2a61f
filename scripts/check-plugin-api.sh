#!/usr/bin/env bash
# Builds the plugin for QEMU plugin API 2 (QEMU 9.0 and later) in BUILD-api2
# and checks the module exports qemu_plugin_version 2. QEMU 7.2, the QEMU
# here, refuses an API-2 module ("... supports only up to version 1"), so
# building it and reading what it exports is all this machine can prove
# (doc/usage.md, "Building for a QEMU").
#
#   scripts/check-plugin-api.sh BUILD    # BUILD: a configured build with tests
#
# Run by scripts/test.sh after the meson suites; exit status 0 on success.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$1"
api2="${build}-api2"
checker="$build/tests/unit/plugin-api-version"

if [ -d "$api2/meson-private" ]; then
  meson setup --reconfigure "$api2" "$root" -Dqemu_plugin_api=2 -Dtests=false >/dev/null
else
  meson setup "$api2" "$root" -Dqemu_plugin_api=2 -Dtests=false >/dev/null
fi
ninja -C "$api2" -j2 plugin/qemu/libvmsnap.so >/dev/null
version="$("$checker" "$api2/plugin/qemu/libvmsnap.so" 2)"
echo "check-plugin-api: -Dqemu_plugin_api=2 builds; $api2/plugin/qemu/libvmsnap.so exports qemu_plugin_version $version"
