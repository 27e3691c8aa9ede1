"""The inventory cache never reads a file another user owns (one could plant hosts and passwords in
it): handing the file to another uid takes root, hence a lab test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.test_inventory_cache import Env, write


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_cache_file_owned_by_another_user_is_ignored_and_replaced(tmp_path: Path) -> None:
    env = Env(tmp_path)
    write(env.inv, "hosts.yml", "all:\n  hosts:\n    w1: {ansible_host: 127.61.0.1, recovery_tier: 2}\n")
    assert env.show()["w1"]["tier"] == 2
    [cached] = env.cache_files()
    planted = cached.read_text().replace('"tier":2', '"tier":0')
    cached.write_text(planted)
    os.chown(cached, 4321, 4321)
    assert env.show()["w1"]["tier"] == 2  # loaded from the inventory, not from the planted file
    assert cached.stat().st_uid == os.geteuid() and '"tier":2' in cached.read_text()
