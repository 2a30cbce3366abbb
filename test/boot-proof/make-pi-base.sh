#!/bin/bash
# Build the boot proof's base image: a Raspberry Pi OS Lite-shaped (bookworm, arm64) MBR image from
# Debian packages only (docs/boot-proof.md): a FAT32 `bootfs` with kernel, initramfs, config.txt and
# cmdline.txt, and an ext4 `rootfs` with systemd, NetworkManager, openssh-server, sudo, Docker and
# small stand-ins for Raspberry Pi OS's first-boot units (base/). Needs root, mmdebstrap, and
# qemu-user-static registered with binfmt_misc for arm64.
#   make-pi-base.sh OUT.img WORKDIR    (WORKDIR: empty, removed by the caller)
set -euo pipefail
out=$1 work=$2
here=$(dirname "$(readlink -f "$0")")
mirror=${SWARMCARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The disk id of the base; swarmcard gives every node its own.
disk_id=4e5cd402
rootfs=$work/rootfs

packages=(
  systemd-sysv udev dbus kmod systemd-timesyncd openssh-server network-manager sudo iproute2
  iputils-ping procps linux-image-arm64 initramfs-tools docker.io busybox-static
)
# update-initramfs would run once per package that triggers it: divert it until the end. The hooks
# are run by mmdebstrap with the tree as $1.
# shellcheck disable=SC2016
mmdebstrap --variant=minbase --architectures=arm64 --mode=root --format=directory \
  --aptopt='APT::Install-Recommends "false"' \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs' \
  --essential-hook='ln -s /bin/true "$1/usr/sbin/update-initramfs"' \
  --customize-hook="\"$here/customize-pi-base.sh\" \"\$1\" $disk_id" \
  bookworm "$rootfs" "$mirror"

# The boot partition, as the Pi firmware reads it: config.txt names the kernel and the initramfs.
boot=$work/boot
mkdir -p "$boot"
cp "$rootfs"/boot/vmlinuz-* "$boot/vmlinuz"
cp "$rootfs"/boot/initrd.img-* "$boot/initrd.img"
cat >"$boot/config.txt" <<CONFIG
# For more options and information see
# http://rptl.io/configtxt

# Automatically load initramfs files, if found
auto_initramfs=1

# Run in 64-bit mode
arm_64bit=1
# The boot proof's Debian kernel and its initramfs (Raspberry Pi OS names them kernel8.img and
# initramfs8, found by auto_initramfs)
kernel=vmlinuz
initramfs initrd.img followkernel

[cm5]
dtoverlay=dwc2,dr_mode=host

CONFIG
echo "console=serial0,115200 console=tty1 root=PARTUUID=$disk_id-02 rootfstype=ext4 fsck.repair=yes rootwait" \
  "quiet init=/usr/lib/raspberrypi-sys-mods/firstboot" >"$boot/cmdline.txt"
echo "Raspberry Pi reference 2024-11-19 (swarmcard boot proof: Debian bookworm arm64 packages)" \
  >"$boot/issue.txt"

# Raspberry Pi OS's layout: bootfs at 4 MiB (512 MiB FAT32, pi-gen's mkdosfs -s 4), rootfs after it.
boot_mib=512 root_mib=2560
truncate -s "$((4 + boot_mib + root_mib))M" "$out.partial"
sfdisk --quiet "$out.partial" <<TABLE
label: dos
label-id: 0x$disk_id
start=8192, size=$((boot_mib * 2048)), type=c
start=$(((4 + boot_mib) * 2048)), type=83
TABLE
truncate -s "${boot_mib}M" "$work/boot.fat"
mkfs.vfat -F 32 -s 4 -n bootfs "$work/boot.fat" >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -i "$work/boot.fat" "$boot"/* ::/
mkfs.ext4 -q -L rootfs -O ^64bit,^huge_file -d "$rootfs" "$work/root.ext4" "${root_mib}M"
dd if="$work/boot.fat" of="$out.partial" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$out.partial" bs=1M seek=$((4 + boot_mib)) conv=notrunc,sparse status=none
mv "$out.partial" "$out"
