"""Hosts x packs: every host checked concurrently (a bounded thread pool), each with one connection and
one script, its output read into a verdict, evidence and an estimated compromise time.

The verdict is the worst severity among the checks that matched (info never changes it); the
compromise time is the earliest timestamp among the indicators that made the host suspicious or
infected, which later decides the newest restore point that is still clean. A host that cannot be
checked is `unreachable` (refused, timed out, no such name) or `error` (authentication, host key,
command failure): never silently `clean`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.inventory import Host
from orchestrator.lifecycle import AFFECTED, CLEAN
from orchestrator.store.models import CheckMatch
from orchestrator.timefmt import iso_exact
from orchestrator.triage import DEFAULT_FORKS, DEFAULT_TIMEOUT, VERDICTS, evidence, packs, scripts, transports
from orchestrator.triage.packs import SEVERITY_RANK, Pack

DERIVED = frozenset({"trusted", "age_days"})  # fields computed here, not on the host


@dataclass
class Hit:
    """A check that matched on a host."""

    check_id: str
    title: str
    severity: str
    evidence: str
    first_seen: datetime | None


@dataclass
class HostResult:
    host: str
    os: str
    verdict: str
    reason: str | None = None
    duration_s: float = 0.0
    compromise_time: datetime | None = None
    hits: list[Hit] = field(default_factory=list)
    new_key: str | None = None  # a host key accepted with --trust-new-keys

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "os": self.os,
            "verdict": self.verdict,
            "reason": self.reason,
            "duration_s": round(self.duration_s, 3),
            "compromise_time": iso_exact(self.compromise_time),
            "matches": [match_dict(h) for h in self.hits],
        }


def match_dict(match: Hit | CheckMatch) -> dict[str, Any]:
    """One triage match as JSON, the same for a fresh result (`Hit`) and a stored one (`CheckMatch`),
    keyed `check_id` as everywhere else (status, reports, restore points)."""
    return {
        "check_id": match.check_id,
        "title": match.title,
        "severity": match.severity,
        "first_seen": iso_exact(match.first_seen),
        "evidence": match.evidence,
    }


@dataclass
class Settings:
    forks: int = DEFAULT_FORKS
    timeout: float = DEFAULT_TIMEOUT
    trust_new_keys: bool = False


def excluded_paths(host: Host) -> tuple[str, ...]:
    """Paths a host's checks must not walk (`recovery_triage_exclude`), in a stable order."""
    value = host.vars.get("recovery_triage_exclude") or []
    return tuple(sorted({str(v) for v in ([value] if isinstance(value, str) else value)}))


@dataclass
class _Variant:
    """The checks for one OS (with some paths left out) and the script that collects them."""

    checks: list[packs.Check]
    script: scripts.Script | None

    @classmethod
    def render(cls, os_name: str, loaded: Sequence[Pack]) -> _Variant:
        checks = packs.checks_for(loaded, os_name)
        return cls(checks, scripts.render(os_name, checks) if checks else None)


class Triage:
    """One triage run's fixed parts: the rendered scripts, the checks behind them, the secrets to scrub."""

    def __init__(self, hosts: Sequence[Host], loaded: Sequence[Pack], settings: Settings) -> None:
        self.hosts = list(hosts)
        self.settings = settings
        self.loaded = list(loaded)
        # One script per OS and per set of excluded paths (`recovery_triage_exclude`: the evidence store
        # keeps ransom notes and samples on purpose); most fleets render exactly one per OS.
        self.variants: dict[tuple[str, tuple[str, ...]], _Variant] = {}
        for host in self.hosts:
            key = (host.os, excluded_paths(host))
            if key not in self.variants:
                self.variants[key] = _Variant.render(host.os, packs.without_paths(self.loaded, list(key[1])))
        self.scrub = evidence.Scrubber(secrets_of(self.hosts))
        self.ssh = transports.SSHOptions(trust_new_keys=settings.trust_new_keys)
        self.started = datetime.now(UTC)
        # authorized_keys entries that are not a foothold: our own login keys and the packs' trusted keys.
        self.trusted_keys = {k for p in loaded for k in p.trusted_keys} | transports.login_key_fingerprints(
            [h for h in self.hosts if h.os == "linux"], self.ssh
        )

    def run(self, on_result: Callable[[HostResult], None] | None = None) -> list[HostResult]:
        """Check every host; `on_result` is called in the calling thread as each host finishes."""
        results: list[HostResult] = []
        workers = max(1, min(self.settings.forks, len(self.hosts) or 1))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="triage")
        try:
            futures = [pool.submit(self.check_host, host) for host in self.hosts]
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                if on_result is not None:
                    on_result(result)
        except BaseException:
            # Interrupted (Ctrl-C): hosts not yet started are dropped, those in flight end within
            # their timeout; the caller stores what is done.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        order = {h.name: i for i, h in enumerate(self.hosts)}
        results.sort(key=lambda r: order[r.host])
        return results

    def check_host(self, host: Host) -> HostResult:
        started = time.monotonic()
        try:
            result = self._check(host)
        except Exception as exc:  # one host's surprise must not stop the other 1,849
            result = HostResult(host.name, host.os, "error", f"internal error: {type(exc).__name__}: {exc}")
        result.duration_s = time.monotonic() - started
        if result.reason:
            result.reason = self.scrub(result.reason)
        return result

    def _check(self, host: Host) -> HostResult:
        variant = self.variants[(host.os, excluded_paths(host))]
        script = variant.script
        if script is None:
            return HostResult(host.name, host.os, "error", f"no check in the packs for {host.os} hosts")
        transport = transports.for_host(host, self.ssh)
        try:
            rc, stdout, stderr = transport.run(script.text, self.settings.timeout)
        except transports.TransportError as exc:
            if exc.kind == "command_timeout" and exc.stdout:
                partial, _ = self._read(host, variant, exc.stdout)
                if partial.verdict in AFFECTED:
                    partial.reason = f"incomplete: {exc.reason}"
                    return partial
            return HostResult(host.name, host.os, exc.verdict, exc.reason, new_key=transport.new_key)
        result, output = self._read(host, variant, stdout)
        result.new_key = transport.new_key
        if result.verdict in AFFECTED:
            return result
        if rc != 0 or not output.finished:
            detail = _first_line(stderr) or (f"exit status {rc}" if rc else "output ended early")
            return HostResult(
                host.name, host.os, "error", f"command failed: {detail}", new_key=transport.new_key
            )
        failures = output.failures()
        if failures:
            result.verdict = "error"
            result.reason = "command failed: " + "; ".join(failures[:3])
        return result

    def _read(self, host: Host, variant: _Variant, stdout: str) -> tuple[HostResult, scripts.Output]:
        assert variant.script is not None
        output = scripts.parse(variant.script, stdout)
        hits: list[Hit] = []
        for check in variant.checks:
            probe = output.results.get(check.probe_id)
            if probe is None or not probe.complete or (probe.error and check.match.absent):
                continue
            if check.match.absent and probe.truncated:
                continue  # a partial listing cannot prove that something is missing
            items = (
                probe.items if not check.match.fields() & DERIVED else [self._derive(i) for i in probe.items]
            )
            matched = packs.evaluate(check, items)
            if matched is None:
                continue
            hits.append(
                Hit(
                    check_id=check.id,
                    title=check.title,
                    severity=check.severity,
                    evidence=evidence.render(matched, self.scrub, absent=check.match.absent),
                    first_seen=evidence.earliest(matched),
                )
            )
        ranked = [h for h in hits if h.severity != "info"]
        verdict = max((h.severity for h in ranked), key=SEVERITY_RANK.__getitem__, default=CLEAN)
        times = [h.first_seen for h in ranked if h.first_seen is not None]
        compromise = min(times) if times else None
        return HostResult(host.name, host.os, verdict, None, hits=hits, compromise_time=compromise), output

    def _derive(self, item: dict[str, Any]) -> dict[str, Any]:
        """Fields known only here, not on the host: whether an authorized key is one we trust, and
        how old an item is (relative to the start of the run, so every host is measured alike)."""
        derived = dict(item)
        if "fingerprint" in item:
            derived["trusted"] = "yes" if item["fingerprint"] in self.trusted_keys else "no"
        moment = packs.parse_time(item.get("mtime"))
        if moment is not None:
            derived["age_days"] = round((self.started - moment).total_seconds() / 86400, 3)
        return derived


def secrets_of(hosts: Sequence[Host]) -> set[str]:
    """Every secret value of every host. Only variables that can hold a secret are looked at, and each
    distinct value (with what its template refers to) is templated once: the cost is per host and
    per distinct secret, never per host times the fleet."""
    found: set[str] = set()
    done: set[tuple[str, ...]] = set()
    for host in hosts:
        hv = transports.HostVars(host)
        fresh = []
        for name in hv.secret_names():
            key = hv.render_key(name)
            if key not in done:
                done.add(key)
                fresh.append(name)
        if fresh:
            found |= hv.secrets(only=fresh)
    return found


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


def counts(results: Sequence[HostResult]) -> dict[str, int]:
    return {v: sum(1 for r in results if r.verdict == v) for v in VERDICTS}
