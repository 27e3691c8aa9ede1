"""`orchestrator triage agent`: the node's side of a triage through an execution node.

The controller starts it over SSH (node_access.Node.triage_command) and writes one request on its stdin
(node_request): the site's hosts, the packs, the settings. The agent runs the product's own engine on
them, with the same transports, bounds and hostile-host handling as a local triage, and writes one
JSON line per host on stdout as each finishes (node_results), then an end marker: a stream that stops
before the marker tells the controller that the node was lost. Nothing is written on the node's disk.
"""

from __future__ import annotations

from typing import BinaryIO

from orchestrator.triage import node_request, node_results
from orchestrator.triage.engine import HostResult, Triage


def serve(stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Read the request, check its hosts, stream the results; the number of results written."""
    data = stdin.read(node_request.MAX_REQUEST + 1)
    if len(data) > node_request.MAX_REQUEST:
        raise node_request.RequestError(f"the request is over {node_request.MAX_REQUEST} bytes")
    request = node_request.decode(data)
    triage = Triage(request.hosts, request.packs, request.settings)
    triage.started = request.started  # `age_days` from the controller's start, as for its local hosts
    triage.trusted_keys |= request.trusted_keys  # the run's own login keys are ours here too
    sent = 0

    def send(result: HostResult) -> None:  # called in this thread, one host at a time
        nonlocal sent
        stdout.write(node_results.encode(result))
        stdout.flush()  # each host as it finishes: the controller stores it at once
        sent += 1

    triage.run(send)
    stdout.write(node_results.encode_done(sent))
    stdout.flush()
    return sent
