#!/usr/bin/env bash
# Installs the Debian packages the lab, the tests and the demo need, only those missing.
# Runs apt-get as root, or through sudo; says exactly what is missing when it can do neither.
# With --vagrant: what the Vagrant lab needs instead (docs/vagrant.md).
set -euo pipefail

packages=(
  openssh-server openssh-client   # the local lab's hosts and the OpenSSH baseline
  restic                          # backups and restores, for real
  util-linux iproute2 procps      # unshare/nsenter (namespaces), ip, ps/pgrep
  sudo                            # triage with ansible_become (tested)
  busybox                         # triage on hosts with busybox tools (tested)
  sqlite3                         # inspecting the state database by hand
  postgresql                      # the shared state store, tested for real
  vagrant                         # 'vagrant validate' of the Vagrant lab
  chromium                        # renders the HTML report in tests
)

if [ "${1:-}" = "--vagrant" ]; then
  packages=(
    qemu-system-x86 qemu-utils                  # the VMs (TCG, or KVM where the processor offers it)
    libvirt-daemon-system libvirt-clients       # libvirtd, virtlogd, virsh
    vagrant vagrant-libvirt dnsmasq-base        # Vagrant, its libvirt provider, the lab network's DHCP
    debootstrap grub-pc-bin grub2-common fdisk e2fsprogs  # the box, built offline
    iproute2 openssh-client restic ruby
  )
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "error: missing Debian packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
  exit 2
fi

echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
