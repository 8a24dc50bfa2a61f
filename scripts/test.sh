#!/usr/bin/env bash
# Build vmsnap and run every test suite (unit, fuzz, integration), then the
# integration suite again with vcpu-events=off, and the unit, fuzz and
# integration suites of an ASan+UBSan build (scripts/test-sanitize.sh, in
# $SANITIZE_BUILD_DIR, default BUILD-sanitize). With arguments, only
# `meson test ARGS` of the normal build runs.
#
#   scripts/test.sh                 # build in ./build, run all suites
#   BUILD_DIR=/tmp/b scripts/test.sh
#   scripts/test.sh --suite unit    # extra arguments go to `meson test`
#   VMSNAP_DEB_TEST=1 scripts/test.sh   # also the Debian package (CI always)
#
# Installs the dependencies first (scripts/setup.sh). Exit status is 0 only
# if every test passed; with CI=true a skipped test fails the run too (CI
# installs everything the tests need, so a skip there is a missing
# dependency, never a pass). Ends with a line "N passed, N failed, N skipped".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
cd "$root"

"$root/scripts/setup.sh"

if [ -d "$build/meson-private" ]; then
  meson setup --reconfigure "$build" "$root"
else
  meson setup "$build" "$root"
fi
meson compile -C "$build"

log="$build/meson-logs/testlog.json"
rm -f "$log"
status=0
meson test -C "$build" --print-errorlogs "$@" || status=$?

if [ ! -s "$log" ]; then
  echo "test.sh: meson test wrote no results ($log)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

# The integration suite again with vcpu-events=off (the qmpvcpus setup,
# tests/meson.build): the QMP-only vCPU path KVM needs, proven under TCG.
# Only on a full run (no arguments), like CI's. Not the libvirt test: libvirtd
# starts its QEMU, which the setup's environment never reaches.
logs=("$log")
if [ $# -eq 0 ]; then
  qlog="$build/meson-logs/testlog-qmpvcpus.json"
  rm -f "$qlog"
  meson test -C "$build" --print-errorlogs --setup qmpvcpus --suite integration \
    --no-suite libvirt || status=$?
  logs+=("$qlog")
  # The ASan+UBSan build's unit, fuzz and integration suites, after the
  # normal runs (never beside them: they share 2 cores).
  sbuild="${SANITIZE_BUILD_DIR:-$build-sanitize}"
  "$root/scripts/test-sanitize.sh" "$sbuild" "$build" || status=$?
  logs+=("$sbuild/meson-logs/testlog.json")
fi

# Count from meson's own record of each test, not from its console output.
read -r passed failed skipped < <(python3 - "${logs[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
  try:
    f = open(path)
  except OSError:
    failed += 1  # a run that wrote no results
    continue
  with f:
    for line in f:
        if not line.strip():
            continue
        result = json.loads(line)["result"]
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
print(passed, failed, skipped)
PY
)

# The API-2 build (scripts/check-plugin-api.sh), one more test in the count.
if "$root/scripts/check-plugin-api.sh" "$build"; then
  passed=$((passed + 1))
else
  echo "test.sh: the plugin API 2 build failed (scripts/check-plugin-api.sh)" >&2
  failed=$((failed + 1))
  status=1
fi

if [ "$skipped" -gt 0 ]; then
  echo "test.sh: $skipped test(s) skipped:" >&2
  python3 -c 'import json,os,sys
for p in sys.argv[1:]:
  for l in (open(p) if os.path.exists(p) else []):
    t = json.loads(l)
    if t["result"] == "SKIP": print("  " + t["name"])' "${logs[@]}" >&2
  if [ "${CI:-}" = "true" ]; then
    echo "test.sh: CI=true: a skipped test is a failure (install what it needs in scripts/setup.sh)" >&2
    status=1
  fi
fi
if [ "$passed" -eq 0 ]; then
  echo "test.sh: no test passed" >&2
  status=1
fi

# CI also builds the Debian package and checks what it installs (debian/,
# scripts/deb-test.sh); VMSNAP_DEB_TEST=1 asks for it outside CI.
if [ "${CI:-}" = "true" ] || [ "${VMSNAP_DEB_TEST:-}" = "1" ]; then
  if "$root/scripts/deb-test.sh"; then
    passed=$((passed + 1))
  else
    echo "test.sh: the Debian package test failed" >&2
    failed=$((failed + 1))
    status=1
  fi
fi

echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
