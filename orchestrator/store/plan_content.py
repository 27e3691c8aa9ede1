"""The plan's content hash: what a person approves, in a form that cannot change unnoticed.

It covers the triage run the plan came from and, for every host, its action, wave, verdict and reason,
plus each wave's tier: anything that changes what would be done, or why. Estimates are left out:
they inform the decision but running the plan does not depend on them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

MemberKey = tuple[str, str, int | None, str | None, str]  # host, action, wave, verdict, reason


def content_hash(
    triage_run_id: int | None, waves: Iterable[tuple[int, int]], members: Iterable[MemberKey]
) -> str:
    doc = {
        "triage_run": triage_run_id,
        "waves": sorted([number, tier] for number, tier in waves),
        "members": sorted(
            [host, action, wave, verdict, reason] for host, action, wave, verdict, reason in members
        ),
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
