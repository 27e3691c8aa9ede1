"""A collection inventory plugin (a CMDB export kept as the plugin's configuration), for the corpus."""

from __future__ import annotations

from ansible.plugins.inventory import BaseInventoryPlugin

DOCUMENTATION = r"""
name: static_list
short_description: Hosts listed in the plugin's configuration file
description: Hosts and their addresses from a CMDB export kept as a plugin configuration.
options:
  plugin:
    description: The name of this plugin.
    required: true
    choices: ["corpus.cmdb.static_list"]
  group:
    description: The group every host joins.
    type: str
    default: cmdb
  hosts:
    description: Host names and their addresses.
    type: dict
    default: {}
"""


class InventoryModule(BaseInventoryPlugin):
    NAME = "corpus.cmdb.static_list"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith((".cmdb.yml", ".cmdb.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        group = inventory.add_group(self.get_option("group"))
        for name, address in self.get_option("hosts").items():
            inventory.add_host(name, group=group)
            inventory.set_variable(name, "ansible_host", address)
