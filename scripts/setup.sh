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
  socat
  # disks: qemu-img for overlays; the Linux test guest (tests/linux-guest/build-guest.sh)
  # is built with apt-get download + dpkg-deb, cpio and mkfs.ext4, checked with e2fsck.
  qemu-utils cpio e2fsprogs
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# gcc -m32 for the freestanding test guest needs no multilib: the guest is
# built -ffreestanding -nostdlib, so only the compiler and binutils are used.
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
