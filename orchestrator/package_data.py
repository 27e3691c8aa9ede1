"""Files shipped inside the package (playbooks, templates, packs, configuration), found through
`importlib.resources` so the same code works from the source checkout, an editable install and a wheel
installed anywhere, without the source tree."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from orchestrator.errors import OrchestratorError


def package_path(package: str, *parts: str) -> Path:
    """A shipped file or folder as a filesystem path: ansible-playbook and Jinja's loaders read real
    files, which every supported installation has (a zipped install would not, and says so)."""
    resource = resources.files(package).joinpath(*parts)
    path = Path(str(resource))
    if not path.exists():
        raise OrchestratorError(f"{package}/{'/'.join(parts)}: not installed with the package (reinstall it)")
    return path
