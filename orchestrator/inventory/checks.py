"""Checks across hosts: dependencies and their cycles, execution nodes, duplicate addresses."""

from __future__ import annotations

import graphlib

from orchestrator.inventory.model import Host, Problem
from orchestrator.inventory.origins import value_origin


def host_source(host: Host) -> str | None:
    """The inventory file that defined the host (Ansible sets `inventory_file` on every host)."""
    source = host.vars.get("inventory_file")
    return str(source) if source else None


def _where(host: Host, var: str) -> str | None:
    return value_origin(host.vars.get(var)) or host_source(host)


def resolve_dependencies(hosts: dict[str, Host], groups: dict[str, list[str]]) -> list[Problem]:
    """Expand group dependencies to hosts, report unknown names, then every dependency cycle."""
    problems: list[Problem] = []
    for host in hosts.values():
        resolved: list[str] = []
        seen: set[str] = set()
        for dep in host.depends_on:
            if dep in hosts:
                targets = [dep]
            elif dep in groups:
                targets = [h for h in groups[dep] if h != host.name]
            else:
                problems.append(
                    Problem(
                        f"unknown dependency {dep!r} (no such host or group)",
                        host=host.name,
                        where=_where(host, "recovery_depends_on"),
                    )
                )
                continue
            for target in targets:  # a set beside the list: a group of thousands stays linear
                if target not in seen:
                    seen.add(target)
                    resolved.append(target)
        host.depends_on_hosts = resolved
    for cycle in find_cycles({h.name: h.depends_on_hosts for h in hosts.values()}):
        first = hosts[cycle[0]]
        problems.append(
            Problem(
                f"dependency cycle: {' -> '.join(cycle)}",
                host=first.name,
                where=_where(first, "recovery_depends_on"),
            )
        )
    return problems


def find_cycles(graph: dict[str, list[str]], limit: int = 20) -> list[list[str]]:
    """Distinct dependency cycles (each as a closed path), found by graphlib one at a time: report a
    cycle, cut one of its edges, look again, so one bad edge never hides another."""
    edges = {node: set(deps) for node, deps in graph.items()}
    cycles: list[list[str]] = []
    while len(cycles) < limit:
        try:
            graphlib.TopologicalSorter({n: sorted(d) for n, d in edges.items()}).prepare()
            break
        except graphlib.CycleError as exc:
            # graphlib lists each node before the one that depends on it; reversed, every node is
            # followed by what it depends on, which is how an operator reads "a -> b".
            path = list(reversed(exc.args[1]))
            cycles.append(path)
            edges[path[0]].discard(path[1])
    return cycles


def check_execution_nodes(hosts: dict[str, Host]) -> list[Problem]:
    """A node is reached over SSH like any Linux host of the inventory, and runs playbooks itself: it
    cannot hand its own stages to another node (a chain would hide which machine touched a host)."""
    problems = []
    for host in hosts.values():
        node_name = host.execution_node
        if node_name is None:
            continue
        node = hosts.get(node_name)
        if node is None:
            message = (
                f"unknown execution node {node_name!r} (recovery_execution_node names an inventory host)"
            )
        elif node.name == host.name:
            message = "recovery_execution_node names the host itself: leave it unset on the node"
        elif node.connection != "ssh":
            message = f"execution node {node_name} is reached over {node.connection}: a node must take SSH"
        elif node.execution_node is not None:
            message = f"execution node {node_name} has an execution node of its own ({node.execution_node})"
        else:
            continue
        problems.append(Problem(message, host=host.name, where=_where(host, "recovery_execution_node")))
    return problems


def duplicate_addresses(hosts: dict[str, Host]) -> list[Problem]:
    """Two hosts on one address and port are one machine recovered twice (or a copy-paste slip)."""
    seen: dict[tuple[str, int | None], str] = {}
    problems = []
    for host in hosts.values():
        key = (host.address, host.port)
        if key in seen:
            shown = host.address + (f":{host.port}" if host.port else "")
            problems.append(
                Problem(
                    f"same address {shown} as host {seen[key]}",
                    host=host.name,
                    where=_where(host, "ansible_host"),
                )
            )
        else:
            seen[key] = host.name
    return problems
