#!/usr/bin/env bash
# Install every build and test dependency of vmsnap from Debian's archive.
# Idempotent and non-interactive; run as root (or with sudo available).
set -euo pipefail

packages=(
  build-essential pkg-config meson ninja-build
  libglib2.0-dev libjson-glib-dev
  libprotobuf-c-dev protobuf-c-compiler
  liburing-dev
  libssl-dev
  qemu-system-x86
  qemu-system-arm gcc-aarch64-linux-gnu
  socat
  # disks: qemu-img for overlays; the Linux test guest (tests/linux-guest/build-guest.sh)
  # is built with apt-get download + dpkg-deb, cpio and mkfs.ext4, checked with e2fsck.
  qemu-utils cpio e2fsprogs
  # push/pull (plugin/registry) and its tests and benchmark
  libcurl4-openssl-dev libzstd-dev docker-registry apache2-utils skopeo zstd
  # tests/libvirt: a private session-mode libvirtd; vmsnap's --libvirt
  # commands drive virsh and edit domain XML with libxml2 (doc/libvirt.md).
  libvirt-daemon-system libvirt-clients libxml2-dev
  # the Debian package (debian/), built and installed by CI
  debhelper dpkg-dev fakeroot
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# gcc -m32 for the freestanding test guest needs no multilib: the guest is
# built -ffreestanding -nostdlib, so only the compiler and binutils are used.
# qemu-system-arm (qemu-system-aarch64) and gcc-aarch64-linux-gnu: the
# aarch64 build of the same guest and its integration test (test-aarch64).
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all dependencies present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
