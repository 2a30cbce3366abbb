#!/bin/bash
# mmdebstrap customize hook of make-pi-base.sh: turn the Debian arm64 tree ($1) into a Raspberry Pi
# OS Lite-shaped root file system (bookworm conventions, docs/raspios.md; disk id $2).
set -euo pipefail
root=$1 disk_id=$2
base=$(dirname "$(readlink -f "$0")")/base

# The initramfs, once, with what a virt machine needs to find its root (virtio disk on PCI, ext4).
rm "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -c -k all >/dev/null

# The first user, as pi-gen makes it: pi (uid 1000), locked until userconf.txt names it.
for group in gpio i2c spi netdev render input; do chroot "$root" groupadd -f "$group"; done
chroot "$root" useradd -m -u 1000 -s /bin/bash \
  -G adm,dialout,cdrom,sudo,audio,video,plugdev,games,users,input,render,netdev,gpio,i2c,spi pi
chroot "$root" passwd -q -l pi
echo 'pi ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/010_pi-nopasswd"
chmod 0440 "$root/etc/sudoers.d/010_pi-nopasswd"

echo raspberrypi >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\n127.0.1.1\traspberrypi\n' \
  >"$root/etc/hosts"
cat >"$root/etc/fstab" <<FSTAB
proc            /proc           proc    defaults          0       0
PARTUUID=$disk_id-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=$disk_id-02  /               ext4    defaults,noatime  0       1
FSTAB
mkdir -p "$root/boot/firmware"
# A Pi's on-board Ethernet is eth0 (Raspberry Pi OS keeps the kernel's names).
mkdir -p "$root/etc/systemd/network"
ln -sf /dev/null "$root/etc/systemd/network/99-default.link"
echo "Raspberry Pi reference 2024-11-19 (swarmcard boot proof: Debian bookworm arm64 packages)" \
  >"$root/etc/rpi-issue"

# Stand-ins for raspberrypi-sys-mods and userconf-pi (docs/boot-proof.md).
install -D -m 0755 "$base/firstboot" "$root/usr/lib/raspberrypi-sys-mods/firstboot"
install -D -m 0755 "$base/userconf-service" "$root/usr/lib/userconf-pi/userconf-service"
for unit in userconfig sshswitch regenerate_ssh_host_keys boot-proof-images; do
  install -m 0644 "$base/$unit.service" "$root/usr/lib/systemd/system/$unit.service"
done
systemctl --root="$root" --quiet enable userconfig sshswitch regenerate_ssh_host_keys boot-proof-images
# SSH is off until the boot partition has an `ssh` file, as on Raspberry Pi OS.
systemctl --root="$root" --quiet disable ssh.service

# The boot proof's application image: busybox (arm64, static) as a tar for `docker import`.
image=$(mktemp -d)
mkdir -p "$image/bin" "$image/www"
cp "$root/bin/busybox" "$image/bin/busybox"
ln -s busybox "$image/bin/sh"
mkdir -p "$root/usr/share/boot-proof"
tar -C "$image" -cf "$root/usr/share/boot-proof/httpd.tar" .
rm -rf "$image"

# No RTC on a Pi: timesyncd starts the clock from this file's time (never before the build).
mkdir -p "$root/var/lib/systemd/timesync"
touch "$root/var/lib/systemd/timesync/clock"

# Clone hygiene as on a released image (docs/raspios.md #6).
rm -f "$root"/etc/ssh/ssh_host_* "$root/var/lib/dbus/machine-id"
: >"$root/etc/machine-id"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
