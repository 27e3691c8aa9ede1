"""Check packs: indicators of compromise as YAML data, validated before any host is touched.

A pack is a file of checks. Each check names one *probe* (what to collect on the host: files by name,
lines of config files, extension counts, registry values, ...) and a *match* rule (how the collected
items are read). Probes are data the script renderer understands, so an operator adds an incident's
own indicators (a note name, an extension, hashes, IP addresses, registry values) without code, and
checks that ask for the same probe share one collection on the host.

Errors name the file and line (from the YAML parser's marks) so a typo in a pack written at 3 a.m.
is found before the run starts, not after it has visited 1,800 hosts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.errors import OrchestratorError
from orchestrator.package_data import package_path

SHIPPED_DIR = package_path("orchestrator.triage", "packs")
SEVERITIES = ("info", "suspicious", "infected")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
OSES = ("linux", "windows")
LINUX_KINDS = ("files", "lines", "extensions", "command")
WINDOWS_KINDS = ("files", "registry", "services", "eventlog", "shadow_copies", "scheduled_tasks")
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,79}$"
# Fields whose value is a time: the earliest of them on a matching item is when the indicator appeared.
TIME_FIELDS = ("mtime", "time", "created")


class PackError(OrchestratorError):
    """A pack cannot be used; the message starts with file:line."""


# --- YAML with line numbers -------------------------------------------------------------------


class _LineDict(dict):
    """A mapping that remembers the line of each of its keys (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class _LineList(list):
    line: int = 0
    item_lines: list[int]


def _loader_class() -> type:
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class LineLoader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _LineDict:
            result = _LineDict()
            result.line = node.start_mark.line + 1
            result.key_lines = {}
            for key_node, value_node in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in result:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                result[key] = self.construct_object(value_node, deep=True)
                result.key_lines[key] = key_node.start_mark.line + 1
            return result

        def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> _LineList:
            result = _LineList(self.construct_object(child, deep=True) for child in node.value)
            result.line = node.start_mark.line + 1
            result.item_lines = [child.start_mark.line + 1 for child in node.value]
            return result

    LineLoader.add_constructor("tag:yaml.org,2002:map", LineLoader.construct_mapping)
    LineLoader.add_constructor("tag:yaml.org,2002:seq", LineLoader.construct_sequence)
    return LineLoader


_LOADER = _loader_class()


def _line_of(data: Any, loc: Sequence[Any]) -> int:
    """The line of the deepest element of `loc` that exists in the parsed YAML."""
    line = getattr(data, "line", 1)
    node = data
    for part in loc:
        if isinstance(node, _LineDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, _LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
        line = max(line, getattr(node, "line", 0)) if isinstance(node, _LineDict | _LineList) else line
    return line


# --- The pack schema ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
    return value


def _each(check: Any) -> Any:
    """A list validator applying `check` to every element."""
    return classmethod(lambda cls, values: [check(v) for v in values])


ROOT_ALIASES = {
    # Every user's home (from the passwd database) plus the places data and applications live.
    "@homes": None,
    "@data": ("@homes", "/root", "/home", "/srv", "/opt", "/var/www", "/var/lib", "/var/log"),
    "@temp": ("/tmp", "/var/tmp", "/dev/shm"),
}


def _check_root(value: str) -> str:
    if value in ROOT_ALIASES or (value.startswith("/") and "\n" not in value):
        return value
    raise ValueError(f"root {value!r} must be an absolute path or one of {', '.join(ROOT_ALIASES)}")


def _check_glob(value: str) -> str:
    if not value or "/" in value or "\n" in value:
        raise ValueError(f"pattern {value!r} must be a non-empty file name pattern without '/'")
    return value


class LinuxFiles(_Strict):
    """Files whose base name matches one of the patterns, below the roots (one bounded `find`)."""

    roots: list[str] = Field(min_length=1)
    patterns: list[str] = Field(min_length=1)
    max_depth: int = Field(6, ge=0, le=32)
    max_results: int = Field(50, ge=1, le=1000)
    executable: bool = False
    hash: bool = False
    magic: bool = False
    modified_within_days: float | None = Field(None, gt=0)
    strings: list[str] = Field(default_factory=list, max_length=50)
    prune: list[str] = Field(default_factory=list)
    time_budget: int = Field(15, ge=1, le=600)

    _roots = field_validator("roots")(_each(_check_root))
    _patterns = field_validator("patterns")(_each(_check_glob))

    @field_validator("prune")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"prune path {path!r} must be absolute")
        return value

    @field_validator("strings")
    @classmethod
    def _strings(cls, value: list[str]) -> list[str]:
        for s in value:
            if not s or "\n" in s:
                raise ValueError(f"string {s!r} must be non-empty and on one line")
        return value


class LinuxLines(_Strict):
    """The lines of small text files (cron tables, units, authorized_keys, shell histories)."""

    paths: list[str] = Field(min_length=1)
    max_lines: int = Field(200, ge=1, le=5000)
    max_bytes: int = Field(65536, ge=1, le=1048576)

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not (path.startswith("/") or path.startswith("@home/")) or re.search(r"[\[\]{}\n]", path):
                raise ValueError(
                    f"path {path!r} must be absolute or start with @home/, and may use only * and ? as wildcards"
                )
        return value


class LinuxExtensions(_Strict):
    """Counts of files per appended extension (`name.ext.NEW`), the mark of mass renaming."""

    roots: list[str] = Field(min_length=1)
    max_depth: int = Field(6, ge=0, le=32)
    min_files: int = Field(10, ge=1)
    # What the renamed files were before (report.docx.X): counted per new extension as `data_files`.
    data_extensions: list[str] = Field(default_factory=list)
    prune: list[str] = Field(default_factory=list)
    time_budget: int = Field(20, ge=1, le=600)

    _roots = field_validator("roots")(_each(_check_root))

    @field_validator("data_extensions")
    @classmethod
    def _extensions(cls, value: list[str]) -> list[str]:
        for ext in value:
            if not re.fullmatch(r"[A-Za-z0-9_+-]{1,16}", ext):
                raise ValueError(f"data extension {ext!r} must be letters, digits, _, + or - (no dot)")
        return value


class WindowsFiles(_Strict):
    roots: list[str] = Field(min_length=1)
    patterns: list[str] = Field(min_length=1)
    max_depth: int = Field(6, ge=0, le=32)
    max_results: int = Field(50, ge=1, le=1000)
    hash: bool = False

    _patterns = field_validator("patterns")(_each(_check_glob))


class WindowsRegistry(_Strict):
    path: str = Field(min_length=3)
    name: str | None = None


class WindowsServices(_Strict):
    names: list[str] = Field(min_length=1)


class WindowsEventlog(_Strict):
    log: str = Field(min_length=1)
    event_ids: list[int] = Field(min_length=1)


class _Empty(_Strict):
    pass


class _OneKind(_Strict):
    """Exactly one kind of collection per probe."""

    @model_validator(mode="after")
    def _one_kind(self) -> _OneKind:
        kinds = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = f"found {', '.join(kinds)}" if kinds else "found none"
            raise ValueError(
                f"a probe has exactly one kind ({found}); one of: {', '.join(type(self).model_fields)}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)


class LinuxProbe(_OneKind):
    files: LinuxFiles | None = None
    lines: LinuxLines | None = None
    extensions: LinuxExtensions | None = None
    command: str | None = Field(None, min_length=1)


class WindowsProbe(_OneKind):
    files: WindowsFiles | None = None
    registry: WindowsRegistry | None = None
    services: WindowsServices | None = None
    eventlog: WindowsEventlog | None = None
    shadow_copies: _Empty | None = None
    scheduled_tasks: _Empty | None = None


# The fields each probe kind yields per item: match rules may only name these.
FIELDS = {
    ("linux", "files"): ("path", "name", "size", "mtime", "age_days", "mode", "sha256", "strings", "magic"),
    ("linux", "lines"): (
        "path",
        "line_no",
        "line",
        "mtime",
        "age_days",
        "fingerprint",
        "key_comment",
        "trusted",
    ),
    ("linux", "extensions"): ("ext", "count", "data_files", "mtime", "age_days", "sample", "entropy"),
    ("linux", "command"): ("line",),
    ("windows", "files"): ("path", "name", "size", "mtime", "age_days", "sha256"),
    ("windows", "registry"): ("path", "name", "value"),
    ("windows", "services"): ("name", "status", "start_type"),
    ("windows", "eventlog"): ("log", "id", "time"),
    ("windows", "shadow_copies"): ("id", "created"),
    ("windows", "scheduled_tasks"): ("name", "path", "action", "created"),
}
NUMERIC_FIELDS = frozenset({"size", "count", "data_files", "entropy", "line_no", "id", "age_days"})


class Match(_Strict):
    """How a probe's items are read. Items are kept when they pass every filter; the check matches
    when at least `min_count` remain (or, with `absent`, when none does)."""

    where: dict[str, str] = Field(default_factory=dict)
    unless: dict[str, str] = Field(default_factory=dict)
    contains: dict[str, list[str]] = Field(default_factory=dict)
    any_of: dict[str, list[str]] = Field(default_factory=dict)
    at_least: dict[str, float] = Field(default_factory=dict)
    at_most: dict[str, float] = Field(default_factory=dict)
    min_count: int = Field(1, ge=1)
    absent: bool = False

    @field_validator("where", "unless")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern in value.values():
            _check_regex(pattern)
        return value

    def fields(self) -> set[str]:
        return {*self.where, *self.unless, *self.contains, *self.any_of, *self.at_least, *self.at_most}


class _At(ValueError):
    """A validation error about a part of the check below the validator's own level."""

    def __init__(self, where: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.where = where


class _CheckBase(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1)
    severity: Literal["info", "suspicious", "infected"]
    match: Match = Field(default_factory=Match)
    description: str = ""
    references: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fields_exist(self) -> _CheckBase:
        kind = self.probe.kind  # type: ignore[attr-defined]
        known = FIELDS[(self.os, kind)]  # type: ignore[attr-defined]
        for section in ("where", "unless", "contains", "any_of", "at_least", "at_most"):
            names = getattr(self.match, section)
            unknown = sorted(set(names) - set(known))
            if unknown:
                raise _At(
                    ("match", section, unknown[0]),
                    f"match names unknown field(s) {', '.join(unknown)} for a {self.os} {kind} probe "  # type: ignore[attr-defined]
                    f"(fields: {', '.join(known)})",
                )
            if section in ("at_least", "at_most") and set(names) - NUMERIC_FIELDS:
                wrong = sorted(set(names) - NUMERIC_FIELDS)
                raise _At(
                    ("match", section, wrong[0]), f"{section} needs numeric fields, not {', '.join(wrong)}"
                )
        return self

    @property
    def kind(self) -> str:
        return self.probe.kind  # type: ignore[attr-defined]

    @property
    def params(self) -> dict[str, Any]:
        value = getattr(self.probe, self.kind)  # type: ignore[attr-defined]
        return value.model_dump() if isinstance(value, BaseModel) else {"command": value}

    @property
    def probe_id(self) -> str:
        """Checks asking for the same collection share it: the id is a digest of OS, kind and parameters."""
        blob = json.dumps([self.os, self.kind, self.params], sort_keys=True)  # type: ignore[attr-defined]
        return f"{self.kind[:3]}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


class LinuxCheck(_CheckBase):
    os: Literal["linux"]
    probe: LinuxProbe


class WindowsCheck(_CheckBase):
    os: Literal["windows"]
    probe: WindowsProbe


Check = Annotated[LinuxCheck | WindowsCheck, Field(discriminator="os")]
AnyCheck = LinuxCheck | WindowsCheck


class PackFile(_Strict):
    pack: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1)
    description: str = ""
    references: list[str] = Field(default_factory=list)
    # SSH keys allowed in authorized_keys besides the inventory's own login keys (`ssh-keygen -lf`).
    trusted_keys: list[str] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)

    @field_validator("trusted_keys")
    @classmethod
    def _fingerprints(cls, value: list[str]) -> list[str]:
        for fp in value:
            if not re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", fp):
                raise ValueError(
                    f"trusted key {fp!r} is not a SHA256 fingerprint (as `ssh-keygen -lf` prints)"
                )
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> PackFile:
        if not self.checks and not self.trusted_keys:
            raise ValueError("a pack needs checks (or trusted_keys)")
        return self


class Pack(BaseModel):
    """A validated pack and where it came from."""

    model_config = ConfigDict(frozen=True)
    id: str
    title: str
    path: str
    checks: list[AnyCheck]
    trusted_keys: list[str] = []


# --- Loading -----------------------------------------------------------------------------------


def _format_loc(loc: Sequence[Any], data: Any) -> str:
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            check_id = (
                node[part].get("id") if isinstance(node, list) and isinstance(node[part], dict) else None
            )
            parts.append(f"[{part}]" if check_id is None else f"[{check_id}]")
        else:
            parts.append(f".{part}" if parts else str(part))
        node = node[part] if isinstance(node, dict | list) and _has(node, part) else None
    return "".join(parts)


def _has(node: Any, part: Any) -> bool:
    return (isinstance(node, dict) and part in node) or (
        isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
    )


def _explain(error: Any) -> tuple[tuple[Any, ...], str]:
    """Pydantic's first error as (location in the YAML, an operator's wording)."""
    raw = tuple(error["loc"])
    # The discriminated union adds the OS tag to the location; the YAML has no such level.
    loc = tuple(p for i, p in enumerate(raw) if not (p in OSES and i and isinstance(raw[i - 1], int)))
    kind = error["type"]
    msg = str(error["msg"]).removeprefix("Value error, ")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _At):
        loc, msg = (*loc, *cause.where), str(cause)
    if kind == "extra_forbidden" and len(loc) >= 2 and loc[-2] == "probe":
        os_name = next((p for p in raw if p in OSES), "")
        allowed = LINUX_KINDS if os_name == "linux" else WINDOWS_KINDS
        msg = f"probe kind {loc[-1]!r} is not available on {os_name} (use one of {', '.join(allowed)})"
    elif kind == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    elif kind == "missing":
        msg = f"missing required key {loc[-1]!r}"
    elif kind == "union_tag_not_found":
        msg, loc = "missing required key 'os' (linux or windows)", (*loc, "os")
    elif kind == "union_tag_invalid":
        msg, loc = f"os must be linux or windows, not {error['ctx']['tag']!r}", (*loc, "os")
    return loc, msg


def load_file(path: Path) -> Pack:
    """Parse and validate one pack; PackError with file:line and the reason otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PackError(f"{path}: cannot read pack: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_LOADER)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        reason = exc.problem or exc.context
        if (
            exc.context
            and exc.context_mark
            and exc.problem_mark
            and exc.context_mark.line != exc.problem_mark.line
        ):
            reason = f"{reason} ({exc.context} on line {exc.context_mark.line + 1})"
        raise PackError(f"{path}:{line}: invalid YAML: {reason}") from exc
    except yaml.YAMLError as exc:
        raise PackError(f"{path}:1: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PackError(f"{path}:1: a pack is a mapping with 'pack', 'title' and 'checks'")
    try:
        parsed = PackFile.model_validate(data)
    except ValidationError as exc:
        loc, msg = _explain(exc.errors()[0])
        raise PackError(f"{path}:{_line_of(data, loc)}: {_format_loc(loc, data)}: {msg}") from None
    seen: dict[str, int] = {}
    for index, check in enumerate(parsed.checks):
        if check.id in seen:
            line = _line_of(data, ("checks", index, "id"))
            raise PackError(f"{path}:{line}: check id {check.id!r} is used twice in this pack")
        seen[check.id] = index
    return Pack(
        id=parsed.pack,
        title=parsed.title,
        path=str(path),
        checks=parsed.checks,
        trusted_keys=parsed.trusted_keys,
    )


def _pack_files(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted([*source.glob("*.yml"), *source.glob("*.yaml")])
        if not files:
            raise PackError(f"{source}: no *.yml pack in this directory")
        return files
    if not source.exists():
        raise PackError(f"{source}: no such pack file or directory")
    return [source]


def load(extra: Iterable[str | Path] = (), shipped: bool = True) -> list[Pack]:
    """The shipped packs plus the operator's (files or directories), all validated, check ids unique."""
    sources = ([SHIPPED_DIR] if shipped else []) + [Path(p) for p in extra]
    packs: list[Pack] = []
    owners: dict[str, str] = {}
    for source in sources:
        for path in _pack_files(source):
            pack = load_file(path)
            for check in pack.checks:
                if check.id in owners:
                    raise PackError(
                        f"{path}:{_check_line(path, check.id)}: check id {check.id!r} is already defined "
                        f"in {owners[check.id]}"
                    )
                owners[check.id] = str(path)
            packs.append(pack)
    if not packs:
        raise PackError("no check pack to run")
    return packs


def _check_line(path: Path, check_id: str) -> int:
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if re.search(rf"\bid:\s*['\"]?{re.escape(check_id)}['\"]?\s*$", text):
            return number
    return 1


def checks_for(packs: Iterable[Pack], os_name: str) -> list[Check]:
    return [c for p in packs for c in p.checks if c.os == os_name]


def without_paths(packs: Sequence[Pack], paths: Sequence[str]) -> list[Pack]:
    """The packs with `paths` left out of every Linux tree walk (`prune`), for a host that keeps
    indicators on purpose (the evidence store). The same packs when there is nothing to leave out."""
    if not paths:
        return list(packs)
    out = []
    for pack in packs:
        checks = []
        for check in pack.checks:
            if check.os == "linux" and check.kind in ("files", "extensions"):
                value = getattr(check.probe, check.kind)
                probe = check.probe.model_copy(
                    update={check.kind: value.model_copy(update={"prune": [*value.prune, *paths]})}
                )
                check = check.model_copy(update={"probe": probe})
            checks.append(check)
        out.append(pack.model_copy(update={"checks": checks}))
    return out


# --- Reading items -----------------------------------------------------------------------------


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def item_time(item: dict[str, Any]) -> datetime | None:
    """The earliest time field of an item (epoch seconds or ISO 8601), as an aware UTC datetime."""
    times = [t for t in (parse_time(item.get(f)) for f in TIME_FIELDS) if t is not None]
    return min(times) if times else None


def parse_time(value: Any) -> datetime | None:
    if value in (None, "", "-"):
        return None
    number = _as_float(value)
    if number is not None:
        try:
            return datetime.fromtimestamp(number, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    text = str(value).strip()
    if text.startswith("/Date(") and text.endswith(")/"):  # PowerShell 5's JSON dates
        millis = _as_float(text[6:-2].split("+")[0].split("-")[0])
        return datetime.fromtimestamp(millis / 1000, UTC) if millis is not None else None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return "" if value is None else str(value)


def filter_items(match: Match, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items that pass every filter of the rule."""
    kept = []
    for item in items:
        if any(not re.search(p, _text(item.get(f))) for f, p in match.where.items()):
            continue
        if any(re.search(p, _text(item.get(f))) for f, p in match.unless.items()):
            continue
        if any(
            not any(s.lower() in _text(item.get(f)).lower() for s in subs)
            for f, subs in match.contains.items()
        ):
            continue
        if any(
            _text(item.get(f)).lower() not in {v.lower() for v in values}
            for f, values in match.any_of.items()
        ):
            continue
        if any((_as_float(item.get(f)) or float("-inf")) < v for f, v in match.at_least.items()):
            continue
        if any((_as_float(item.get(f)) or float("inf")) > v for f, v in match.at_most.items()):
            continue
        kept.append(item)
    return kept


def evaluate(check: Check, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The items that make the check match (empty for a matching `absent` rule), or None."""
    kept = filter_items(check.match, items)
    if check.match.absent:
        return [] if not kept else None
    return kept if len(kept) >= check.match.min_count else None


def base_name(path: str) -> str:
    return PurePosixPath(path.replace("\\", "/")).name
