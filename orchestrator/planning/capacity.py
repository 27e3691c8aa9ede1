"""Capacity keys: the shared resources a recovery can overload.

Each key limits how many hosts hold one of its units at once: a host takes one when its rebuild or
verification starts (after containment, which has its own capacity) and gives it back when it
reaches reconnect (`lifecycle.pipeline`), whatever its wave: waves are the order hosts start in, cut
by --max-wave-size alone (planning.waves), not barriers.

| key | counts, at once |
|---|---|
| `image-server` | rebuilds (each one reimages from the golden-image server) |
| `reimage:<method>` | rebuilds whose reimage method is `<method>` (pxe, vsphere, ...) |
| `restores` | rebuilds that restore data (restore method other than `none`): the backup servers' load |
| `site:<name>` | rebuilds at site `<name>` (`recovery_site`) |
| `tier:<n>` | hosts of tier `<n>`, rebuilt or verified |

`--max-wave-size` bounds every host at once, whatever its action: the people and consoles at hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from orchestrator.errors import OrchestratorError
from orchestrator.inventory import TIERS
from orchestrator.lifecycle.concurrency import DEFAULT_FORKS
from orchestrator.lifecycle.pipeline import IMAGE_SERVER, RESTORES, WAVE_SIZE, resources  # noqa: F401
from orchestrator.planning.model import Limits

KEY_HELP = "image-server, restores, reimage:<method>, site:<name>, tier:<0-3>"


def parse(specs: Sequence[str], *, sites: Iterable[str], reimage_methods: Iterable[str]) -> dict[str, int]:
    """`KEY=N` strings to limits. A key naming a site or method the fleet does not have is refused:
    a typo must not silently leave a resource unbounded."""
    known_sites = set(sites)
    known_methods = set(reimage_methods)
    limits: dict[str, int] = {}
    for spec in specs:
        key, sep, raw = (part.strip() for part in spec.partition("="))
        if not sep or not key:
            raise OrchestratorError(f"--capacity {spec!r}: expected KEY=N, e.g. site:north=20")
        kind, colon, name = key.partition(":")
        if key in (IMAGE_SERVER, RESTORES):
            pass
        elif colon and kind == "site":
            if name not in known_sites:
                raise OrchestratorError(
                    f"--capacity {spec}: unknown site {name!r} (sites: {', '.join(sorted(known_sites)) or 'none'})"
                )
        elif colon and kind == "reimage":
            if name not in known_methods:
                raise OrchestratorError(
                    f"--capacity {spec}: unknown reimage method {name!r} "
                    f"(methods: {', '.join(sorted(known_methods)) or 'none'})"
                )
        elif colon and kind == "tier":
            if name not in {str(t) for t in TIERS}:
                raise OrchestratorError(f"--capacity {spec}: unknown tier {name!r} (tiers: 0, 1, 2, 3)")
        else:
            raise OrchestratorError(f"--capacity {spec}: unknown capacity key {key!r} (keys: {KEY_HELP})")
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1 or not raw.isdigit():
            raise OrchestratorError(f"--capacity {spec}: expected a whole number >= 1, got {raw!r}")
        if key in limits:
            raise OrchestratorError(f"--capacity {key} given twice")
        limits[key] = value
    return limits


def limits(
    max_wave_size: int | None,
    specs: Sequence[str],
    *,
    sites: Iterable[str],
    reimage_methods: Iterable[str],
    forks: int = DEFAULT_FORKS,
) -> Limits:
    """The plan's limits from the command line, refused whole when any part is wrong."""
    if max_wave_size is not None and max_wave_size < 1:
        raise OrchestratorError(f"--max-wave-size {max_wave_size}: expected a whole number >= 1")
    if forks < 1:
        raise OrchestratorError(f"--forks {forks}: expected a whole number >= 1")
    return Limits(max_wave_size, parse(specs, sites=sites, reimage_methods=reimage_methods), forks)
