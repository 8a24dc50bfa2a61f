#!/usr/bin/env bash
# Builds the Debian package from a copy of the tree (`dpkg-buildpackage -us
# -uc -b`, as a user would) and checks what it installs, unpacked into a
# private root: the plugin from QEMU's module directory loads into the
# distro QEMU and answers on its control socket, vmsnap runs, the man pages
# render, bash completion completes. CI runs it (scripts/test.sh); by hand:
#
#   scripts/deb-test.sh          # needs scripts/setup.sh's packages
#
# Nothing is installed on the system; everything lives in a temp dir.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work=$(mktemp -d /tmp/vmsnap-deb.XXXXXX)
qemu_pid=
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }

# The tree as git knows it (tracked and new files), without build dirs.
mkdir "$work/src"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$root" ls-files -z --cached --others --exclude-standard |
    (cd "$root" && tar --null -T - -cf - 2>/dev/null) | tar -xf - -C "$work/src"
else
  tar -C "$root" --exclude='./build*' --exclude=./.git -cf - . | tar -xf - -C "$work/src"
fi

start=$(date +%s)
if ! (cd "$work/src" && DEB_BUILD_OPTIONS="nocheck parallel=2" \
      dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  fail "dpkg-buildpackage -us -uc -b failed"
fi
deb=$(ls "$work"/vmsnap_*.deb)
echo "deb-test: built $(basename "$deb") in $(( $(date +%s) - start )) s"
[ -n "$(dpkg-deb -f "$deb" Depends)" ] || fail "the package declares no Depends"

dpkg-deb -x "$deb" "$work/root"
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
plugin="$work/root/usr/lib/$triplet/qemu/libvmsnap.so"
cli="$work/root/usr/bin/vmsnap"
for f in "$plugin" "$cli" \
         "$work/root/usr/share/man/man1/vmsnap.1.gz" \
         "$work/root/usr/share/man/man7/libvmsnap.7.gz" \
         "$work/root/usr/share/bash-completion/completions/vmsnap"; do
  [ -f "$f" ] || fail "the package has no ${f#"$work/root"}"
done
ls "$work/root/usr/share/doc/vmsnap/libvirt.md"* >/dev/null 2>&1 || fail "no doc/libvirt.md in the package"

"$cli" --version | grep -q '^vmsnap ' || fail "vmsnap --version"
"$cli" help restore | grep -q -- '--libvirt' || fail "vmsnap help restore"
# vmsnap(1) covers every command the binary lists.
man1=$(zcat "$work/root/usr/share/man/man1/vmsnap.1.gz")
for cmd in $("$cli" --help | awk '/^Commands:/ { on = 1; next } on && !NF { exit } on { print $1 }'); do
  grep -q "^\.BI\? \"\?$cmd\b" <<<"$man1" || fail "vmsnap(1) does not describe '$cmd'"
done
for page in man1/vmsnap.1.gz man7/libvmsnap.7.gz; do
  out=$(man --warnings -l "$work/root/usr/share/man/$page" 2>&1 >/dev/null)
  [ -z "$out" ] || fail "man $page: $out"
done
words=$(PATH="$work/root/usr/bin:$PATH" bash -c '
  . "$1"; COMP_WORDS=(vmsnap restore --li); COMP_CWORD=2; _vmsnap; echo "${COMPREPLY[*]}"' \
  _ "$work/root/usr/share/bash-completion/completions/vmsnap")
[ "$words" = "--libvirt" ] || fail "bash completion of 'vmsnap restore --li': '$words'"

# The installed plugin in the distro QEMU: it loads, finds the guest RAM and
# answers query-vmsnap on its control socket.
qemu-system-x86_64 -accel tcg -m 64M -display none -S -nodefaults \
  -object memory-backend-file,id=ram0,size=64M,mem-path="$work/guest.ram",share=on \
  -machine pc,memory-backend=ram0 \
  -chardev socket,id=vmsnap-qmp,path="$work/qmp.sock",server=on,wait=off \
  -mon chardev=vmsnap-qmp,mode=control \
  -plugin "$plugin,qmp=$work/qmp.sock,control=$work/control.sock" 2>"$work/qemu.err" &
qemu_pid=$!
reply=
for _ in $(seq 1 100); do
  if [ -S "$work/control.sock" ]; then
    reply=$(printf '{"execute":"qmp_capabilities"}\n{"execute":"query-vmsnap"}\n' |
            socat -t 3 - "UNIX-CONNECT:$work/control.sock" 2>/dev/null | grep '"memory"' || true)
    case "$reply" in *'"size":67108864'*|*'"size": 67108864'*) break ;; esac
  fi
  kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited: $(cat "$work/qemu.err")"
  sleep 0.1
done
case "$reply" in
  *'"size":67108864'*|*'"size": 67108864'*) ;;
  *) fail "the installed plugin did not answer query-vmsnap with the guest RAM: '$reply' $(cat "$work/qemu.err")" ;;
esac
# (qmp.sock is the plugin's own monitor: QEMU serves one client at a time.)
kill "$qemu_pid"
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=
echo "deb-test: ok: $(basename "$deb") installs a plugin the distro QEMU loads, vmsnap, man pages, completion"
