#!/usr/bin/env bash
# The Vagrant lab's life cycle, inside a network namespace this script creates: libvirtd, virtlogd, the
# lab's isolated network (its bridge and dnsmasq), every QEMU and every command that talks to the
# machines live there, so nothing of the lab appears in the machine's own namespace (no bridge, no
# route, no iptables chain) and nothing can reach outside it (no uplink, no NAT, DNS off).
#
#   scripts/vagrant-lab.sh start            namespace, daemons, network, box added (no machine yet)
#   scripts/vagrant-lab.sh up [NAME...]     start if needed, then `vagrant up` (all four by default)
#   scripts/vagrant-lab.sh exec CMD...      run CMD in the namespace (vagrant, orchestrator, pytest)
#   scripts/vagrant-lab.sh host-key NAME    publish NAME's host key (from its serial console) in known_hosts
#   scripts/vagrant-lab.sh down             destroy every machine, stop what start started, by pid
#
# Everything started is recorded in .vagrant-lab/ (pids, the namespace's name); `down` works from those
# records alone, so it can run from a trap after any failure, and again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LAB=$ROOT/.vagrant-lab
NS=orch-vagrant-lab
NETWORK=vagrant-lab
export VAGRANT_HOME=$LAB/vagrant.d VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_COLOR=1 VAGRANT_DEFAULT_PROVIDER=libvirt
export LIBVIRT_DEFAULT_URI=qemu:///system
KNOWN_HOSTS=$LAB/known_hosts

log() { echo "vagrant-lab: $*" >&2; }
in_ns() { ip netns exec "$NS" "$@"; }
machines() { ruby -e 'module Vagrant; def self.configure(*); end; end; load ARGV[0]; puts MACHINES.keys' "$ROOT/Vagrantfile"; }

network_xml() {
  # Isolated (no <forward>), DNS off, one fixed lease per machine from the Vagrantfile's table.
  local hosts
  hosts=$(ruby -e 'module Vagrant; def self.configure(*); end; end; load ARGV[0]
    MACHINES.each { |n, s| puts "      <host mac=\"#{s[:mac]}\" name=\"#{n}\" ip=\"#{s[:ip]}\"/>" }' "$ROOT/Vagrantfile")
  cat <<EOF
<network>
  <name>$NETWORK</name>
  <bridge name="vlab0" stp="off" delay="0"/>
  <dns enable="no"/>
  <ip address="192.168.56.1" netmask="255.255.255.0">
    <dhcp>
      <range start="192.168.56.100" end="192.168.56.199"/>
$hosts
    </dhcp>
  </ip>
</network>
EOF
}

lab_secrets() {
  # The lab's own: the backup repository's password and the key its restic user accepts (made once,
  # kept with the lab's state, 0600), and controller.yml naming them with this checkout's paths.
  [ -f "$LAB/restic-password" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$LAB/restic-password")
  [ -f "$LAB/backup_key" ] || ssh-keygen -q -t ed25519 -N '' -C vagrant-lab-backup -f "$LAB/backup_key"
  touch "$KNOWN_HOSTS"
  # The backup agent's key is authorized on bkp01 (restic user): the site's own key, declared to triage
  # as a pack's trusted key, as a hospital lists its administrators' and agents' keys.
  cat >"$LAB/site-pack.yml" <<EOF
pack: vagrant-lab-site
title: The Vagrant lab's own keys (written by scripts/vagrant-lab.sh)
trusted_keys: ["$(ssh-keygen -lf "$LAB/backup_key.pub" | awk '{print $2}')"]
EOF
  local ssh_args="-o UserKnownHostsFile=$KNOWN_HOSTS -o StrictHostKeyChecking=yes"
  cat >"$ROOT/inventory/vagrant/controller.yml" <<EOF
# Written by scripts/vagrant-lab.sh: this checkout's paths to the Vagrant lab's files (not in git).
all:
  vars:
    ansible_ssh_private_key_file: $LAB/private_key
    ansible_ssh_common_args: "$ssh_args"
    recovery_restic_password_file: $LAB/restic-password
    recovery_restic_options:
      - "sftp.command=ssh -i $LAB/backup_key $ssh_args -o BatchMode=yes restic@192.168.56.20 -s sftp"
    recovery_vagrant_dir: $ROOT
    recovery_vagrant_environment:
      VAGRANT_HOME: $VAGRANT_HOME
      VAGRANT_CHECKPOINT_DISABLE: "1"
      VAGRANT_DEFAULT_PROVIDER: libvirt
      LIBVIRT_DEFAULT_URI: qemu:///system
EOF
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_libvirtd() {
  # Where the processor offers no vmx/svm, /dev/kvm (here the kernel's PVM) is useless to QEMU, and it
  # costs minutes: libvirtd probes QEMU with /dev/kvm open, so its cached capabilities say "KVM", then
  # finds /dev/kvm closed to the QEMU user and throws them away: every domain definition re-probes QEMU
  # (about 50 s each, one at a time across machines; its debug log says "KVM was enabled when probing,
  # but it is not available now"). So libvirtd gets a mount namespace of its own in which /dev/kvm is
  # an empty root-only file (the probe falls back to TCG, the cache holds), and QEMU no private /dev
  # (libvirt's per-machine /dev cannot carry that file over: `namespaces = []` in its qemu.conf there).
  # Nothing changes outside the namespace, which ends with libvirtd.
  if [ -e /dev/kvm ] && ! grep -Eq '^flags[[:space:]]*:.*\b(vmx|svm)\b' /proc/cpuinfo; then
    install -m 600 /dev/null "$LAB/no-kvm"
    { cat /etc/libvirt/qemu.conf; echo "namespaces = []"; } >"$LAB/qemu.conf"
    in_ns unshare --mount --propagation private sh -c '
      mount --bind "$1" /dev/kvm && mount --bind "$2" /etc/libvirt/qemu.conf && exec libvirtd -d -p "$3"' \
      sh "$LAB/no-kvm" "$LAB/qemu.conf" "$LAB/pids/libvirtd"
  else
    in_ns libvirtd -d -p "$LAB/pids/libvirtd"
  fi
}

start() {
  mkdir -p "$LAB/console" "$LAB/pids"
  if ip netns list | grep -qw "$NS" && alive "$LAB/pids/libvirtd"; then return 0; fi
  if [ -S /run/libvirt/libvirt-sock ] && virsh -c qemu:///system version >/dev/null 2>&1 && ! alive "$LAB/pids/libvirtd"; then
    log "error: a libvirtd this script did not start is running; stop it first"; exit 2
  fi
  local box
  box=$(scripts/vagrant-box.sh | tail -1)
  echo "$(basename "$box")" >"$LAB/recipe"
  echo "orchestrator/hospital-$(cat "$LAB/recipe")" >"$LAB/box-name"
  install -m 600 "$box/private_key" "$LAB/private_key"
  install -m 644 "$box/private_key.pub" "$LAB/private_key.pub"
  lab_secrets

  ip netns list | grep -qw "$NS" || ip netns add "$NS"
  echo "$NS" >"$LAB/netns"
  ip -n "$NS" link set lo up
  in_ns virtlogd -d -p "$LAB/pids/virtlogd"
  start_libvirtd
  for _ in $(seq 50); do virsh version >/dev/null 2>&1 && break; sleep 0.2; done
  virsh net-info "$NETWORK" >/dev/null 2>&1 || virsh net-define <(network_xml) >/dev/null
  virsh net-start "$NETWORK" >/dev/null
  cp "/run/libvirt/network/$NETWORK.pid" "$LAB/pids/dnsmasq" 2>/dev/null || true
  if ! vagrant box list 2>/dev/null | grep -q "^$(cat "$LAB/box-name") "; then
    local t0=$SECONDS
    vagrant box add --force --name "$(cat "$LAB/box-name")" "$box/hospital.box" >/dev/null
    echo "$((SECONDS - t0))" >"$LAB/box-add-seconds"
  fi
  log "started: namespace $NS, libvirtd $(cat "$LAB/pids/libvirtd"), network $NETWORK (isolated, DNS off)"
}

host_key() {
  # The last key the machine printed on its serial console at boot (libvirt writes the log on the
  # controller: a channel the machine's network side cannot forge), under the machine's address.
  local name=$1 ip line deadline=$((SECONDS + 120))
  ip=$(ruby -e 'module Vagrant; def self.configure(*); end; end; load ARGV[0]; puts MACHINES.fetch(ARGV[1])[:ip]' "$ROOT/Vagrantfile" "$name")
  while :; do
    line=$(grep -ao 'vagrant-lab-host-key ssh-ed25519 [A-Za-z0-9+/=]*' "$LAB/console/$name.log" 2>/dev/null | tail -1 || true)
    [ -n "$line" ] && break
    [ $SECONDS -lt $deadline ] || { log "error: no host key on $name's console"; exit 1; }
    sleep 2
  done
  local entry key
  key=$(echo "$line" | awk '{print $2, $3}')
  echo "$key" | grep -Eq '^ssh-ed25519 [A-Za-z0-9+/=]+$' || { log "error: malformed host key on $name's console"; exit 1; }
  entry="$ip $key"
  touch "$KNOWN_HOSTS"
  (
    flock 9 # reimages run in parallel
    { grep -v "^$ip " "$KNOWN_HOSTS" || true; echo "$entry"; } >"$KNOWN_HOSTS.tmp"
    mv "$KNOWN_HOSTS.tmp" "$KNOWN_HOSTS"
  ) 9>"$KNOWN_HOSTS.lock"
}

up() {
  start
  local names=("$@") t0
  [ ${#names[@]} -gt 0 ] || mapfile -t names < <(machines)
  t0=$SECONDS
  in_ns vagrant up --provider=libvirt "${names[@]}"
  echo "${#names[@]} $((SECONDS - t0))" >>"$LAB/up-seconds"
  for name in "${names[@]}"; do host_key "$name"; done
  log "up: ${names[*]} in $((SECONDS - t0)) s; host keys in ${KNOWN_HOSTS#"$ROOT"/}"
}

stop_pid() {
  # A recorded pid, only if it is still the program we started (pids are reused).
  local file=$1 program=$2 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$program" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  [ -f "$LAB/netns" ] || [ -f "$LAB/pids/libvirtd" ] || { log "nothing to stop"; return 0; }
  if alive "$LAB/pids/libvirtd"; then
    in_ns vagrant destroy -f >/dev/null 2>&1 || log "vagrant destroy failed; removing the domains directly"
    # What a failed destroy leaves: the lab's domains (QEMU stopped, definition and disks removed).
    for domain in $(virsh list --all --name | grep '^vagrant-lab_' || true); do
      virsh destroy "$domain" >/dev/null 2>&1 || true
      virsh undefine "$domain" --remove-all-storage --nvram >/dev/null 2>&1 ||
        virsh undefine "$domain" >/dev/null 2>&1 || true
    done
    # The box's copy in libvirt's storage pool (about 800 MiB, uploaded again by the next `up` in
    # seconds): every run added one and none was ever removed.
    for volume in $(virsh vol-list default 2>/dev/null | awk '$1 ~ /^orchestrator-VAGRANTSLASH-hospital-/ {print $1}'); do
      virsh vol-delete --pool default "$volume" >/dev/null 2>&1 || true
    done
    virsh net-destroy "$NETWORK" >/dev/null 2>&1 || true
    virsh net-undefine "$NETWORK" >/dev/null 2>&1 || true
  fi
  # Every QEMU of the lab, by the pid libvirt recorded, in case libvirtd could not stop it.
  for pidfile in /run/libvirt/qemu/vagrant-lab_*.pid; do
    [ -f "$pidfile" ] && cp "$pidfile" "$LAB/pids/qemu" && stop_pid "$LAB/pids/qemu" qemu-system-x86
  done
  # vagrant-libvirt's `ssh -L` helpers (for forwarded ports; none are configured, but a Vagrantfile
  # change would start them), by the pids it recorded.
  for pidfile in "$ROOT"/.vagrant/machines/*/libvirt/pids/ssh_*.pid; do
    [ -f "$pidfile" ] && cp "$pidfile" "$LAB/pids/ssh" && stop_pid "$LAB/pids/ssh" ssh && rm -f "$pidfile"
  done
  [ -f "/run/libvirt/network/$NETWORK.pid" ] && cp "/run/libvirt/network/$NETWORK.pid" "$LAB/pids/dnsmasq"
  stop_pid "$LAB/pids/dnsmasq" dnsmasq
  stop_pid "$LAB/pids/libvirtd" libvirtd
  stop_pid "$LAB/pids/virtlogd" virtlogd
  # The namespace takes its bridge, addresses, routes and firewall chains with it.
  if [ -f "$LAB/netns" ]; then
    ip netns del "$(cat "$LAB/netns")" 2>/dev/null || true
    rm -f "$LAB/netns"
  fi
  log "down: machines destroyed, libvirtd/virtlogd/dnsmasq stopped, namespace $NS removed"
}

case "${1:-}" in
  start) start ;;
  up) shift; up "$@" ;;
  exec) shift; in_ns "$@" ;;
  host-key) host_key "$2" ;;
  down) down ;;
  *) echo "usage: $0 start | up [NAME...] | exec CMD... | host-key NAME | down" >&2; exit 2 ;;
esac
