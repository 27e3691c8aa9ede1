"""Whether a host's compromise time may choose its restore point, before it chooses anything.

The estimate is the earliest timestamp among a host's indicators (file mtimes, key and event times):
all of it set by the host, that is by the attacker. Backdated, it asks for a snapshot older than any
backup (the restore fails) or one far older than needed (data lost); post-dated, it picks a snapshot
taken after the real foothold. So a host rebuilt from backups waits for a person (action hold, the
reason in `plan show` and `status`) when its time:

- lies in the future (beyond `skew` of clock drift);
- is older than the oldest snapshot its backups hold (when the repository can be listed);
- lies far outside the rest of the fleet's: more than max(`mads` scaled MADs, `window`) from the
  median of the fleet's times (a robust rule: one or a few lying hosts do not move the median), once
  at least `min_fleet` hosts have a time;
- or is missing: another host's time is never used in its place.

A person's decision (`orchestrator host restore-point HOST --before TIME --why TEXT`, `--accept` for
the estimate as it is, or `host decide HOST --rebuild --compromised-since TIME`: one notion, the newest
standing one wins, see `planning.decisions`) replaces the estimate for that host, recorded and
audited; the plan made after it carries the decision in the host's reason, so approving the plan
approves the decision.
These rules catch a time that disagrees with the clock, the backups or the fleet; an attacker who
moves every host's clues consistently is not caught here, which is why each candidate snapshot is also
scanned with the triage checks before it is restored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from orchestrator.inventory import Host
from orchestrator.lifecycle import INFECTED, SUSPICIOUS
from orchestrator.planning.model import Verdict
from orchestrator.store.decisions import Decided
from orchestrator.triage.compromise import (  # noqa: F401 (the rules, read from here by the planner's callers)
    MAD_SCALE,
    TimeRules,
    fleet_bounds,
    problem,
    stamp,
)


def restored(host: Host) -> bool:
    """Hosts whose restore point a cutoff chooses: restored from backups, and never wiped otherwise."""
    return not host.protected and (host.restore_method or "none") == "restic"


def note(decided: Decided) -> str:
    """How a plan reason quotes a person's restore-point decision."""
    if decided.compromised_since is not None:
        how = f"said compromised since {stamp(decided.compromised_since)}"
    else:
        how = "accepted the estimate" if decided.accepted else "set it"
    return f"restore point before {stamp(decided.before)} ({decided.by} {how}: {decided.why})"


def uses_time(host: Host, verdict: Verdict | None) -> bool:
    """The hosts whose compromise time chooses something: rebuilt (affected, not protected) and
    restored from backups."""
    return verdict is not None and verdict.verdict in (INFECTED, SUSPICIOUS) and restored(host)


def annotate(
    hosts: Iterable[Host],
    verdicts: Mapping[str, Verdict],
    times: Mapping[str, datetime | None],
    decisions: Mapping[str, Decided],
    oldest_backups: Mapping[str, datetime],
    now: datetime,
    rules: TimeRules,
) -> dict[str, Verdict]:
    """The verdicts with, for every host whose time chooses a restore point, either the person's
    decision (`time_note`) or why it waits for one (`time_hold`)."""
    bounds = fleet_bounds((t for t in times.values() if t is not None), now, rules)
    out = dict(verdicts)
    for host in hosts:
        verdict = verdicts.get(host.name)
        decided = decisions.get(host.name)
        if verdict is not None and decided is not None and restored(host):
            # Whatever the verdict (an unreachable host rebuilt by decision too): the plan's reason
            # carries the cutoff, so approving the plan approves it.
            out[host.name] = Verdict(verdict.verdict, verdict.reason, time_note=note(decided))
            continue
        if verdict is None or not uses_time(host, verdict):
            continue
        found = problem(times.get(host.name), now, bounds, oldest_backups.get(host.name), rules)
        if found is not None:
            hold = (
                f"{found}: a person must decide (orchestrator host restore-point {host.name} "
                "--before TIME --why TEXT, or --accept)"
            )
            out[host.name] = Verdict(verdict.verdict, verdict.reason, time_hold=hold)
    return out
