# vmsnap libvirt tests: a private libvirtd for one test run (sourced by bash).
#
# libvirt's session mode (qemu:///session) is a libvirtd owned by one user
# with its configuration, sockets and state under that user's XDG
# directories, which this file points into a private temp dir: no systemd,
# no /etc/libvirt, no /run/libvirt, nothing shared with another run or with
# a system libvirtd. As root the daemon, QEMU and every client run as
# `nobody` (session mode is for an unprivileged user; root's libvirtd is
# always the system one). Only unix sockets: session libvirtd listens on
# nothing else.
#
# QEMU capabilities are probed once per QEMU binary and libvirtd (~45 s on a
# loaded machine) and cached in $LV_CAPS_CACHE (the build dir), which
# libvirt revalidates by itself (binary ctimes, versions).
#
#   lv_setup          start libvirtd; sets LV_DIR (private, owned by LV_USER)
#   lv_as CMD...      run CMD as the libvirt user with the session's environment
#   lv_stage FILE     a copy of FILE the libvirt user can read; prints its path
#   lv_sanitizers     under an ASan build: LV_EMULATOR, a QEMU that can load the plugin
#   virsh_ ARGS...    virsh -c qemu:///session ARGS as that user
#   lv_cleanup        destroy every domain, stop libvirtd, remove LV_DIR
#
# Needs: LV_CAPS_CACHE (a directory to keep the capabilities cache in).

lv_cannot_run() {
  echo "libvirt test cannot run: $*" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 77
}

lv_require() {
  for prog in libvirtd virsh qemu-system-x86_64 qemu-img setpriv socat python3; do
    PATH=/usr/sbin:/sbin:$PATH command -v "$prog" >/dev/null ||
      lv_cannot_run "$prog not installed (scripts/setup.sh installs it)"
  done
}

# The command that runs "$@" as the libvirt user in the session's environment
# (with the sanitizers' settings, which lv_sanitizers made readable to it).
lv_cmd() {
  LV_CMD=(env -i "PATH=/usr/sbin:/usr/bin:/sbin:/bin" "HOME=$LV_DIR/home"
          "XDG_CONFIG_HOME=$LV_DIR/config" "XDG_RUNTIME_DIR=$LV_DIR/run"
          "XDG_CACHE_HOME=$LV_DIR/cache" "LIBVIRT_AUTOSTART=0" "LC_ALL=C"
          "${LV_SANITIZER_ENV[@]}" "$@")
  if [ "$(id -u)" -eq 0 ]; then
    LV_CMD=(setpriv --reuid="$LV_USER" --regid="$LV_GROUP" --clear-groups "${LV_CMD[@]}")
  fi
}

lv_as() {
  lv_cmd "$@"
  "${LV_CMD[@]}"
}

virsh_() {
  lv_as virsh -q -c qemu:///session "$@"
}

lv_setup() {
  lv_require
  if [ "$(id -u)" -eq 0 ]; then
    LV_USER=nobody
    LV_GROUP=$(id -gn nobody)
  else
    LV_USER=$(id -un)
    LV_GROUP=$(id -gn)
  fi
  # Short: sun_path holds 108 bytes.
  LV_DIR=$(mktemp -d /tmp/vmsnap-lv.XXXXXX)
  chmod 0755 "$LV_DIR"
  mkdir -p "$LV_DIR"/{home,config/libvirt,run,cache/libvirt/qemu/cache,ram} "$LV_CAPS_CACHE/capabilities"
  chmod 0700 "$LV_DIR/run"
  # The probe results persist in the build dir; everything else is private.
  ln -s "$LV_CAPS_CACHE/capabilities" "$LV_DIR/cache/libvirt/qemu/cache/capabilities"
  mkdir -p "$LV_DIR/bin"
  cat > "$LV_DIR/config/libvirt/qemu.conf" <<CONF
# QEMU's stdout/stderr straight to the domain log: no virtlogd to run.
stdio_handler = "file"
# File-backed guest RAM (<memoryBacking><source type='file'/>) goes here;
# memory=link snapshots must be on this filesystem.
memory_backing_dir = "$LV_DIR/ram"
CONF
  cat > "$LV_DIR/config/libvirt/libvirtd.conf" <<CONF
log_outputs = "2:file:$LV_DIR/home/libvirtd.log"
CONF
  if [ "$(id -u)" -eq 0 ]; then
    chown -R "$LV_USER:$LV_GROUP" "$LV_DIR" "$LV_CAPS_CACHE"
  fi
  if ! lv_as test -w "$LV_CAPS_CACHE/capabilities/."; then
    # A build dir the libvirt user cannot reach (a checkout under /root):
    # probe into the private dir instead, once per run.
    echo "libvirtd.sh: $LV_USER cannot write $LV_CAPS_CACHE; QEMU is probed afresh" >&2
    rm "$LV_DIR/cache/libvirt/qemu/cache/capabilities"
    lv_as mkdir "$LV_DIR/cache/libvirt/qemu/cache/capabilities"
  fi
  trap lv_cleanup EXIT
  # exec: $! is libvirtd itself (setpriv and env exec too), so it can be stopped.
  lv_cmd libvirtd
  exec "${LV_CMD[@]}" >"$LV_DIR/home/libvirtd.out" 2>&1 &
  LV_PID=$!
  local i
  for i in $(seq 1 300); do
    [ -S "$LV_DIR/run/libvirt/libvirt-sock" ] && virsh_ version >/dev/null 2>&1 && return 0
    kill -0 "$LV_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "libvirtd did not come up:" >&2
  cat "$LV_DIR/home/libvirtd.out" >&2
  exit 1
}

LV_SANITIZER_ENV=()
LV_EMULATOR=/usr/bin/qemu-system-x86_64

# Under a sanitizer build (VMSNAP_TEST_QEMU_PRELOAD names the ASan runtime):
# the domains' emulator becomes a wrapper that preloads it into QEMU, which
# then can load the ASan-built plugin, and the clients (the ASan-built
# vmsnap) get the sanitizers' options, with LSan's suppressions file staged
# where the libvirt user can read it. Sets LV_EMULATOR. After lv_setup.
lv_sanitizers() {
  [ -n "${VMSNAP_TEST_QEMU_PRELOAD:-}" ] || return 0
  local supp opts="${LSAN_OPTIONS:-}"
  if [[ "$opts" =~ suppressions=([^:]*) ]]; then
    supp=$(lv_stage "${BASH_REMATCH[1]}")
    opts=${opts/suppressions=${BASH_REMATCH[1]}/suppressions=$supp}
  fi
  LV_SANITIZER_ENV=("ASAN_OPTIONS=${ASAN_OPTIONS:-}" "UBSAN_OPTIONS=${UBSAN_OPTIONS:-}"
                    "LSAN_OPTIONS=$opts")
  LV_EMULATOR="$LV_DIR/bin/qemu-system-x86_64"
  cat > "$LV_EMULATOR" <<SH
#!/bin/bash
# Only a QEMU that loads the plugin gets the ASan runtime. libvirt's
# capability probe runs QEMU with -daemonize, whose fork can catch another
# thread inside ASan's allocator lock and hang the child for good (seen:
# both threads of the daemon in SizeClassAllocator64::GetFromAllocator).
# QEMU is not built with ASan: leak checks stay in our own processes.
if [[ " \$* " == *" -plugin "* ]]; then
  export LD_PRELOAD=$VMSNAP_TEST_QEMU_PRELOAD\${LD_PRELOAD:+:\$LD_PRELOAD}
  export ASAN_OPTIONS="\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}detect_leaks=0"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
fi
exec -a qemu-system-x86_64 /usr/bin/qemu-system-x86_64 "\$@"
SH
  chmod 0755 "$LV_EMULATOR"
  [ "$(id -u)" -ne 0 ] || chown "$LV_USER:$LV_GROUP" "$LV_EMULATOR"
}

# A copy of file $1 in $LV_DIR/bin that the libvirt user can read and run
# (the build dir may be out of its reach); prints its path.
lv_stage() {
  local copy
  copy="$LV_DIR/bin/$(basename "$1")"
  cp "$1" "$copy"
  chmod 0755 "$copy"
  [ "$(id -u)" -ne 0 ] || chown "$LV_USER:$LV_GROUP" "$copy"
  echo "$copy"
}

lv_cleanup() {
  local status=$?
  set +e
  if [ -n "${LV_PID:-}" ] && kill -0 "$LV_PID" 2>/dev/null; then
    local dom
    for dom in $(virsh_ list --all --name 2>/dev/null); do
      virsh_ destroy "$dom" >/dev/null 2>&1
      virsh_ undefine "$dom" >/dev/null 2>&1
    done
    if [ "$status" -ne 0 ]; then
      echo "--- libvirtd log (last lines)" >&2
      tail -n 30 "$LV_DIR/home/libvirtd.log" >&2 2>/dev/null
      local log
      for log in "$LV_DIR"/cache/libvirt/qemu/log/*.log; do
        [ -f "$log" ] || continue
        echo "--- $log (last lines)" >&2
        tail -n 8 "$log" >&2
      done
    fi
    # libvirtd may miss a SIGTERM while it is still starting up.
    kill "$LV_PID" 2>/dev/null
    local i
    for i in $(seq 1 50); do
      kill -0 "$LV_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$LV_PID" 2>/dev/null
    wait "$LV_PID" 2>/dev/null
  fi
  [ -n "${LV_DIR:-}" ] && rm -rf "$LV_DIR"
  exit "$status"
}
