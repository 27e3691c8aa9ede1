"""No secret leaves memory: a password and a private key planted in inventory variables and in the
environment go through triage, plan and run on the lab, then the database, runner artifacts, logs and
reports are searched for them byte by byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator_lab import load_manifest
from tests.conftest import Cli

pytestmark = pytest.mark.lab

PASSWORD = "Pl4nted-S3cret-Passw0rd"
ENV_PASSWORD = "Env-T0ken-Never-St0red"
KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"


def test_planted_secrets_appear_nowhere(lab: Any, tmp_path: Path) -> None:
    manifest = load_manifest(lab.dir)
    clean = [
        h["name"]
        for h in manifest["hosts"]
        if h["os"] == "linux" and h["scenario"]["expected_verdict"] == "clean" and not h.get("reimages")
    ][:2]
    evid = next(h["name"] for h in manifest["hosts"] if h["group"] == "evidence_store")
    assert len(clean) == 2, "the session lab has clean Linux hosts"
    selection = ":".join([*clean, evid])

    # Secrets as an inventory carries them: a become password in the clear, a private key, and a
    # password read from the environment by an Ansible lookup.
    key = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----"
    extra = tmp_path / "secrets.yml"
    extra.write_text(
        "all:\n  vars:\n"
        f"    ansible_become_password: {PASSWORD}\n"
        f"    recovery_backup_private_key: {json.dumps(key)}\n"
        "    recovery_api_password: \"{{ lookup('env', 'RECOVERY_API_PASSWORD') }}\"\n"
    )
    env = {**lab.env(), "RECOVERY_API_PASSWORD": ENV_PASSWORD}
    cli = Cli(tmp_path / "recovery.db")
    runs = tmp_path / "runs"
    inv = ["-i", str(lab.inventory), "-i", str(extra)]
    outputs = []

    def step(*args: str, ok: tuple[int, ...] = (0,)) -> str:
        result = cli(*args, env=env)
        outputs.append(result.stdout + result.stderr)
        assert result.exit_code in ok, result.output + result.stderr
        return result.stdout

    step("triage", *inv, "-l", selection, "--timeout", "20")
    step("plan", *inv, "-l", selection)
    step("plan", "approve", "--by", "tester")
    step("run", *inv, "--all", "--yes", "--runs-dir", str(runs))
    status = json.loads(step("status", "--json"))
    # the secrets went through a real run: both clean hosts verified (the evidence store is "protected")
    assert status["by_category"]["recovered"] == 2, status["by_category"]
    for host in [*clean, evid]:
        step("status", host, "--json")
        step("triage", "show", host, "--json")
    step("audit", "show", "--json")
    for fmt in ("html", "csv", "json"):
        step("report", "--format", fmt, "-o", str(tmp_path / f"report.{fmt}"))

    searched = [p for p in tmp_path.rglob("*") if p.is_file() and p != extra]
    searched += [p for p in (lab.dir / "logs").rglob("*") if p.is_file()]
    assert any(p.name == "recovery.db" for p in searched) and any(p.suffix == ".html" for p in searched)
    assert any("artifacts" in p.parts for p in searched), "the run kept its ansible-runner artifacts"
    secrets = [PASSWORD, ENV_PASSWORD, KEY_BODY]
    leaks = [(str(p), s) for p in searched for s in secrets if s.encode() in p.read_bytes()] + [
        ("cli output", s) for text in outputs for s in secrets if s in text
    ]
    assert leaks == []
