"""Where each host's stages run: on its execution node (`--node`, else the inventory's
`recovery_execution_node`), or on the controller when it has none or the stage's method runs from
the controller (an out-of-band reimage)."""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator import inventory as inventory_lib
from orchestrator import lifecycle
from orchestrator.errors import RefusedError
from orchestrator.node_access import Node


def nodes_for(inventory: inventory_lib.Inventory, hosts: Iterable[str], node: str | None) -> dict[str, Node]:
    """Each of `hosts`' execution node (`node` for all of them if given); a host that is its own
    node, or has none, is left out (the controller runs it). Refuses a node it cannot reach."""
    if node is not None:
        host = inventory.hosts.get(node)
        if host is None:
            raise RefusedError(f"execution node {node} is not in the inventory")
        if host.connection != "ssh":
            raise RefusedError(
                f"execution node {node} is reached over {host.connection}: a node must take SSH"
            )
    out: dict[str, Node] = {}
    for name in hosts:
        chosen = node or inventory.hosts[name].execution_node
        if chosen is not None and chosen != name:
            out[name] = Node.from_host(inventory.hosts[chosen])
    return out


def placement(
    nodes: dict[str, Node], inventory: inventory_lib.Inventory, stage: str, hosts: Iterable[str]
) -> dict[str, Node]:
    """The node each of `hosts` runs `stage` on; the hosts it leaves out run on the controller."""
    step = lifecycle.stage(stage)
    return {h: nodes[h] for h in hosts if h in nodes and not step.on_controller(inventory.hosts[h])}
