"""The rehearsal kit, beside the product: the local lab of real OpenSSH hosts on loopback (and WinRM
stand-ins for Windows), with LockBit scenarios, restic backups and golden images, for rehearsing a
recovery and for the tests. It imports nothing of the product but its errors.

    from orchestrator_lab import LabConfig, up, status, reimage, down, load_manifest
    manifest = up(LabConfig(dir=Path("lab-data"), hosts=12, seed=7))

See docs/lab.md: `manifest.json` is the ground truth, `inventory/` the Ansible
inventory, `known_hosts` the trusted channel for host keys.
"""

from orchestrator_lab.control import down, free_net, leftovers, reimage, status, up
from orchestrator_lab.ground_truth import Manifest, load_manifest
from orchestrator_lab.settings import LabConfig
from orchestrator_lab.vagrant_seed import seed as infect_vagrant

__all__ = [
    "LabConfig",
    "Manifest",
    "down",
    "free_net",
    "infect_vagrant",
    "leftovers",
    "load_manifest",
    "reimage",
    "status",
    "up",
]
