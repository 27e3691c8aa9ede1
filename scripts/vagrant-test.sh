#!/usr/bin/env bash
# `make test-vagrant` (the last step of `make test`; docs/vagrant.md): the Debian packages, the
# box (built or reused from the cache), the four machines booted, the rehearsal test run against them
# inside the lab's network namespace, and everything destroyed and stopped again, by a trap that also
# runs when a step fails or the job is interrupted. Prints the figures bench/vagrant.py reads.
set -euo pipefail
cd "$(dirname "$0")/.."

cleanup() {
  local rc=$?
  scripts/vagrant-lab.sh down || rc=1
  # Nothing of the lab may outlive it: no namespace, no domain, no QEMU, no libvirt daemon.
  if ip netns list | grep -qw orch-vagrant-lab || [ -n "$(virsh -c qemu:///system list --all --name 2>/dev/null | grep '^vagrant-lab')" ]; then
    echo "vagrant-test: the lab was not fully removed" >&2
    rc=1
  fi
  exit $rc
}

./scripts/install-system-deps.sh --vagrant
scripts/vagrant-lab.sh down # what an interrupted earlier run left behind, if anything
trap cleanup EXIT
trap 'exit 130' INT TERM
t0=$SECONDS
scripts/vagrant-box.sh | tail -1
echo "vagrant-test: box ready in $((SECONDS - t0)) s"
t0=$SECONDS
scripts/vagrant-lab.sh up
echo "vagrant-test: 4 machines up in $((SECONDS - t0)) s"
t0=$SECONDS
ORCHESTRATOR_VAGRANT_LAB=1 ORCHESTRATOR_NO_SKIP=1 \
  scripts/vagrant-lab.sh exec .venv/bin/pytest tests/lab/test_vagrant_rehearsal.py -x -q -p no:cacheprovider
echo "vagrant-test: rehearsal in $((SECONDS - t0)) s"
.venv/bin/python bench/vagrant.py
