#!/usr/bin/env bash
# Builds the Vagrant lab's Debian 12 box (libvirt provider) offline from Debian's mirror, from Debian
# packages only: debootstrap, a raw disk filled with `mkfs.ext4 -d` (no loop device, no mount), GRUB
# written in by hand, qcow2. A vagrant user with a key generated here, and the project's golden images
# (orchestrator_lab/vagrant_images.py) for each role, laid down by the Vagrantfile at every `vagrant up`.
#
# Cached under $ORCHESTRATOR_CACHE (default ~/.cache/orchestrator)/vagrant/<recipe hash>/: the hash
# covers this script and every file the images are made from, so a change to the recipe rebuilds it.
# Prints the cache directory (hospital.box, private_key, build-seconds) on its last line.
#
# Usage: scripts/vagrant-box.sh [--print-dir]   (--print-dir: only print where the box would be)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PACKAGES=systemd-sysv,udev,dbus,linux-image-amd64,openssh-server,sudo,python3,restic,procps,iproute2,nftables,cron,kmod,less

recipe_files=(scripts/vagrant-box.sh orchestrator_lab/vagrant_images.py orchestrator_lab/images.py
  orchestrator_lab/catalog.py orchestrator_lab/data/catalog.yml orchestrator_lab/data/templates)
recipe=$( { echo "$MIRROR $SUITE $PACKAGES"; find "${recipe_files[@]}" -type f -print0 | sort -z |
  xargs -0 sha256sum; } | sha256sum | cut -c1-16)
cache=${ORCHESTRATOR_CACHE:-$HOME/.cache/orchestrator}/vagrant/$recipe
if [ "${1:-}" = "--print-dir" ]; then echo "$cache"; exit 0; fi
if [ -f "$cache/hospital.box" ]; then echo "box up to date: $cache"; echo "$cache"; exit 0; fi

for tool in debootstrap sfdisk mkfs.ext4 grub-mkimage qemu-img ssh-keygen; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (make vagrant-deps)" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "error: debootstrap needs root" >&2; exit 2; }

mkdir -p "$(dirname "$cache")"
work=$(mktemp -d "$(dirname "$cache")/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
start=$(date +%s)

# debootstrap's result is kept by package list: a change elsewhere in the recipe reuses it.
base=$(dirname "$cache")/debootstrap-$(echo "$MIRROR $SUITE $PACKAGES" | sha256sum | cut -c1-16).tar
mkdir -p "$rootfs"
if [ -f "$base" ]; then
  echo "debootstrap: reusing $base"
  tar -C "$rootfs" -xpf "$base"
else
  echo "debootstrap $SUITE from $MIRROR"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  tar -C "$rootfs" -cpf "$base.tmp" . && mv "$base.tmp" "$base"
fi
t_debootstrap=$(($(date +%s) - start))

# --- the system inside -------------------------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C "vagrant-lab-$recipe" -f "$work/private_key"
pubkey=$(cat "$work/private_key.pub")

chroot "$rootfs" /bin/sh -eu <<EOF
useradd --create-home --shell /bin/bash vagrant
install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
echo '$pubkey' > /home/vagrant/.ssh/authorized_keys
chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys && chmod 600 /home/vagrant/.ssh/authorized_keys
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/vagrant && chmod 440 /etc/sudoers.d/vagrant
passwd -l root >/dev/null
# Nothing in the guest reaches out: no timers, no time sync, no apt runs.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
    man-db.timer logrotate.timer systemd-timesyncd.service getty@tty1.service; do
  ln -sf /dev/null /etc/systemd/system/\$unit
done
systemctl enable systemd-networkd.service >/dev/null 2>&1
# Under TCG every unit and every module costs emulated CPU, shared by four machines on two cores:
# nothing here needs DRM, FUSE, loop devices, device mapper, pstore, binfmt, debugfs, hugepages or
# ext4 scrubbing. (Boot-time measures: systemd-analyze blame on a lab machine.)
for unit in modprobe@drm.service modprobe@fuse.service modprobe@loop.service modprobe@dm_mod.service \
    modprobe@efi_pstore.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
    sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount e2scrub_reap.service; do
  ln -sf /dev/null /etc/systemd/system/\$unit
done
# The initramfs holds what this virtual machine boots from (virtio disk, ext4), not every storage
# driver Debian ships (MODULES=most: 36 MiB, which GRUB reads and the kernel unpacks under emulation).
sed -i 's/^MODULES=.*/MODULES=list/' /etc/initramfs-tools/initramfs.conf
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>/etc/initramfs-tools/modules
update-initramfs -u -k all >/dev/null 2>&1
apt-get clean
EOF

# Each clone gets its own identity: machine id and host keys made at first boot.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs"/var/lib/dbus/machine-id "$rootfs"/etc/ssh/ssh_host_*
# The host key is also written to the serial console at every boot: the console log, kept by libvirt on
# the controller, is the trusted channel its known_hosts entry is published from (scripts/vagrant-lab.sh).
cat >"$rootfs/etc/systemd/system/ssh-host-keys.service" <<'EOF'
[Unit]
Description=SSH host keys of this clone (made at its first boot), shown on the serial console
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
ExecStart=/bin/sh -c 'echo "vagrant-lab-host-key $(cat /etc/ssh/ssh_host_ed25519_key.pub)" >/dev/ttyS0'

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/ssh-host-keys.service "$rootfs/etc/systemd/system/multi-user.target.wants/"
# DHCP on whatever NIC there is, the client id from the MAC (clones must not share a lease), no DNS.
cat >"$rootfs/etc/systemd/network/50-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
ClientIdentifier=mac
UseDNS=no
UseNTP=no
UseDomains=no
EOF
: >"$rootfs/etc/resolv.conf"
echo "vagrant-box" >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n' >"$rootfs/etc/hosts"
echo "/dev/vda1 / ext4 errors=remount-ro 0 1" >"$rootfs/etc/fstab"
"$PYTHON" -m orchestrator_lab.vagrant_images "$rootfs" "$work/private_key.pub"

# --- GRUB, by hand: boot.img in the MBR, the core image right after it -------------------------------
kernel=$(cd "$rootfs/boot" && ls vmlinuz-* | sort -V | tail -1)
initrd=$(cd "$rootfs/boot" && ls initrd.img-* | sort -V | tail -1)
mkdir -p "$rootfs/boot/grub/i386-pc"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$rootfs/boot/grub/i386-pc/"
# mitigations=off: the lab machine runs nothing but the rehearsal, and under TCG the speculation
# workarounds (return thunks, barriers) are pure emulated overhead on every system call.
cat >"$rootfs/boot/grub/grub.cfg" <<EOF
set timeout=0
set default=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
menuentry "Debian 12 (vagrant lab)" {
  linux /boot/$kernel root=/dev/vda1 ro console=ttyS0,115200 net.ifnames=0 quiet mitigations=off
  initrd /boot/$initrd
}
EOF

# --- the disk: MBR, one ext4 partition from 1 MiB, filled from the tree ------------------------------
size_mib=10240
disk=$work/disk.raw
truncate -s "${size_mib}M" "$disk"
echo 'start=2048, type=83, bootable' | sfdisk -q "$disk"
mkfs.ext4 -q -F -L root -O ^orphan_file,^metadata_csum_seed -E offset=$((2048 * 512)) -d "$rootfs" \
  "$disk" "$((size_mib - 1))M"
grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 normal linux configfile serial terminal echo test gzio
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ "$core_sectors" -lt 2047 ] || { echo "error: GRUB core image too large" >&2; exit 1; }
dd if=/usr/lib/grub/i386-pc/boot.img of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$disk" bs=512 seek=1 conv=notrunc status=none

# --- the box -----------------------------------------------------------------------------------------
mkdir "$work/box"
qemu-img convert -O qcow2 "$disk" "$work/box/box.img"
rm -f "$disk"
echo '{"provider":"libvirt","format":"qcow2","virtual_size":10}' >"$work/box/metadata.json"
cat >"$work/box/Vagrantfile" <<'EOF'
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = "qemu"
    libvirt.disk_bus = "virtio"
  end
end
EOF
tar -C "$work/box" -cf "$work/hospital.box" metadata.json box.img Vagrantfile

mkdir -p "$cache"
mv "$work/private_key" "$work/private_key.pub" "$cache/"
total=$(($(date +%s) - start))
printf 'debootstrap %s\ntotal %s\n' "$t_debootstrap" "$total" >"$cache/build-seconds"
mv "$work/hospital.box" "$cache/hospital.box" # last: its presence means the cache entry is complete
# Boxes of older recipes are dead weight (about 800 MiB each).
for old in "$(dirname "$cache")"/????????????????; do
  [ "$old" = "$cache" ] || [ ! -f "$old/hospital.box" ] || rm -rf "$old"
done
echo "box built in ${total}s (debootstrap ${t_debootstrap}s): $cache"
echo "$cache"
