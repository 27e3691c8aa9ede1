"""Fixtures of the lab tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.node_support import HOSTS, NODES, SEED


@pytest.fixture(scope="module")
def site_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A lab of two sites, each behind its execution node (see `node_support`): the test module's own,
    taken down after its last test."""
    from orchestrator_lab import LabConfig, down, free_net, up

    directory = tmp_path_factory.mktemp("sitelab") / "lab"
    up(LabConfig(dir=directory, hosts=HOSTS, nodes=NODES, seed=SEED, net=free_net()))
    try:
        yield directory
    finally:
        down(directory)
