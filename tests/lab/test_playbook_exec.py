"""The playbook supervisor: when the orchestrator is killed, nothing of its playbook goes on, not even
Ansible's workers, which leave the process group (setsid). Real ansible-playbook, local connection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from orchestrator.execution import playbook_exec
from orchestrator.execution.runner import ansible_playbook_path

PLAY = """\
- name: A task that outlives its orchestrator unless stopped
  hosts: all
  gather_facts: false
  tasks:
    - name: Start, then finish three seconds later
      ansible.builtin.shell: touch {started} && sleep 3 && touch {finished}
      changed_when: true
"""


def test_killing_the_orchestrator_stops_the_playbook_and_its_detached_workers(tmp_path: Path) -> None:
    started, finished = tmp_path / "started", tmp_path / "finished"
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.format(started=started, finished=finished))
    # Stands in for the orchestrator: starts the supervisor as ansible-runner would, then waits.
    orchestrator = textwrap.dedent(
        f"""
        import os, subprocess, sys
        env = {{**os.environ, "{playbook_exec.PARENT_ENV}": str(os.getpid()),
                "{playbook_exec.PLAYBOOK_ENV}": {ansible_playbook_path()!r}}}
        subprocess.run([sys.executable, "-I", "-S", {playbook_exec.__file__!r},
                        "-i", "localhost,", "-c", "local", {str(playbook)!r}], env=env,
                       start_new_session=True)  # as under ansible-runner's pseudo-terminal
        """
    )
    env = {**os.environ, "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    proc = subprocess.Popen([sys.executable, "-c", orchestrator], env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline, "the task never started"
            assert proc.poll() is None, "the playbook ended early"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(4.5)  # the task would have finished by now
        assert not finished.exists(), "a worker of the killed orchestrator's playbook went on"
        leftovers = subprocess.run(["pgrep", "-f", str(finished)], capture_output=True, text=True).stdout
        assert not leftovers.strip(), leftovers
    finally:
        if proc.poll() is None:
            proc.kill()


def test_secrets_arrive_in_the_environment_and_the_exit_code_comes_back(tmp_path: Path) -> None:
    """The supervisor passes the private file's variables to the playbook, deletes the file, and ends
    with the playbook's exit code (128 + the signal when it was killed)."""
    secrets = tmp_path / "env.json"
    secrets.write_text('{"WINRM_PASSWORD": "s3cret"}')
    script = tmp_path / "fake-playbook"
    script.write_text(
        '#!/bin/sh\necho "password=$WINRM_PASSWORD args=$*"\n[ "$1" = kill ] && kill -TERM $$\nexit 3\n'
    )
    script.chmod(0o700)

    def supervise(*args: str, secret_file: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], playbook_exec.PLAYBOOK_ENV: str(script)}
        if secret_file is not None:
            env[playbook_exec.SECRET_FILE_ENV] = str(secret_file)
        return subprocess.run(
            [sys.executable, "-I", "-S", playbook_exec.__file__, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    done = supervise("site.yml", "--check", secret_file=secrets)
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip() == "password=s3cret args=site.yml --check"
    assert not secrets.exists()
    killed = supervise("kill")
    assert killed.returncode == 128 + signal.SIGTERM, killed.stderr
    assert killed.stdout.strip() == "password= args=kill"
