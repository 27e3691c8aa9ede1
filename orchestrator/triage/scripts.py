"""Each OS's single check script, rendered from the probes of all applicable checks, and its output
read back into items per probe.

One script per host is what makes triage fast: a host costs one connection and one command, however
many checks the packs hold (perf-notes.md: five execs cost 37% more than one). The scripts are
Jinja2 templates in `templates/`; this module only prepares their input and parses what they print.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shlex
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jinja2

from orchestrator.package_data import package_path
from orchestrator.triage import fields
from orchestrator.triage.packs import ROOT_ALIASES, AnyCheck, base_name

VERSION = "v1"
TEMPLATES = package_path("orchestrator.triage", "templates")
MAX_HASH_BYTES = 64 * 1024 * 1024
MAX_STRINGS_BYTES = 8 * 1024 * 1024
# Bytes hashed or searched per walk, so a temp dir full of big files stays cheap.
MAX_READ_TOTAL = 256 * 1024 * 1024
COMMAND_TIME_BUDGET = 20
MAX_COMMAND_LINES = 200
_GLOB_CHARS = re.compile(r"([*?]+)")


def _globq(pattern: str) -> str:
    """Shell-quote a path but leave its * and ? wildcards active."""
    return "".join(
        part if _GLOB_CHARS.fullmatch(part) else shlex.quote(part)
        for part in _GLOB_CHARS.split(pattern)
        if part
    )


def _expand_roots(roots: list[str]) -> list[str]:
    out: list[str] = []
    for root in roots:
        expansion = ROOT_ALIASES.get(root)
        for item in expansion if expansion else (root,):
            if item not in out:
                out.append(item)
    return out


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    env.filters["globq"] = _globq
    env.filters["awkstr"] = lambda value: (
        '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\047") + '"'
    )
    env.filters["ere"] = lambda value: re.sub(r"([.^$+?*{}()|\[\]\\/])", r"\\\1", str(value).lower())
    return env


@dataclass(frozen=True)
class Script:
    """A rendered script and what is needed to read its output."""

    os: str
    text: str
    nonce: str
    probes: dict[str, dict[str, Any]]  # probe id -> {"kind": ..., parameters}
    groups: dict[str, list[str]]  # output block id -> the probes it carries
    line_paths: dict[str, list[re.Pattern[str]]] = field(default_factory=dict)  # lines probe -> its files


def probes_of(checks: list[AnyCheck]) -> list[dict[str, Any]]:
    """One probe per distinct (kind, parameters), in check order."""
    probes: dict[str, dict[str, Any]] = {}
    for check in checks:
        if check.probe_id not in probes:
            probes[check.probe_id] = {"id": check.probe_id, "kind": check.kind, **check.params}
    return list(probes.values())


def glob_to_ere(pattern: str) -> str:
    """A file name glob as an anchored POSIX ERE for awk (`*`, `?` and `[...]` as in find -name)."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\").replace("'", ".") + "]")
            i = end
        elif ch == "'":
            out.append(".")  # the awk program is single-quoted for the shell
        elif ch in ".^$+{}()|\\/":
            out.append("\\" + ch)
        else:
            out.append(ch)
        i += 1
    out.append("$")
    return "".join(out)


def _depth_below(path: str, root: str) -> int | None:
    """How many directory levels `path` is below `root` (0: the same), None when it is not below."""
    if path == root:
        return 0
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :].count("/") + 1 if path.startswith(prefix) else None


def _covered(roots: list[str], depth: int, group: dict[str, Any]) -> bool:
    """True when walking the group's roots to its depth already reaches everything these roots would."""
    for root in roots:
        below = [d for r in group["roots"] if (d := _depth_below(root, r)) is not None]
        if root.startswith("@") or not below or min(below) + depth > group["max_depth"]:
            return False
    return True


def _find_groups(probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """File and extension probes grouped so that each tree is walked once.

    Probes naming the same roots (aliases such as @data included), depth and prune list form a group.
    A probe with explicit roots that such a walk already reaches joins it, with an awk filter keeping
    only its own roots and depth; the others form walks of their own.
    """
    groups: list[dict[str, Any]] = []

    def new_group(roots: list[str], depth: int, prune: list[str]) -> dict[str, Any]:
        key = json.dumps([roots, depth, prune])
        group = {
            "id": "walk-" + hashlib.sha256(key.encode()).hexdigest()[:10],
            "roots": roots,
            "max_depth": depth,
            "prune": prune,
            "time_budget": 0,
            "files": [],
            "extensions": [],
            "exact": True,  # every member walks exactly the group's roots and depth
        }
        groups.append(group)
        return group

    def add(group: dict[str, Any], probe: dict[str, Any], within: list[str] | None) -> None:
        group["time_budget"] = max(group["time_budget"], probe["time_budget"])
        member = {**probe, "within": within}
        if probe["kind"] == "files":
            regex = "|".join(glob_to_ere(p) for p in probe["patterns"])
            group["files"].append({**member, "regex": regex if len(probe["patterns"]) == 1 else f"({regex})"})
        else:
            group["extensions"].append(member)

    walks = [p for p in probes if p["kind"] in ("files", "extensions")]
    for probe in walks:  # first the probes that define walks: same roots, depth and prune
        roots, prune = _expand_roots(probe["roots"]), sorted(probe["prune"])
        if not any(r.startswith("@") for r in roots):
            continue
        group = next(
            (
                g
                for g in groups
                if (g["roots"], g["max_depth"], g["prune"]) == (roots, probe["max_depth"], prune)
            ),
            None,
        ) or new_group(roots, probe["max_depth"], prune)
        add(group, probe, None)
    for probe in walks:  # then probes with explicit roots: inside an existing walk when it reaches them
        roots, prune = _expand_roots(probe["roots"]), sorted(probe["prune"])
        if any(r.startswith("@") for r in roots):
            continue
        compatible = [
            g
            for g in groups
            if g["prune"] == prune
            or (not prune and not any(_depth_below(x, r) is not None for x in g["prune"] for r in roots))
        ]
        group = next((g for g in compatible if _covered(roots, probe["max_depth"], g)), None)
        if group is None:
            group = next((g for g in compatible if not g["exact"] and g["prune"] == prune), None)
            if group is None:
                group = new_group(roots, probe["max_depth"], prune)
                group["exact"] = False
            group["roots"] = group["roots"] + [r for r in roots if r not in group["roots"]]
            group["max_depth"] = max(group["max_depth"], probe["max_depth"])
        exact = roots == group["roots"] and probe["max_depth"] == group["max_depth"]
        add(group, probe, None if exact else roots)
    for group in groups:
        if not group["exact"]:  # a walk grown for several explicit-root probes: each keeps its own
            for member in group["files"] + group["extensions"]:
                member["within"] = member["roots"]
        group["post"] = bool(group["extensions"]) or any(
            p["hash"] or p["strings"] or p["magic"] for p in group["files"]
        )
    return groups


def _lines_group(probes: list[dict[str, Any]]) -> dict[str, Any] | None:
    lines = [p for p in probes if p["kind"] == "lines"]
    if not lines:
        return None
    paths: list[str] = []
    for probe in lines:
        paths.extend(p for p in probe["paths"] if p not in paths)
    return {
        "id": "lines",
        "paths": paths,
        "max_lines": max(p["max_lines"] for p in lines),
        "max_bytes": max(p["max_bytes"] for p in lines),
        "probes": [p["id"] for p in lines],
    }


def render(os_name: str, checks: list[AnyCheck]) -> Script:
    probes = probes_of(checks)
    by_id = {p["id"]: p for p in probes}
    if os_name != "linux":
        header = base64.b64encode(json.dumps(probes, separators=(",", ":")).encode()).decode()
        text = _env().get_template("windows.ps1.j2").render(version=VERSION, probes_b64=header)
        return Script(os_name, text, "", by_id, {pid: [pid] for pid in by_id})
    nonce = "orch" + secrets.token_hex(8)
    walks = _find_groups(probes)
    lines = _lines_group(probes)
    commands = [p for p in probes if p["kind"] == "command"]
    groups = {g["id"]: [p["id"] for p in g["files"] + g["extensions"]] for g in walks}
    if lines:
        groups[lines["id"]] = lines["probes"]
    groups.update({p["id"]: [p["id"]] for p in commands})
    text = (
        _env()
        .get_template("linux.sh.j2")
        .render(
            version=VERSION,
            nonce=nonce,
            probe_count=len(probes),
            find_groups=walks,
            lines=lines,
            commands=commands,
            max_hash_bytes=MAX_HASH_BYTES,
            max_strings_bytes=MAX_STRINGS_BYTES,
            max_read_total=MAX_READ_TOTAL,
            time_budget=COMMAND_TIME_BUDGET,
            max_command_lines=MAX_COMMAND_LINES,
        )
    )
    line_paths = {p["id"]: [path_regex(x) for x in p["paths"]] for p in probes if p["kind"] == "lines"}
    return Script(os_name, text, nonce, by_id, groups, line_paths)


@dataclass
class ProbeResult:
    """What one probe brought back: its items, and whether that is all there is."""

    kind: str
    items: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    truncated: bool = False
    error: str | None = None


@dataclass
class Output:
    results: dict[str, ProbeResult]
    finished: bool  # the script reached its last line

    def failures(self) -> list[str]:
        return [f"{pid}: {r.error}" for pid, r in self.results.items() if r.error]


def parse(script: Script, stdout: str) -> Output:
    return _parse_linux(script, stdout) if script.os == "linux" else _parse_windows(script, stdout)


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _linux_item(line: str, mtimes: dict[str, float]) -> tuple[str | None, dict[str, Any]] | None:
    """(probe id or None for a lines item, item) from one output line."""
    parts = line.split("\t")
    tag = parts[0]
    if tag == "F" and len(parts) >= 9:
        path = "\t".join(parts[8:])
        return parts[1], {
            "path": path,
            "name": base_name(path),
            "size": _int(parts[2]),
            "mtime": _float(parts[3]),
            "mode": parts[4],
            "sha256": None if parts[5] == "-" else parts[5].lower(),
            "strings": [] if parts[6] == "-" else [s for s in parts[6].split("|") if s],
            "magic": None if parts[7] == "-" else parts[7],
        }
    if tag == "X" and len(parts) >= 8:
        return parts[1], {
            "ext": parts[2],
            "count": _int(parts[3]),
            "data_files": _int(parts[4]),
            "mtime": _float(parts[5]),
            "entropy": _float(parts[6]),
            "sample": "\t".join(parts[7:]),
        }
    if tag == "L" and len(parts) >= 4:
        text = "\t".join(parts[3:])
        item = {"path": parts[1], "line_no": _int(parts[2]), "line": text, "mtime": mtimes.get(parts[1])}
        key = authorized_key(text) if "/authorized_keys" in parts[1] else None
        if key is not None:
            item["fingerprint"], item["key_comment"] = key
        return None, item
    if tag == "L" and len(parts) >= 2:
        return None, {"line": "\t".join(parts[1:])}
    return None


_KEY_TYPE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-[\w@.-]+)$")


def authorized_key(line: str) -> tuple[str, str] | None:
    """(SHA256 fingerprint, comment) when the line holds a public key, as `ssh-keygen -lf` would say."""
    words = line.split()
    for index, word in enumerate(words[:-1]):
        if _KEY_TYPE.match(word):
            try:
                blob = base64.b64decode(words[index + 1], validate=True)
            except ValueError:
                return None
            digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
            return f"SHA256:{digest}", " ".join(words[index + 2 :])
    return None


def path_regex(pattern: str) -> re.Pattern[str]:
    """Which files a `lines` path pattern names (`@home/` is any home directory)."""
    prefix = "^/.+/" if pattern.startswith("@home/") else "^"
    body = pattern[6:] if pattern.startswith("@home/") else pattern
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in body]
    return re.compile(prefix + "".join(parts).replace(".*", "[^/]*") + "$")


def _parse_linux(script: Script, stdout: str) -> Output:
    results = {pid: ProbeResult(p["kind"]) for pid, p in script.probes.items()}
    matchers = script.line_paths
    nonce = script.nonce

    @cache
    def owners(block: str, path: str) -> list[str]:
        """The lines probes whose path patterns name this file (a file has many lines: asked once)."""
        return [
            p for p in script.groups[block] if p not in matchers or any(m.match(path) for m in matchers[p])
        ]

    members: list[ProbeResult] = []
    block: str | None = None
    mtimes: dict[str, float] = {}
    seen: set[tuple[str, ...]] = set()
    finished = False
    for line in stdout.splitlines():
        if line.startswith(nonce + " "):
            word, _, rest = line[len(nonce) + 1 :].partition(" ")
            rest = rest.strip()
            if word == "B" and rest in script.groups:
                block, members, mtimes = rest, [results[pid] for pid in script.groups[rest]], {}
            elif word == "E" and block is not None:
                for member in members:
                    member.complete = True
                block, members = None, []
            elif word == "RC":
                rc = _int(rest)
                for member in members:
                    if rc in (124, 137, 152):  # timeout, killed, CPU limit (SIGXCPU)
                        member.truncated = (
                            True  # the time budget ran out: a partial listing is still evidence
                        )
                    elif rc in (126, 127):
                        member.error = f"a tool is missing on the host (exit {rc})"
            elif word == "TRUNC":
                pid = rest.split(" ", 1)[0]
                if pid in results:
                    results[pid].truncated = True
            elif word == "DONE":
                finished = True
            continue
        if block is None:
            continue
        if line.startswith("M ") and line.count(" ") >= 2:
            _, mtime, path = line.split(" ", 2)
            mtimes[path] = _float(mtime) or 0.0
            continue
        if line.startswith("T\t"):
            for member in members:
                member.truncated = True
            continue
        parsed = _linux_item(line, mtimes)
        if parsed is None:
            continue
        pid, item = parsed[0], fields.item(parsed[1])
        targets = [pid] if pid is not None else owners(block, item.get("path", ""))
        for target in targets:
            key = (
                target,
                item.get("path") or item.get("ext") or "",
                str(item.get("line_no", "")),
                item.get("line", ""),
            )
            if (
                target in results and key not in seen
            ):  # overlapping roots (/root is also a home) list a file twice
                seen.add(key)
                _add(results[target], item)
    for result in results.values():
        if not result.complete and result.error is None:
            result.error = "no output (the script stopped before this probe ended)"
    return Output(results, finished)


def _add(result: ProbeResult, item: dict[str, Any]) -> bool:
    """Keep the item unless the probe already holds fields.MAX_ITEMS (then its listing is partial)."""
    if len(result.items) >= fields.MAX_ITEMS:
        result.truncated = True
        return False
    result.items.append(item)
    return True


def _parse_windows(script: Script, stdout: str) -> Output:
    results = {pid: ProbeResult(p["kind"]) for pid, p in script.probes.items()}
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):  # a host can nest a record past any depth
            continue
        result = results.get(str(record.get("id"))) if isinstance(record, dict) else None
        if result is None:
            continue
        raw = record.get("results") or []
        items = raw if isinstance(raw, list) else [raw]
        truncated = False
        for item in items:
            if isinstance(item, dict):
                item = fields.item(item)
                if result.kind == "files" and item.get("path"):
                    item = {**item, "name": base_name(str(item["path"]))}
                truncated |= not _add(result, item)
        result.truncated = truncated or bool(record.get("truncated"))
        result.error = str(record["error"]) if record.get("error") else None
        result.complete = True
    for result in results.values():
        if not result.complete:
            result.error = "no output for this probe"
    return Output(results, finished=all(r.complete for r in results.values()))
