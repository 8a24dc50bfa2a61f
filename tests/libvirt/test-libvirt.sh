#!/usr/bin/env bash
# vmsnap under a real libvirtd (doc/libvirt.md, every step of its recipe):
# a domain that loads the plugin boots and its control socket answers.
#
# Environment (set by meson): VMSNAP_PLUGIN, VMSNAP_GUEST, VMSNAP_CLI,
# LV_CAPS_CACHE. Exit 77 when libvirt is missing (1 under CI=true).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=libvirtd.sh
. "$here/libvirtd.sh"

fail() { echo "FAIL: $*" >&2; exit 1; }

# Waits up to $3 seconds for file $1 to contain text $2.
wait_text() {
  local i
  for i in $(seq 1 $(( ${3:-30} * 10 ))); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no '$2' in $1 after ${3:-30} s: $(tail -c 300 "$1" 2>/dev/null)"
}

# One QMP command on a control socket, as the libvirt user; prints the reply.
qmp() {
  printf '{"execute":"qmp_capabilities"}\n{"execute":"%s"}\n' "$2" |
    lv_as socat -t 5 - "UNIX-CONNECT:$1" | grep '"return"' | tail -n 1
}

# Field $2 (dotted path) of the JSON object $1, as JSON.
json_get() {
  python3 -c 'import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v[k]
print(json.dumps(v))' "$1" "$2"
}

# The domain XML of a vmsnap-enabled domain named $1, its sockets and guest
# console in $LV_DIR/$1 (doc/libvirt.md, "Define the domain").
domain_xml() {
  local name=$1 run="$LV_DIR/$1"
  cat <<XML
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$name</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <genid/>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$VMSNAP_GUEST</kernel>
  </os>
  <memoryBacking>
    <source type='file'/>
    <access mode='shared'/>
  </memoryBacking>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='unix'><source mode='bind' path='$run/com1.sock'/></serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-chardev'/>
    <qemu:arg value='file,id=guest-log,path=$run/debugcon.log'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='isa-debugcon,iobase=0xe9,chardev=guest-log'/>
    <qemu:arg value='-chardev'/>
    <qemu:arg value='socket,id=vmsnap-qmp,path=$run/qmp.sock,server=on,wait=off'/>
    <qemu:arg value='-mon'/>
    <qemu:arg value='chardev=vmsnap-qmp,mode=control'/>
    <qemu:arg value='-plugin'/>
    <qemu:arg value='$VMSNAP_PLUGIN,qmp=$run/qmp.sock,control=$run/control.sock,libvirt=on'/>
  </qemu:commandline>
</domain>
XML
}

lv_setup
lv_as mkdir "$LV_DIR/vm0"
domain_xml vm0 > "$LV_DIR/vm0.xml"
virsh_ define "$LV_DIR/vm0.xml" >/dev/null
virsh_ start vm0 >/dev/null
wait_text "$LV_DIR/vm0/debugcon.log" "vmsnap-guest: ready" 60
[ "$(virsh_ domstate vm0)" = "running" ] || fail "vm0 is $(virsh_ domstate vm0)"
q=$(qmp "$LV_DIR/vm0/control.sock" query-vmsnap)
case "$(json_get "$q" return.memory.path) $(json_get "$q" return.memory.shared)" in
  "\"$LV_DIR/ram/"*" true") ;;
  *) fail "query-vmsnap of vm0: want its RAM shared in memory_backing_dir: $q" ;;
esac
echo "ok: libvirt domain vm0 runs the plugin"
