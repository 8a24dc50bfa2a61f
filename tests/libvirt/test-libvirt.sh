#!/usr/bin/env bash
# vmsnap under a real libvirtd (doc/libvirt.md, every step of its recipe):
# a domain that loads the plugin boots and its control socket answers;
# `vmsnap save --libvirt` snapshots it; `vmsnap restore --libvirt` starts two
# clone domains whose guests continue from the snapshot, with new VM
# generation IDs, disks of their own and libvirt's migration settings intact; `virsh save`,
# `virsh restore`, `virsh domstate` and `virsh destroy` manage a clone.
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
    <emulator>$LV_EMULATOR</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$run/disk.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
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
lv_sanitizers
# As the libvirt user sees them (the build dir may be out of its reach).
VMSNAP_PLUGIN=$(lv_stage "$VMSNAP_PLUGIN")
VMSNAP_GUEST=$(lv_stage "$VMSNAP_GUEST")
VMSNAP_CLI=$(lv_stage "$VMSNAP_CLI")
lv_as mkdir "$LV_DIR/vm0"
lv_as truncate -s 16M "$LV_DIR/vm0/disk.img"
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

# The last tick counter (hex) on a guest's debug console, 0 if none.
last_tick() {
  local t
  t=$(grep -o 'tick 0x[0-9a-f]*' "$1" 2>/dev/null | tail -n 1 | cut -d' ' -f2)
  echo $(( ${t:-0} ))
}

# Waits until the guest of domain $1 ticks past counter $2 without booting.
wait_continues() {
  local log="$LV_DIR/$1/debugcon.log" i
  for i in $(seq 1 300); do
    [ "$(last_tick "$log")" -gt "$2" ] && break
    sleep 0.1
  done
  [ "$(last_tick "$log")" -gt "$2" ] || fail "$1 did not tick past $2: $(tail -c 300 "$log")"
  if grep -q 'vmsnap-guest: boot' "$log"; then fail "$1 booted instead of continuing"; fi
}

genid_of() { virsh_ dumpxml "$1" | sed -n 's:.*<genid>\(.*\)</genid>.*:\1:p'; }

# Save through libvirt: the control socket comes from the domain's XML. The
# guest has ticked twice, so a clone that continues is told from one that
# boots again.
wait_text "$LV_DIR/vm0/debugcon.log" "tick 0x8000000" 60
uri=qemu:///session
lv_as "$VMSNAP_CLI" save --libvirt vm0 --connect "$uri" "$LV_DIR/snap" >/dev/null
[ "$(virsh_ domstate vm0)" = "paused" ] || fail "vm0 is $(virsh_ domstate vm0) after the save"
[ "$(stat -c %a "$LV_DIR/snap/libvirt-domain.xml")" = 600 ] || fail "libvirt-domain.xml is not 0600"
grep -q "<name>vm0</name>" "$LV_DIR/snap/libvirt-domain.xml" || fail "the snapshot keeps no domain XML"
saved_tick=$(last_tick "$LV_DIR/vm0/debugcon.log")
vm0_genid=$(genid_of vm0)
mem_sum=$(sha256sum < "$LV_DIR/snap/memory.bin")
# The original goes; the snapshot's memory.bin (a hard link) stays.
virsh_ destroy vm0 >/dev/null
echo "ok: vmsnap save --libvirt vm0 (tick $saved_tick)"

# --dry-run prints the clone's XML and defines nothing.
dry=$(lv_as "$VMSNAP_CLI" restore "$LV_DIR/snap" --libvirt clone1 --connect "$uri" --dry-run)
for want in "<name>clone1</name>" "restore=$LV_DIR/snap," "overlay=$LV_DIR/snap/memory.bin" \
            "control=$LV_DIR/clone1/control.sock" "path=$LV_DIR/clone1/debugcon.log" \
            "<qemu:arg value=\"-incoming\"/>" "<genid/>"; do
  case "$dry" in *"$want"*) ;; *) fail "restore --dry-run: no '$want' in: $dry" ;; esac
done
case "$dry" in *"<uuid>"*) fail "restore --dry-run keeps the uuid" ;; esac
[ -z "$(virsh_ list --all --name | grep clone || true)" ] || fail "--dry-run defined a domain"
for clone in clone1 clone2; do
  lv_as "$VMSNAP_CLI" restore "$LV_DIR/snap" --libvirt "$clone" --connect "$uri"
done
for clone in clone1 clone2; do
  wait_continues "$clone" "$saved_tick"
  [ "$(virsh_ domstate "$clone")" = "running" ] || fail "$clone is $(virsh_ domstate "$clone")"
  q=$(qmp "$LV_DIR/$clone/control.sock" query-vmsnap)
  [ "$(json_get "$q" return.restored-from)" = "\"$LV_DIR/snap\"" ] || fail "$clone: $q"
  [ "$(json_get "$q" return.memory.path) $(json_get "$q" return.memory.shared)" = \
    "\"$LV_DIR/snap/memory.bin\" false" ] || fail "$clone does not map the snapshot privately: $q"
  # A fresh VM generation ID, and QEMU gives the guest that one.
  g=$(genid_of "$clone")
  [ -n "$g" ] && [ "$g" != "$vm0_genid" ] || fail "$clone has genid '$g' (vm0: $vm0_genid)"
  virsh_ qemu-monitor-command "$clone" --hmp info vm-generation-id | grep -qi "$g" ||
    fail "$clone: QEMU's vm-generation-id is not $g"
  # libvirt's migration settings as libvirt left them; x-ignore-shared off.
  caps=$(virsh_ qemu-monitor-command "$clone" '{"execute":"query-migrate-capabilities"}')
  python3 -c 'import json, sys
caps = {c["capability"]: c["state"] for c in json.loads(sys.argv[1])["return"]}
sys.exit(0 if caps["events"] and not caps["x-ignore-shared"] else 1)' "$caps" ||
    fail "$clone: migration capabilities: $caps"
  # Its own disk: a qcow2 overlay in its runtime dir on the snapshot's frozen image.
  disk=$(virsh_ domblklist "$clone" | awk '$1 == "vda" { print $2 }')
  case "$disk" in "$LV_DIR/$clone/disk-"*.qcow2) ;; *) fail "$clone's vda is '$disk'" ;; esac
  backing=$(lv_as qemu-img info -U --output=json "$disk" | python3 -c 'import json, sys
print(json.load(sys.stdin)["backing-filename"])')
  case "$backing" in "$LV_DIR/snap/disk-"*) ;; *) fail "$clone's overlay is backed by '$backing'" ;; esac
  echo "ok: $clone continues from tick $saved_tick, genid $g, disk $disk"
  [ "$clone" = clone2 ] && disk2=$disk
done
[ "$g" != "$(genid_of clone1)" ] || fail "the clones share a genid"

# libvirt manages a clone like any domain.
lv_as mkdir "$LV_DIR/saves"
virsh_ save clone1 "$LV_DIR/saves/clone1.save" >/dev/null
[ "$(virsh_ domstate --reason clone1)" = "shut off (saved)" ] ||
  fail "clone1 after virsh save: $(virsh_ domstate --reason clone1)"
before=$(last_tick "$LV_DIR/clone1/debugcon.log")
virsh_ restore "$LV_DIR/saves/clone1.save" >/dev/null
wait_continues clone1 "$before"
[ "$(virsh_ domstate clone1)" = "running" ] || fail "clone1 after virsh restore"
grep -q "vmsnap: restore=$LV_DIR/snap skipped" "$LV_DIR/cache/libvirt/qemu/log/clone1.log" ||
  fail "the plugin did not step aside for libvirt's restore"
echo "ok: virsh save / virsh restore of clone1 (was at tick $before)"
# A clone saved with vmsnap is cloned in turn (its own restore= and
# -incoming in its XML are replaced).
vmsnap_tick=$(last_tick "$LV_DIR/clone2/debugcon.log")
lv_as "$VMSNAP_CLI" save --libvirt clone2 --connect "$uri" --memory copy --then resume \
  "$LV_DIR/snap2" >/dev/null
[ "$(virsh_ domstate clone2)" = "running" ] || fail "clone2 after save --then resume"
lv_as "$VMSNAP_CLI" restore "$LV_DIR/snap2" --libvirt clone3 --connect "$uri"
wait_continues clone3 "$vmsnap_tick"
[ "$(virsh_ dumpxml clone3 | grep -c '<qemu:arg value=.-incoming.')" = 1 ] || fail "clone3's -incoming"
echo "ok: clone2 saved and cloned as clone3"
# Once a clone runs, its definition boots: a later start must not put the
# snapshot's memory over the disks it wrote.
virsh_ dumpxml clone2 | grep -q "restore=$LV_DIR/snap," || fail "clone2's live XML has no restore="
if virsh_ dumpxml --inactive clone2 | grep -q 'restore=\|-incoming'; then
  fail "clone2's persistent XML still restores"
fi
virsh_ destroy clone2 >/dev/null
virsh_ start clone2 >/dev/null
wait_text "$LV_DIR/clone2/debugcon.log" "vmsnap-guest: ready" 60
# The snap2 save froze clone2's overlay; vmsnap pointed clone2's definition
# at the overlay QEMU went on writing, on top of the frozen one.
vda=$(virsh_ domblklist clone2 | awk '$1 == "vda" { print $2 }')
[ "$vda" != "$disk2" ] || fail "clone2 started again on its frozen overlay"
[ "$(lv_as qemu-img info -U --output=json "$vda" | python3 -c 'import json, sys
print(json.load(sys.stdin)["backing-filename"])')" = "$disk2" ] ||
  fail "clone2's disk $vda is not on its frozen overlay $disk2"
echo "ok: virsh destroy / virsh start of clone2 boots it on its own disk ($vda)"
for dom in clone1 clone2 clone3; do
  virsh_ destroy "$dom" >/dev/null
  [ "$(virsh_ domstate "$dom")" = "shut off" ] || fail "$dom after destroy"
  virsh_ undefine "$dom" >/dev/null
done
virsh_ undefine vm0 >/dev/null
[ -z "$(virsh_ list --all --name)" ] || fail "domains left: $(virsh_ list --all --name)"
[ "$(sha256sum < "$LV_DIR/snap/memory.bin")" = "$mem_sum" ] || fail "the clones wrote memory.bin"
echo "ok: clones destroyed; the snapshot's memory is unchanged"
