"""Restore-point choice against a real restic repository: the newest snapshot before the cutoff that
the triage packs find clean, dirty ones skipped with their findings."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.execution import restore_points

pytestmark = pytest.mark.skipif(
    shutil.which("restic") is None or os.geteuid() != 0, reason="needs restic and root (mount namespace)"
)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _backup(repo: Path, password: Path, tree: Path, when: datetime) -> None:
    """A snapshot that records /srv/... as a real host's backup would (tree bound over /srv)."""
    script = 'mount --bind "$1" /srv && shift && exec "$@"'
    restic = ["restic", "--no-cache", "-r", str(repo), "--password-file", str(password), "--quiet", "backup",
              "--host", "db-01", "--time", when.strftime("%Y-%m-%d %H:%M:%S"), "/srv"]  # fmt: skip
    subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            str(tree),
            *restic,
        ],
        check=True,
        env={**os.environ, "TZ": "UTC"},
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("restic")
    repo, password = base / "repo", base / "password"
    password.write_text("correct horse battery staple\n")
    subprocess.run(
        ["restic", "-r", str(repo), "--password-file", str(password), "init", "--quiet"], check=True
    )
    tree = base / "srv"
    (tree / "data").mkdir(parents=True)
    for i in range(5):
        (tree / "data" / f"report{i}.docx").write_bytes(f"quarterly report {i}\n".encode() * 50)
    _backup(repo, password, tree, T0)  # clean
    # Days later the attacker is in: a LockBit 3.0 note and files renamed with its extension.
    (tree / "data" / "Ab3dE6gH9.README.txt").write_text("Your data are stolen and encrypted\n")
    for i in range(5):
        (tree / "data" / f"report{i}.docx").rename(tree / "data" / f"report{i}.docx.Ab3dE6gH9")
        (tree / "data" / f"report{i}.docx.Ab3dE6gH9").write_bytes(os.urandom(4096))
    _backup(repo, password, tree, T0 + timedelta(days=5))  # dirty, before the estimated compromise time
    _backup(repo, password, tree, T0 + timedelta(days=9))  # after it
    return repo, password


def test_the_dirty_snapshot_is_skipped_for_the_older_clean_one(repo: tuple[Path, Path]) -> None:
    restic = restore_points.Restic(str(repo[0]), str(repo[1]))
    snapshots = restic.snapshots("db-01")
    assert [s.time for s in snapshots] == [T0 + timedelta(days=9), T0 + timedelta(days=5), T0]
    choice = restore_points.choose(restic, "db-01", T0 + timedelta(days=7), restore_points.pack_scanner())
    assert choice.snapshot is not None and choice.snapshot.time == T0
    assert choice.cutoff == T0 + timedelta(days=7) - restore_points.DEFAULT_MARGIN
    [skipped] = choice.skipped
    assert skipped["snapshot_id"] == snapshots[1].id
    found = {f["check_id"]: f["paths"] for f in skipped["findings"]}
    assert "/srv/data/Ab3dE6gH9.README.txt" in found["lockbit3-note-linux"]


def test_the_clean_snapshot_has_no_findings(repo: tuple[Path, Path], tmp_path: Path) -> None:
    restic = restore_points.Restic(str(repo[0]), str(repo[1]))
    oldest = restic.snapshots("db-01")[-1]
    restic.restore(oldest, tmp_path)
    assert (tmp_path / "srv" / "data" / "report0.docx").exists()
    assert restore_points.pack_scanner()(tmp_path) == []


def test_no_snapshot_before_the_cutoff_is_refused(repo: tuple[Path, Path]) -> None:
    restic = restore_points.Restic(str(repo[0]), str(repo[1]))
    with pytest.raises(restore_points.RestoreError, match="no snapshot before"):
        restore_points.choose(restic, "db-01", T0, restore_points.pack_scanner())


def test_all_dirty_is_refused_naming_them(repo: tuple[Path, Path]) -> None:
    restic = restore_points.Restic(str(repo[0]), str(repo[1]))
    always_dirty = lambda _: [restore_points.Finding("x", "infected", "x", ["/srv/x"])]  # noqa: E731
    with pytest.raises(restore_points.RestoreError, match="are not clean"):
        restore_points.choose(restic, "db-01", T0 + timedelta(days=30), always_dirty)


def test_the_password_never_appears_on_the_command_line(repo: tuple[Path, Path], monkeypatch) -> None:
    seen: list[list[str]] = []
    real_run = subprocess.run

    def spy(cmd, *args, **kwargs):
        seen.append(list(cmd))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(restore_points.subprocess, "run", spy)
    restore_points.Restic(str(repo[0]), str(repo[1])).snapshots("db-01")
    secret = repo[1].read_text().strip()
    assert seen and all(secret not in " ".join(c) for c in seen)
    assert all("--password-file" in c for c in seen)


def test_restic_options_from_the_inventory_reach_restic(repo: tuple[Path, Path]) -> None:
    """`recovery_restic_options` (e.g. sftp.command for a repository with its own SSH key) are passed
    to every restic command: an option restic does not know is refused by restic itself."""
    with pytest.raises(restore_points.RestoreError, match="no_such_option"):
        restore_points.Restic(str(repo[0]), str(repo[1]), ["local.no_such_option=1"]).snapshots("db-01")
    other_backend = restore_points.Restic(str(repo[0]), str(repo[1]), ["sftp.command=ssh -s sftp"])
    assert other_backend.snapshots("db-01")  # an option for another backend is no obstacle
