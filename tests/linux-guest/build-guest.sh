#!/usr/bin/env bash
# Builds the Linux test guest from Debian's packages, without installing them:
#   build-guest.sh DEB_ARCH OUTDIR
# DEB_ARCH is a Debian architecture (amd64, arm64; a foreign one needs
# `dpkg --add-architecture ARCH && apt-get update` first). OUTDIR receives
#   vmlinuz      the kernel of Debian's generic linux-image-ARCH (amd64: CONFIG_VMGENID=y)
#   initrd.img   busybox + the virtio/ext4 modules + init-initramfs (mounts /dev/vda)
#   root.ext4    an ext4 root (mkfs.ext4 -d): busybox, the test agent (/sbin/init), the writer
#   cmdline      the kernel command line to boot it with
#   kernel-version  the kernel's release (uname -r)
#   stamp        written last: architecture + hash of the inputs; the rest is complete
# A second call with the same OUTDIR returns at once (the build is cached);
# concurrent calls wait for each other (flock). Needs apt-get, dpkg-deb,
# cpio, mkfs.ext4 (scripts/setup.sh installs them); no root install happens.
set -euo pipefail

arch=${1:?usage: build-guest.sh DEB_ARCH OUTDIR}
out=${2:?usage: build-guest.sh DEB_ARCH OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The cache is valid while the stamp names this architecture and these inputs.
want="$arch $(cd "$here" && cat build-guest.sh init-initramfs init-agent writer guest-helpers | sha256sum | cut -c1-16)"
exec 9>"$out/.lock"
flock 9
[ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$want" ] && exit 0
rm -f "$out/stamp"

case "$arch" in
  amd64) console=ttyS0 ;;
  arm64) console=ttyAMA0 ;;
  *) echo "build-guest: unsupported Debian architecture '$arch' (amd64, arm64)" >&2; exit 2 ;;
esac
host_arch=$(dpkg --print-architecture)
q=""
[ "$arch" = "$host_arch" ] || q=":$arch"

work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

# The metapackage names the current ABI's image package.
find_kernel() {
  apt-cache depends "linux-image-$arch$q" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}
kpkg=$(find_kernel)
# A fresh machine may have no package lists yet (setup.sh updates them only
# when it installs something); as root, fetch them once.
if [ -z "$kpkg" ] && [ "$(id -u)" -eq 0 ]; then
  apt-get update -qq >/dev/null 2>&1 || true
  kpkg=$(find_kernel)
fi
kpkg=${kpkg%%:*}
if [ -z "$kpkg" ]; then
  echo "build-guest: apt-cache knows no linux-image-$arch$q (run apt-get update; for a foreign arch dpkg --add-architecture $arch)" >&2
  exit 1
fi
# apt-get download writes into the current directory; _apt cannot write a
# mktemp dir, which only costs a warning.
apt-get download -q "$kpkg$q" "busybox-static$q" >download.log 2>&1 ||
  { cat download.log >&2; echo "build-guest: apt-get download $kpkg$q busybox-static$q failed" >&2; exit 1; }

mkdir -p k bb
kdeb=$(ls "$kpkg"_*.deb)
# Only the kernel and the modules we load: the whole package unpacks to ~400 MB.
dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C k --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/*'
dpkg-deb -x busybox-static_*.deb bb
kver=$(ls k/lib/modules)
mods=k/lib/modules/$kver/kernel

# The modules the guest needs and their dependencies, in load order
# (dependencies first). depends= comes from each module's .modinfo.
declare -A path_of=() seen=()
while IFS= read -r f; do
  n=$(basename "$f" .ko); path_of[${n//-/_}]=$f
done < <(find "$mods" -name '*.ko')
order=()
visit() {
  local m=${1//-/_} d deps
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  [ -n "${path_of[$m]:-}" ] || return 0 # built in
  deps=$(strings -a "${path_of[$m]}" | sed -n 's/^depends=//p' | head -1)
  for d in ${deps//,/ }; do visit "$d"; done
  order+=("$m")
}
# virtio_rng: the CRNG must be ready before a vmgenid change can reseed it
# (add_vmfork_randomness logs nothing otherwise), and TCG has no other source.
# virtio_balloon: test-balloon inflates it in a clone restored share=off.
wanted=(virtio_pci virtio_blk virtio_mmio virtio_rng virtio_balloon crc32c_generic ext4)
for m in "${wanted[@]}"; do visit "$m"; done

# initramfs: busybox, the modules, an init that switches to /dev/vda.
ir=initramfs
mkdir -p $ir/bin $ir/dev $ir/proc $ir/sys $ir/newroot $ir/lib/modules
cp bb/bin/busybox $ir/bin/busybox
for m in "${order[@]}"; do cp "${path_of[$m]}" "$ir/lib/modules/$m.ko"; done
printf '%s\n' "${order[@]}" >$ir/modules.list
install -m 0755 "$here/init-initramfs" $ir/init
(cd $ir && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >initrd.img

# The root filesystem: busybox with the applets the agent and tests use.
rt=root
mkdir -p $rt/bin $rt/sbin $rt/dev $rt/proc $rt/sys $rt/tmp $rt/etc $rt/data
cp bb/bin/busybox $rt/bin/busybox
for a in sh ash cat echo printf sleep sync mount umount dmesg poweroff reboot mkdir ls head tail \
  wc grep sed awk dd od hexdump md5sum sha256sum kill stty rm cp mv uname test true false seq tr \
  cut env ps date hwclock ip ifconfig cmp sort uniq tee readlink mountpoint fsync killall setsid \
  basename; do
  ln -s busybox "$rt/bin/$a"
done
install -m 0755 "$here/init-agent" $rt/sbin/init
install -m 0755 "$here/writer" $rt/bin/writer
install -m 0755 "$here/guest-helpers" $rt/bin/guest-helpers
for h in start-writer settag halt-clean; do ln -s guest-helpers "$rt/bin/$h"; done
echo "vmsnap-linux-guest $arch $kver" >$rt/etc/vmsnap-guest
mkfs.ext4 -q -F -L vmsnap-root -d $rt root.ext4 64M >/dev/null

cp "k/boot/vmlinuz-$kver" "$out/vmlinuz"
cp initrd.img "$out/initrd.img"
cp root.ext4 "$out/root.ext4"
echo "console=$console rdinit=/init quiet loglevel=1 panic=-1 mitigations=off nokaslr tsc=reliable" >"$out/cmdline"
echo "$kver" >"$out/kernel-version"
echo "$want" >"$out/stamp"
