"""The lab's data files (host groups, golden images, data sets, scenarios) and their Jinja2 templates.

Kept as data so a rehearsal can be made to look like a given hospital without touching code.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

DATA = Path(__file__).resolve().parent / "data"


@cache
def catalog() -> dict[str, Any]:
    return yaml.safe_load((DATA / "catalog.yml").read_text())


@cache
def scenarios() -> dict[str, Any]:
    return yaml.safe_load((DATA / "scenarios.yml").read_text())


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([DATA / "templates", DATA / "notes"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # plain text files, not HTML
    )


def render_template(name: str, **context: Any) -> str:
    return _env().get_template(name).render(**context)


def render_string(text: str, **context: Any) -> str:
    return _env().from_string(text).render(**context)


def group(name: str) -> dict[str, Any]:
    return catalog()["groups"][name]
