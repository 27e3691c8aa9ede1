"""One line per host from an execution node's triage agent: written by the agent, read here as the
untrusted input it is.

A node runs next to hosts that are the attacker's and may be the attacker's itself, so a line is
believed only when everything in it is what the node was asked and what our own packs allow: a host
it was given and has not answered yet, a verdict of ours, matches of checks we sent for that host's OS
(title and severity taken from our packs, not from the line), a verdict and compromise time that
follow from those matches exactly as the engine computes them, every text bounded, and evidence
scrubbed again of the secrets the controller knows. Anything else refuses the line, and the node.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestrator.lifecycle import AFFECTED, CLEAN
from orchestrator.triage import VERDICTS, evidence
from orchestrator.triage.engine import Hit, HostResult
from orchestrator.triage.packs import SEVERITY_RANK, AnyCheck, Pack

MAX_LINE = 1024 * 1024  # one host's result; evidence is at most evidence.MAX_TOTAL a check
MAX_REASON = 2000
MAX_KEY = 4000
DONE = "done"  # the agent's last line: {"done": N}, N results sent; without it the node was lost
_FIELDS = {"host", "os", "verdict", "reason", "duration_s", "compromise_time", "matches", "new_key"}
_MATCH_FIELDS = {"check_id", "title", "severity", "first_seen", "evidence"}


class BadLine(ValueError):
    """A line from a node that is not a result we can believe; the message says why."""


def encode(result: HostResult) -> bytes:
    return json.dumps({**result.to_dict(), "new_key": result.new_key}).encode() + b"\n"


def encode_done(count: int) -> bytes:
    return json.dumps({DONE: count}).encode() + b"\n"


class Reader:
    """Checks a node's lines against what it was asked."""

    def __init__(
        self,
        hosts: Mapping[str, str],
        packs: Sequence[Pack],
        scrub: evidence.Scrubber,
        timeout: float,
        trust_new_keys: bool,
    ) -> None:
        self.expected = dict(hosts)  # host -> OS, for hosts not answered yet
        self.asked = len(self.expected)
        self.checks: dict[str, AnyCheck] = {c.id: c for p in packs for c in p.checks}
        self.scrub = scrub
        self.max_duration = timeout * 4 + 60  # the agent's own bookkeeping on top of the host's timeout
        self.trust_new_keys = trust_new_keys
        self.done: int | None = None

    def read(self, line: bytes) -> HostResult | None:
        """A host's result, or None for the end marker; BadLine otherwise."""
        if len(line) > MAX_LINE:
            raise BadLine(f"a line of over {MAX_LINE} bytes")
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: a line of nested brackets
            raise BadLine("a line that is not JSON") from None
        if isinstance(data, dict) and set(data) == {DONE}:
            if data[DONE] != self._answered():
                raise BadLine(f"an end marker counting {str(data[DONE])[:20]} results")
            self.done = data[DONE]
            return None
        if self.done is not None:
            raise BadLine("a line after the end marker")
        if not isinstance(data, dict) or set(data) != _FIELDS:
            raise BadLine("a line that is not a host result")
        return self._result(data)

    def _answered(self) -> int:
        return self.asked - len(self.expected)

    def _result(self, data: dict[str, Any]) -> HostResult:
        host = data["host"]
        if not isinstance(host, str) or host not in self.expected:
            raise BadLine(f"a result for host {str(host)[:100]!r}, not asked or already answered")
        os_name = self.expected[host]
        if data["os"] != os_name:
            raise BadLine(f"host {host}: os {str(data['os'])[:20]!r}, not {os_name}")
        verdict = data["verdict"]
        if verdict not in VERDICTS:
            raise BadLine(f"host {host}: verdict {str(verdict)[:40]!r}")
        duration = data["duration_s"]
        if not isinstance(duration, int | float) or isinstance(duration, bool):
            raise BadLine(f"host {host}: duration is not a number")
        if not (math.isfinite(duration) and 0 <= duration <= self.max_duration):
            raise BadLine(f"host {host}: duration {duration} out of bounds")
        reason = _text(data["reason"], MAX_REASON, host, "reason")
        new_key = _text(data["new_key"], MAX_KEY, host, "new_key")
        if new_key is not None and not self.trust_new_keys:
            raise BadLine(f"host {host}: a new host key accepted without --trust-new-keys")
        hits = self._hits(host, os_name, data["matches"])
        ranked = [h for h in hits if h.severity != "info"]
        worst = max((h.severity for h in ranked), key=SEVERITY_RANK.__getitem__, default=CLEAN)
        if worst != CLEAN and verdict != worst:
            raise BadLine(f"host {host}: verdict {verdict} but its matches say {worst}")
        if worst == CLEAN and verdict in AFFECTED:
            raise BadLine(f"host {host}: verdict {verdict} without a match that says so")
        times = [h.first_seen for h in ranked if h.first_seen is not None]
        compromise = _time(data["compromise_time"], host)
        if compromise != (min(times) if times and worst != CLEAN else None):
            raise BadLine(f"host {host}: a compromise time its matches do not give")
        del self.expected[host]
        return HostResult(
            host,
            os_name,
            verdict,
            self.scrub(reason) if reason else None,
            duration_s=float(duration),
            compromise_time=compromise,
            hits=hits,
            new_key=new_key,
        )

    def _hits(self, host: str, os_name: str, matches: Any) -> list[Hit]:
        if not isinstance(matches, list) or len(matches) > len(self.checks):
            raise BadLine(f"host {host}: matches are not a list of at most {len(self.checks)}")
        hits, seen = [], set()
        for match in matches:
            if not isinstance(match, dict) or set(match) != _MATCH_FIELDS:
                raise BadLine(f"host {host}: a match that is not one")
            check = self.checks.get(match["check_id"]) if isinstance(match["check_id"], str) else None
            if check is None or check.os != os_name or check.id in seen:
                raise BadLine(
                    f"host {host}: a match of check {str(match['check_id'])[:100]!r} it was not sent"
                )
            seen.add(check.id)
            if match["severity"] != check.severity or match["title"] != check.title:
                raise BadLine(f"host {host}: check {check.id} with another title or severity than ours")
            text = _text(match["evidence"], evidence.MAX_TOTAL + 1000, host, "evidence") or ""
            hits.append(
                Hit(check.id, check.title, check.severity, self.scrub(text), _time(match["first_seen"], host))
            )
        return hits


def _text(value: Any, limit: int, host: str, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadLine(f"host {host}: {what} is not text of at most {limit} characters")
    return value


def _time(value: Any, host: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise BadLine(f"host {host}: a time that is not ISO 8601 text")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadLine(f"host {host}: a time that is not ISO 8601 text") from None
    if moment.tzinfo is None:
        raise BadLine(f"host {host}: a time without its zone")
    return moment
