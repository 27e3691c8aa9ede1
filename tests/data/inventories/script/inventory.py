#!/usr/bin/env python3
"""A dynamic inventory script (CMDB export shape): --list with _meta.hostvars."""

import json
import sys

INVENTORY = {
    "linux": {"hosts": ["cmdb-a", "cmdb-b"], "vars": {"ansible_user": "cmdb"}},
    "tier1": {"hosts": ["cmdb-a"], "vars": {"recovery_tier": 1}},
    "_meta": {
        "hostvars": {
            "cmdb-a": {"ansible_host": "127.0.0.61"},
            "cmdb-b": {"ansible_ssh_host": "127.0.0.62", "ansible_ssh_port": 2262},
        }
    },
}

if sys.argv[1:] == ["--list"]:
    print(json.dumps(INVENTORY))
else:
    print(json.dumps({}))
