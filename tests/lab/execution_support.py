"""Shared set-up for the execution tests: an approved plan written as the planner writes it, and a
world of local-connection hosts whose toy stage playbooks record what ran where (real ansible-playbook,
real ansible-runner, real SQLite; only the hosts are the controller itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import select

from orchestrator import inventory as inventory_lib
from orchestrator.execution.states import STAGE_ORDER
from orchestrator.store import Store
from orchestrator.store import hosts as host_store
from orchestrator.store.models import Plan, PlanMember, PlanWave, utcnow
from orchestrator.store.plans import PlanView, approval_mac
from tests.conftest import ROOT

TOY_PLAY = """---
- name: Toy {stage}
  hosts: all
  gather_facts: false
  tasks:
    - name: Record the stage
      ansible.builtin.shell: echo "{stage}{{{{ ' check' if ansible_check_mode else '' }}}}" >> "{{{{ toy_world }}}}/{{{{ inventory_hostname }}}}.log"
      changed_when: true
      check_mode: false
    - name: Look for an earlier failure
      ansible.builtin.stat:
        path: "{{{{ toy_world }}}}/{{{{ inventory_hostname }}}}.{stage}.failed"
      register: toy_failed_before
    - name: Mark a one-time failure
      ansible.builtin.file:
        path: "{{{{ toy_world }}}}/{{{{ inventory_hostname }}}}.{stage}.failed"
        state: touch
        mode: "0600"
      when: "'{stage}' in (toy_fail_once | default([]))"
      check_mode: false
    - name: Fail when told
      ansible.builtin.fail:
        msg: "toy failure of {stage}"
      when: >-
        '{stage}' in (toy_fail | default([]))
        or ('{stage}' in (toy_fail_once | default([])) and not toy_failed_before.stat.exists)
    - name: Take time when told
      ansible.builtin.command: sleep {{{{ toy_slow['{stage}'] }}}}
      changed_when: false
      check_mode: false
      when: "'{stage}' in (toy_slow | default({{}}))"
{extra}    - name: Stage done
      ansible.builtin.debug:
        msg: done
"""

COLLECT_EXTRA = """    - name: Report evidence
      ansible.builtin.copy:
        content: "{{ toy_manifest | to_json }}"
        dest: "{{ recovery_staging_dir }}/{{ inventory_hostname }}/manifest.json"
        mode: "0600"
      check_mode: false
      vars:
        toy_manifest:
          items:
            - path: /srv/note.txt
              sha256: "{{ 'ab' * 32 }}"
              size: 3
              stored_at: "{{ recovery_evidence_host }}:/x"
"""


def toy_playbooks(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ansible.cfg").write_text((ROOT / "playbooks" / "ansible.cfg").read_text())
    for stage in STAGE_ORDER:
        extra = COLLECT_EXTRA if stage == "collect" else ""
        (directory / f"{stage}.yml").write_text(TOY_PLAY.format(stage=stage, extra=extra))
    return directory


def toy_inventory(directory: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    """hosts: name -> extra vars (toy_fail, toy_fail_once, toy_slow: {stage: seconds}, recovery_depends_on,
    recovery_protected, group)."""
    directory.mkdir(parents=True, exist_ok=True)
    world = directory / "world"
    world.mkdir(exist_ok=True)
    groups: dict[str, dict[str, Any]] = {}
    for i, (name, extra) in enumerate(hosts.items()):
        extra = dict(extra)
        group = extra.pop("group", "servers_toy")
        host_vars = {"ansible_host": f"127.0.0.{i + 2}", **extra}
        groups.setdefault(group, {"hosts": {}})["hosts"][name] = host_vars
    inv = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": str(Path(__import__("sys").executable)),
                "toy_world": str(world),
                "recovery_restore_method": "none",
            },
            "children": groups,
        }
    }
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return path


def approved_plan(
    store: Store,
    inventory: Path,
    members: list[tuple[str, str, int | None]],
    params: dict[str, Any] | None = None,
) -> int:
    """Sync the inventory and write an approved plan: (host, action, wave) per member."""
    inv = inventory_lib.load([str(inventory)])
    with store.write() as session:
        host_store.sync(session, inv.hosts.values())
        plan = Plan(
            created_by="tester",
            status="approved",
            approved_by="tester",
            approved_at=utcnow(),
            params=params or {},
        )
        session.add(plan)
        session.flush()
        for number in sorted({w for _, _, w in members if w is not None}):
            session.add(PlanWave(plan_id=plan.id, number=number, tier=0))
        for host, action, wave in members:
            session.add(PlanMember(plan_id=plan.id, host_name=host, action=action, wave=wave, reason="test"))
        session.flush()
        waves = list(session.exec(select(PlanWave).where(PlanWave.plan_id == plan.id)))
        rows = list(session.exec(select(PlanMember).where(PlanMember.plan_id == plan.id)))
        plan.approved_hash = plan.content_hash = PlanView(plan, waves, rows).content_hash()
        plan.approval_mac = approval_mac(session, plan, create=True)
        session.add(plan)
    return int(plan.id or 0)


def stages_run(inventory: Path, host: str) -> list[str]:
    log = inventory.parent / "world" / f"{host}.log"
    return log.read_text().split("\n")[:-1] if log.exists() else []


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
