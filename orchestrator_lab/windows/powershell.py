"""The small PowerShell subset the stand-in answers, evaluated against host state.

There is no PowerShell parser for Python and no PowerShell here, so this is a deliberately small
interpreter: statements separated by newlines or `;`, pipelines of cmdlets with named/positional
parameters, quoted strings, `$env:` and simple variables, `try {} catch {}`, `exit N`. It covers what the
orchestrator's raw-task playbooks and ad-hoc checks send (file, registry and service cmdlets, hostname,
whoami, Get-Date...). Anything else is refused loudly (a PowerShell-style error naming the stand-in), never
guessed: a playbook that needs real PowerShell must be rehearsed on the Vagrant lab.

Known differences from real PowerShell: the first error stops the script (as with
`$ErrorActionPreference = 'Stop'`), objects are rendered with simplified default tables, and only the
listed cmdlets and parameters exist.
"""

from __future__ import annotations

import json
import ntpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator_lab.windows.hoststate import (
    HostState,
    entry_digest,
    matches,
    normalize_key,
    normalize_path,
)

PS_VERSION = "5.1.20348.2849"


class PSError(Exception):
    """A terminating error, rendered the way powershell.exe prints an ErrorRecord."""

    def __init__(
        self, message: str, category: str = "NotSpecified", error_id: str = "", target: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.error_id = error_id or category
        self.target = target
        self.statement = ""


class Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class PSObject:
    """A .NET object as far as output formatting and member access need: a type name and properties."""

    type_name: str
    props: dict[str, Any]

    def get(self, name: str) -> Any:
        for key, value in self.props.items():
            if key.casefold() == name.casefold():
                return value
        return None


@dataclass
class Context:
    state: HostState
    user: str
    cwd: str
    env: dict[str, str]
    variables: dict[str, Any] = field(default_factory=dict)
    native: Callable[[str, Context], list[Any]] | None = None


# -- lexing --------------------------------------------------------------------------------------------
def _strip_comments(script: str) -> str:
    script = re.sub(r"<#.*?#>", "", script, flags=re.S)
    out = []
    for line in script.splitlines():
        quote = None
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1] in " \t;"):
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def split_top(text: str, separators: str) -> list[str]:
    """Split on any of `separators` outside quotes, braces and parentheses."""
    parts, buf, depth, quote = [], [], 0, None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            buf.append(ch)
            if ch == "`" and quote == '"' and i + 1 < len(text):
                buf.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            buf.append(ch)
        elif ch == "`" and i + 1 < len(text) and text[i + 1] == "\n":
            i += 1
        elif ch in "({[":
            depth += 1
            buf.append(ch)
        elif ch in ")}]":
            depth -= 1
            buf.append(ch)
        elif ch in separators and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def _matching(text: str, start: int) -> int:
    """Index just past the bracket that closes the one at `start`."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    depth, quote = 0, None
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == text[start]:
            depth += 1
        elif ch == pairs[text[start]]:
            depth -= 1
            if depth == 0:
                return i + 1
    raise PSError("Missing closing bracket in statement block.", "ParserError", "MissingEndCurlyBrace")


TOKEN = re.compile(
    r"""\s*(?:
      (?P<sq>'(?:[^']|'')*')
    | (?P<dq>"(?:[^"`]|`.|"")*")
    | (?P<sub>\$?\()
    | (?P<comma>,)
    | (?P<word>[^\s,'"()]+)
    )""",
    re.X | re.S,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise PSError(
                f"Unexpected token '{text[pos:].strip()}' in expression or statement.", "ParserError"
            )
        kind = m.lastgroup or "word"
        if kind == "sub":
            start = m.start("sub") + len(m.group("sub")) - 1
            end = _matching(text, start)
            member = re.match(r"(\.[A-Za-z_]\w*)*", text[end:])
            tail = member.group(0) if member else ""
            tokens.append(("sub", text[start + 1 : end - 1] + "\0" + tail))
            pos = end + len(tail)
            continue
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


# -- values --------------------------------------------------------------------------------------------
def _variable(name: str, ctx: Context) -> Any:
    base, *members = name.split(".")
    lower = base.lower()
    if lower.startswith("env:"):
        value: Any = next((v for k, v in ctx.env.items() if k.casefold() == lower[4:]), None)
    elif lower in ("true", "false", "null"):
        value = {"true": True, "false": False, "null": None}[lower]
    elif lower == "psversiontable":
        value = PSObject(
            "Hashtable", {"PSVersion": PS_VERSION, "PSEdition": "Desktop", "CLRVersion": "4.0.30319.42000"}
        )
    elif lower == "pwd":
        value = ctx.cwd
    else:
        value = next((v for k, v in ctx.variables.items() if k.casefold() == lower), None)
    for member in members:
        value = _member(value, member)
    return value


def _member(value: Any, member: str) -> Any:
    if isinstance(value, list):
        return [_member(v, member) for v in value]
    if isinstance(value, PSObject):
        return value.get(member)
    if isinstance(value, str) and member.lower() == "length":
        return len(value)
    return None


def _expand(body: str, ctx: Context) -> str:
    escapes = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "`": "`", '"': '"', "$": "$"}
    body = body.replace('""', '"')
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "`" and i + 1 < len(body):
            out.append(escapes.get(body[i + 1], body[i + 1]))
            i += 2
            continue
        if ch == "$":
            m = re.match(r"\$(\{[^}]+\}|(?:env:)?\w+)", body[i:], re.I)
            if m:
                value = _variable(m.group(1).strip("{}"), ctx)
                out.append(_to_text(value))
                i += m.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _value(kind: str, text: str, ctx: Context) -> Any:
    if kind == "sq":
        return text[1:-1].replace("''", "'")
    if kind == "dq":
        return _expand(text[1:-1], ctx)
    if kind == "sub":
        inner, tail = text.split("\0", 1)
        values = run_pipeline(inner, ctx)
        value: Any = values[0] if len(values) == 1 else values
        for member in filter(None, tail.split(".")):
            value = _member(value, member)
        return value
    if text.startswith("$"):
        return _variable(text[1:], ctx)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return " ".join(_to_text(v) for v in value)
    if isinstance(value, PSObject):
        return str(value.props.get("Name", value.type_name))
    return str(value)


@dataclass
class Call:
    name: str
    named: dict[str, Any]
    positional: list[Any]

    def take(self, *names: str, position: int | None = None, default: Any = None) -> Any:
        for key in list(self.named):
            if (
                any(n.lower().startswith(key.lower()) and len(key) >= 2 for n in names)
                or key.lower() in names
            ):
                return self.named.pop(key)
        if position is not None and position < len(self.positional):
            value = self.positional[position]
            self.positional[position] = None
            return value
        return default

    def flag(self, *names: str) -> bool:
        value = self.take(*(n.lower() for n in names))
        return value is not None and value is not False


def _parse_call(segment: str, ctx: Context) -> Call | Any:
    tokens = _tokens(segment)
    if not tokens:
        raise PSError("An empty pipe element is not allowed.", "ParserError", "EmptyPipeElement")
    first_kind, first = tokens[0]
    if first_kind != "word" or first.startswith("$") or re.fullmatch(r"-?\d+", first):
        return _expression(tokens, ctx)
    if first == "&" or first == ".":
        tokens = tokens[1:]
        first = str(_value(*tokens[0], ctx))
    named: dict[str, Any] = {}
    positional: list[Any] = []
    i = 1
    pending: str | None = None
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "word" and re.fullmatch(r"-[A-Za-z][\w]*:?", text):
            if pending is not None:
                named[pending] = True
            pending = text[1:].rstrip(":")
            i += 1
            continue
        values = [_value(kind, text, ctx)]
        while i + 2 < len(tokens) + 1 and i + 1 < len(tokens) and tokens[i + 1][0] == "comma":
            values.append(_value(*tokens[i + 2], ctx))
            i += 2
        value = values if len(values) > 1 else values[0]
        if pending is not None:
            named[pending] = value
            pending = None
        else:
            positional.append(value)
        i += 1
    if pending is not None:
        named[pending] = True
    return Call(first, named, positional)


def _expression(tokens: list[tuple[str, str]], ctx: Context) -> Any:
    values = []
    for kind, text in tokens:
        if kind == "word" and re.fullmatch(r"-[A-Za-z]+|[-+*/%=!<>.]+", text):
            raise _not_emulated(f"operator {text}")
        if kind != "comma":
            values.append(_value(kind, text, ctx))
    return values if len(values) != 1 else values[0]


# -- execution -----------------------------------------------------------------------------------------
def run_script(script: str, ctx: Context) -> tuple[list[Any], PSError | None, int]:
    """Run a script: (output objects, the error that stopped it or None, exit code)."""
    output: list[Any] = []
    try:
        _run_block(_strip_comments(script), ctx, output)
    except PSError as err:
        return output, err, 1
    except Exit as done:
        return output, None, done.code
    return output, None, 0


def _run_block(text: str, ctx: Context, output: list[Any]) -> None:
    statements = split_top(text, "\n;")
    i = 0
    while i < len(statements):
        stmt = statements[i]
        # `} catch {`, `} else {` on the next line continue the statement, as in PowerShell
        while (
            re.match(r"(try|if)\b", stmt, re.I)
            and i + 1 < len(statements)
            and re.match(r"(catch|finally|else|elseif)\b", statements[i + 1], re.I)
        ):
            stmt = stmt + " " + statements[i + 1]
            i += 1
        try:
            _run_statement(stmt, ctx, output)
        except PSError as err:
            err.statement = err.statement or stmt
            raise
        i += 1


def _block_at(text: str, start: int) -> tuple[str, int]:
    """The body of the `{...}` block starting at `start` (after spaces), and the index past it."""
    brace = text.index("{", start)
    if text[start:brace].strip():
        raise PSError("Missing statement block.", "ParserError", "MissingStatementBlock")
    end = _matching(text, brace)
    return text[brace + 1 : end - 1], end


def _run_if(stmt: str, ctx: Context, output: list[Any]) -> None:
    pos = 0
    while True:
        m = re.match(r"\s*(if|elseif)\s*\(", stmt[pos:], re.I)
        if not m:
            break
        cond_start = pos + m.end() - 1
        cond_end = _matching(stmt, cond_start)
        body, pos = _block_at(stmt, cond_end)
        if _condition(stmt[cond_start + 1 : cond_end - 1], ctx):
            _run_block(body, ctx, output)
            return
        rest = re.match(r"\s*else(?!if)\b", stmt[pos:], re.I)
        if rest:
            body, pos = _block_at(stmt, pos + rest.end())
            _run_block(body, ctx, output)
            return
    if stmt[pos:].strip():
        raise _not_emulated(stmt[pos:].strip())


COMPARISONS = re.compile(r"\s+-(eq|ne|like|notlike|match|notmatch|gt|lt|ge|le)\s+", re.I)


def _condition(text: str, ctx: Context) -> bool:
    text = text.strip()
    negate = re.match(r"(-not\s+|!\s*)", text, re.I)
    if negate:
        return not _condition(text[negate.end() :], ctx)
    comparison = COMPARISONS.search(_mask_nested(text))
    if comparison:
        left = _scalar(run_pipeline(text[: comparison.start()], ctx))
        right = _scalar(run_pipeline(text[comparison.end() :], ctx))
        return _compare(comparison.group(1).lower(), left, right)
    values = run_pipeline(text, ctx)
    return len(values) > 1 or (len(values) == 1 and _truthy(values[0]))


def _mask_nested(text: str) -> str:
    """`text` with quoted strings and bracketed parts blanked, so operators inside them are not seen."""
    out, depth, quote = [], 0, None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
            out.append(" ")
        elif ch in "'\"":
            quote = ch
            out.append(" ")
        elif ch in "({[":
            depth += 1
            out.append(" ")
        elif ch in ")}]":
            depth -= 1
            out.append(" ")
        else:
            out.append(ch if depth == 0 else " ")
    return "".join(out)


def _scalar(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else (values or None)


def _truthy(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) > 1 or (len(value) == 1 and _truthy(value[0]))
    return value not in (None, False, 0, "")


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("gt", "lt", "ge", "le"):
        try:
            a, b = float(left), float(right)
        except (TypeError, ValueError):
            a, b = _to_text(left).casefold(), _to_text(right).casefold()
        return {"gt": a > b, "lt": a < b, "ge": a >= b, "le": a <= b}[op]
    a, b = _to_text(left), _to_text(right)
    if op in ("eq", "ne"):
        return (a.casefold() == b.casefold()) == (op == "eq")
    if op in ("like", "notlike"):
        return matches(a, b) == (op == "like")
    return (re.search(b, a, re.I) is not None) == (op == "match")


def _run_statement(stmt: str, ctx: Context, output: list[Any]) -> None:
    if re.match(r"if\s*\(", stmt, re.I):
        _run_if(stmt, ctx, output)
        return
    m = re.match(r"try\s*\{", stmt, re.I)
    if m:
        body_end = _matching(stmt, m.end() - 1)
        body = stmt[m.end() : body_end - 1]
        rest = stmt[body_end:].strip()
        handler = ""
        cm = re.match(r"catch\s*(\[[^\]]*\]\s*)?\{", rest, re.I)
        if cm:
            handler = rest[cm.end() : _matching(rest, cm.end() - 1) - 1]
        try:
            _run_block(body, ctx, output)
        except PSError:
            _run_block(handler, ctx, output)
        return
    m = re.match(r"exit\b\s*(.*)$", stmt, re.I)
    if m:
        code = m.group(1).strip()
        raise Exit(int(_value(*_tokens(code)[0], ctx)) if code else 0)
    m = re.match(r"(\$[\w:]+|\[[\w.]+\]::\w+)\s*=(?!=)\s*(.*)$", stmt, re.S)
    if m:
        target, rhs = m.group(1), m.group(2)
        values = run_pipeline(rhs, ctx) if not re.match(r"New-Object\b", rhs, re.I) else [rhs]
        value = values[0] if len(values) == 1 else values
        if target.lower().startswith("$env:"):
            ctx.env[target[5:]] = _to_text(value)
        elif target.startswith("$"):
            ctx.variables[target[1:]] = value
        return
    if re.match(r"(foreach|for|while|do|switch|function|param|begin|process|trap)\b", stmt, re.I):
        raise _not_emulated(stmt)
    output.extend(run_pipeline(stmt, ctx))


def _not_emulated(stmt: str) -> PSError:
    snippet = stmt.splitlines()[0][:60]
    return PSError(
        f"The lab's Windows stand-in does not emulate this PowerShell construct: '{snippet}'. "
        "Rehearse it on real Windows (the Vagrant lab).",
        "NotImplemented",
        "StandInNotEmulated",
    )


def run_pipeline(text: str, ctx: Context) -> list[Any]:
    values: list[Any] | None = None
    for segment in split_top(text, "|"):
        call = _parse_call(segment, ctx)
        if not isinstance(call, Call):
            if values is not None:
                raise PSError(
                    "Expressions are only allowed as the first element of a pipeline.", "ParserError"
                )
            values = call if isinstance(call, list) else [call]
            continue
        values = _invoke(call, ctx, values)
    return values or []


def _invoke(call: Call, ctx: Context, pipeline_input: list[Any] | None) -> list[Any]:
    static = re.fullmatch(r"\[([\w.]+)\]::(\w+)(\(\))?", call.name)
    if static:
        member = f"{static.group(1)}::{static.group(2)}".lower()
        if member in (
            "system.net.dns::gethostname",
            "environment::machinename",
            "system.environment::machinename",
        ):
            return [ctx.state.hostname]
        raise _not_emulated(call.name)
    name = call.name.lower().removesuffix(".exe")
    handler = CMDLETS.get(ALIASES.get(name, name))
    if handler is not None:
        return handler(call, ctx, pipeline_input)
    if ctx.native is not None and name in NATIVE:
        line = " ".join([call.name, *(_to_text(v) for v in call.positional if v is not None)])
        line += "".join(f" -{k}" if v is True else f" -{k} {_to_text(v)}" for k, v in call.named.items())
        return ctx.native(line, ctx)
    raise PSError(
        f"The term '{call.name}' is not recognized as the name of a cmdlet, function, script file, or operable "
        "program. Check the spelling of the name, or if a path was included, verify that the path is correct "
        "and try again.",
        "ObjectNotFound",
        "CommandNotFoundException",
        call.name,
    )


NATIVE = {"ipconfig", "vssadmin", "cmd", "ver"}


# -- cmdlets -------------------------------------------------------------------------------------------
def _path_arg(call: Call, ctx: Context, required: bool = True) -> str:
    raw = call.take("path", "literalpath", "fullname", position=0)
    if raw is None:
        if required:
            raise PSError(
                f"{call.name} : Cannot bind argument to parameter 'Path' because it is null.", "InvalidData"
            )
        return ctx.cwd
    if isinstance(raw, list):
        raw = raw[0]
    if isinstance(raw, PSObject):
        raw = raw.get("FullName") or raw.get("Path")
    return str(raw)


def _is_registry(path: str) -> bool:
    return bool(re.match(r"(registry::)?(HK[A-Z]{1,3}:|HKEY_)", path, re.I))


def _missing(path: str, cmdlet: str) -> PSError:
    return PSError(
        f"Cannot find path '{path}' because it does not exist.",
        "ObjectNotFound",
        f"PathNotFound,Microsoft.PowerShell.Commands.{cmdlet.replace('-', '')}Command",
        path,
    )


def _write_output(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    values = [v for v in [*call.positional, call.take("inputobject")] if v is not None]
    flat: list[Any] = []
    for v in values:
        flat.extend(v if isinstance(v, list) else [v])
    return flat


def _write_host(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    call.take("foregroundcolor")
    call.take("backgroundcolor")
    values = [v for v in [*call.positional, call.take("object")] if v is not None]
    return [" ".join(_to_text(v) for v in values)]


def _write_error(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    message = call.take("message", position=0)
    raise PSError(_to_text(message), "NotSpecified", "Microsoft.PowerShell.Commands.WriteErrorException")


def _hostname(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    return [ctx.state.hostname]


def _whoami(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    return [f"{ctx.state.hostname}\\{ctx.user}".lower()]


def _get_content(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    raw_flag = call.flag("raw")
    head = call.take("totalcount", "head", "first")
    tail = call.take("tail", "last")
    path = normalize_path(_path_arg(call, ctx), ctx.cwd)
    found = ctx.state.file(path)
    if not found:
        if ctx.state.is_dir(path):
            raise PSError(
                f"Access to the path '{path}' is denied.",
                "PermissionDenied",
                "GetContentReaderUnauthorizedAccessError",
            )
        raise _missing(path, "Get-Content")
    entry = found[1]
    if "content" not in entry:
        raise PSError(
            f"The lab's Windows stand-in keeps '{path}' as binary (size {entry.get('size')}, "
            f"sha256 {entry_digest(entry)}); Get-Content reads text files only.",
            "NotImplemented",
            "StandInNoContent",
            path,
        )
    content = str(entry["content"])
    if raw_flag:
        return [content]
    lines = content.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if head is not None:
        lines = lines[: int(head)]
    if tail is not None:
        lines = lines[-int(tail) :] if int(tail) else []
    return lines


def _set_content(
    call: Call, ctx: Context, pipeline_input: list[Any] | None, append: bool = False
) -> list[Any]:
    call.take("encoding")
    call.flag("force")
    no_newline = call.flag("nonewline")
    path = normalize_path(_path_arg(call, ctx), ctx.cwd)
    value = call.take("value", position=1)
    if value is None:
        value = pipeline_input if pipeline_input is not None else ""
    items = value if isinstance(value, list) else [value]
    sep = "" if no_newline else "\r\n"
    text = sep.join(_to_text(v) for v in items) + sep
    parent = ntpath.dirname(path)
    if not ctx.state.is_dir(parent):
        raise PSError(
            f"Could not find a part of the path '{path}'.",
            "ObjectNotFound",
            "DirectoryNotFoundException",
            path,
        )
    if ctx.state.is_dir(path) and not ctx.state.file(path):
        raise PSError(
            f"Access to the path '{path}' is denied.", "PermissionDenied", "UnauthorizedAccessException"
        )
    ctx.state.write_file(path, text, append=append)
    return []


def _add_content(call: Call, ctx: Context, pipeline_input: list[Any] | None) -> list[Any]:
    return _set_content(call, ctx, pipeline_input, append=True)


def _item(ctx: Context, path: str) -> PSObject:
    found = ctx.state.file(path)
    if found:
        real, entry = found
        return PSObject(
            "System.IO.FileInfo",
            {
                "Name": ntpath.basename(real),
                "FullName": real,
                "Length": entry.get("size", 0),
                "LastWriteTime": entry.get("mtime"),
                "Mode": "-a----",
                "Directory": ntpath.dirname(real),
            },
        )
    real = ctx.state.dir_name(path)
    return PSObject(
        "System.IO.DirectoryInfo",
        {
            "Name": ntpath.basename(real) or real,
            "FullName": real,
            "Mode": "d-----",
            "Directory": ntpath.dirname(real),
        },
    )


def _new_item(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    item_type = str(call.take("itemtype", "type", default="File")).lower()
    force = call.flag("force")
    value = call.take("value")
    raw = _path_arg(call, ctx)
    name = call.take("name")
    if _is_registry(raw):
        key = normalize_key(ntpath.join(raw, str(name)) if name else raw)
        if ctx.state.keys(key) and not force:
            raise PSError(
                "A key at this path already exists.", "ResourceExists", "System.IO.IOException", key
            )
        key = ctx.state.create_key(key)
        if value is not None:
            ctx.state.set_value(key, "(default)", value)
        return [PSObject("Microsoft.Win32.RegistryKey", {"Name": key})]
    path = normalize_path(ntpath.join(raw, str(name)) if name else raw, ctx.cwd)
    exists = ctx.state.file(path) or ctx.state.is_dir(path)
    if exists and not force:
        kind = "file" if ctx.state.file(path) else "directory"
        raise PSError(
            f"The {kind} '{path}' already exists.",
            "ResourceExists",
            "NewItemIOError,Microsoft.PowerShell.Commands.NewItemCommand",
            path,
        )
    if item_type in ("directory", "container"):
        ctx.state.make_dir(path)
    elif item_type == "file":
        parent = ntpath.dirname(path)
        if not ctx.state.is_dir(parent):
            if not force:
                raise PSError(
                    f"Could not find a part of the path '{path}'.", "WriteError", "NewItemIOError", path
                )
            ctx.state.make_dir(parent)
        ctx.state.write_file(path, _to_text(value) if value is not None else "")
    else:
        raise _not_emulated(f"New-Item -ItemType {item_type}")
    return [_item(ctx, path)]


def _remove_item(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    recurse = call.flag("recurse")
    call.flag("force")
    silent = str(call.take("erroraction", "ea", default="")).lower() in ("silentlycontinue", "ignore")
    literal = any(k.lower() == "literalpath" for k in call.named)
    raw = _path_arg(call, ctx)
    if _is_registry(raw):
        keys = ctx.state.keys(raw)
        if not keys:
            if silent:
                return []
            raise _missing(raw, "Remove-Item")
        for key in keys:
            ctx.state.remove_key(key)
        return []
    paths = _resolve(ctx, raw, literal)
    if not paths:
        if silent or _has_wildcard(raw, literal):
            return []
        raise _missing(normalize_path(raw, ctx.cwd), "Remove-Item")
    for path in paths:
        if not ctx.state.remove(path, recurse):
            raise PSError(
                f"The item at {path} has children and the Recurse parameter was not specified.",
                "WriteError",
                "RemoveItemUnauthorizedAccessError",
                path,
            )
    return []


def _has_wildcard(raw: str, literal: bool) -> bool:
    return not literal and any(c in raw for c in "*?")


def _resolve(ctx: Context, raw: str, literal: bool = False) -> list[str]:
    """Existing paths `raw` names: itself, or with -Path (not -LiteralPath) the children its wildcard
    last segment matches, as PowerShell's provider globbing does."""
    path = normalize_path(raw, ctx.cwd)
    if not _has_wildcard(raw, literal):
        return [path] if ctx.state.file(path) or ctx.state.is_dir(path) else []
    parent, pattern = ntpath.split(path)
    if any(c in parent for c in "*?"):
        raise _not_emulated(f"wildcards before the last path segment: {raw}")
    return [
        child for child, _is_dir in ctx.state.children(parent) if matches(ntpath.basename(child), pattern)
    ]


def _test_path(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    path_type = str(call.take("pathtype", default="Any")).lower()
    literal = any(k.lower() == "literalpath" for k in call.named)
    raw = _path_arg(call, ctx)
    if _is_registry(raw):
        return [bool(ctx.state.keys(raw))]
    kinds = [ctx.state.file(p) is not None for p in _resolve(ctx, raw, literal)]
    return [{"leaf": any(kinds), "container": not all(kinds)}.get(path_type, True) if kinds else False]


def _get_child_item(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    recurse = call.flag("recurse")
    depth = call.take("depth")
    filt = call.take("filter", "include")
    only_files = call.flag("file")
    only_dirs = call.flag("directory")
    names = call.flag("name")
    call.flag("force")
    path = normalize_path(_path_arg(call, ctx, required=False), ctx.cwd)
    if ctx.state.file(path):
        return [_item(ctx, path)]
    if not ctx.state.is_dir(path):
        raise _missing(path, "Get-ChildItem")
    max_depth = int(depth) if depth is not None else (None if recurse else 0)
    entries: list[tuple[str, bool]] = []
    stack = [(path, 0)]
    while stack:
        folder, level = stack.pop(0)
        for child, is_dir in ctx.state.children(folder):
            entries.append((child, is_dir))
            if is_dir and (max_depth is None or level < max_depth):
                stack.append((child, level + 1))
    result = []
    for child, is_dir in entries:
        if (only_files and is_dir) or (only_dirs and not is_dir):
            continue
        if filt and not matches(ntpath.basename(child), str(filt)):
            continue
        result.append(child[len(path.rstrip("\\")) + 1 :] if names else _item(ctx, child))
    return result


def _get_item(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    raw = _path_arg(call, ctx)
    if _is_registry(raw):
        keys = ctx.state.keys(raw)
        if not keys:
            raise _missing(raw, "Get-Item")
        return [PSObject("Microsoft.Win32.RegistryKey", {"Name": k, **ctx.state.values(k)}) for k in keys]
    path = normalize_path(raw, ctx.cwd)
    if not ctx.state.file(path) and not ctx.state.is_dir(path):
        raise _missing(path, "Get-Item")
    return [_item(ctx, path)]


def _get_file_hash(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    algorithm = str(call.take("algorithm", default="SHA256")).upper()
    path = normalize_path(_path_arg(call, ctx), ctx.cwd)
    found = ctx.state.file(path)
    if not found:
        raise _missing(path, "Get-FileHash")
    real, entry = found
    name = {"SHA1": "sha1", "SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512", "MD5": "md5"}.get(
        algorithm
    )
    digest = entry_digest(entry, name) if name else None
    if digest is None:
        raise _not_emulated(
            f"Get-FileHash -Algorithm {algorithm} on a file whose bytes the stand-in does not keep"
        )
    return [
        PSObject(
            "Microsoft.PowerShell.Commands.FileHashInfo",
            {"Algorithm": algorithm, "Hash": digest.upper(), "Path": real},
        )
    ]


def _service_obj(name: str, svc: dict[str, Any]) -> PSObject:
    return PSObject(
        "System.ServiceProcess.ServiceController",
        {
            "Status": svc.get("status"),
            "Name": name,
            "DisplayName": svc.get("display_name", name),
            "StartType": svc.get("start_type"),
        },
    )


def _services_named(call: Call, ctx: Context) -> list[tuple[str, dict[str, Any]]]:
    wanted = call.take("name", "displayname", position=0)
    if wanted is None:
        return sorted(ctx.state.data["services"].items(), key=lambda kv: kv[0].casefold())
    found = []
    for pattern in wanted if isinstance(wanted, list) else [wanted]:
        pattern = str(pattern)
        if "*" in pattern or "?" in pattern:
            found.extend(
                (n, s)
                for n, s in sorted(ctx.state.data["services"].items(), key=lambda kv: kv[0].casefold())
                if matches(n, pattern) or matches(str(s.get("display_name", "")), pattern)
            )
            continue
        svc = ctx.state.service(pattern)
        if svc is None:
            raise PSError(
                f"Cannot find any service with service name '{pattern}'.",
                "ObjectNotFound",
                "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand",
                pattern,
            )
        found.append(svc)
    return found


def _get_service(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    call.take("erroraction", "ea")
    return [_service_obj(n, s) for n, s in _services_named(call, ctx)]


def _change_service(call: Call, ctx: Context, _in: list[Any] | None, status: str) -> list[Any]:
    call.flag("force")
    call.flag("passthru")
    for name, svc in _services_named(call, ctx):
        if status == "Running" and svc.get("start_type") == "Disabled":
            raise PSError(
                f"Service '{svc.get('display_name', name)} ({name})' cannot be started due to the following error: "
                f"Cannot start service {name} on computer '.'.",
                "OpenError",
                "CouldNotStartService,Microsoft.PowerShell.Commands.StartServiceCommand",
                name,
            )
        ctx.state.update_service(name, status=status)
    return []


def _set_service(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    start_type = call.take("startuptype", "starttype")
    status = call.take("status")
    for name, _svc in _services_named(call, ctx):
        changes = {}
        if start_type is not None:
            changes["start_type"] = {
                "automatic": "Automatic",
                "manual": "Manual",
                "disabled": "Disabled",
            }.get(str(start_type).lower(), str(start_type))
        if status is not None:
            changes["status"] = str(status).capitalize()
        ctx.state.update_service(name, **changes)
    return []


def _property_objects(call: Call, ctx: Context, name: Any) -> list[Any]:
    raw = _path_arg(call, ctx)
    keys = ctx.state.keys(raw)
    if not keys:
        raise _missing(raw, call.name)
    result = []
    for key in keys:
        values = ctx.state.values(key)
        if name is not None:
            values = {n: v for n, v in values.items() if n.casefold() == str(name).casefold()}
            if not values:
                raise PSError(
                    f"Property {name} does not exist at path {key}.",
                    "InvalidArgument",
                    "System.Management.Automation.PSArgumentException",
                    str(name),
                )
        result.append(PSObject("System.Management.Automation.PSCustomObject", {**values, "PSPath": key}))
    return result


def _get_item_property(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    return _property_objects(call, ctx, call.take("name", position=1))


def _get_item_property_value(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    name = call.take("name", position=1)
    return [obj.get(str(name)) for obj in _property_objects(call, ctx, name)]


def _set_item_property(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    name = call.take("name", position=1)
    value = call.take("value", position=2)
    call.take("propertytype", "type")
    call.flag("force")
    raw = _path_arg(call, ctx)
    keys = ctx.state.keys(raw)
    if not keys:
        raise _missing(raw, call.name)
    for key in keys:
        ctx.state.set_value(key, str(name), value)
    return []


def _remove_item_property(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    name = str(call.take("name", position=1))
    raw = _path_arg(call, ctx)
    keys = ctx.state.keys(raw)
    if not keys:
        raise _missing(raw, "Remove-ItemProperty")
    for key in keys:
        ctx.state.remove_value(key, name)
    return []


def _get_date(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    fmt = call.take("format")
    uformat = call.take("uformat")
    now = datetime.now(UTC)
    if fmt in ("o", "O"):
        return [now.isoformat().replace("+00:00", "Z")]
    if fmt in ("s",):
        return [now.strftime("%Y-%m-%dT%H:%M:%S")]
    if fmt in ("u",):
        return [now.strftime("%Y-%m-%d %H:%M:%SZ")]
    if uformat is not None:
        return [now.strftime(str(uformat))]
    if fmt is not None:
        raise _not_emulated(f"Get-Date -Format {fmt}")
    return [
        now.strftime("%A, %B ")
        + str(now.day)
        + now.strftime(", %Y ")
        + now.strftime("%I:%M:%S %p").lstrip("0")
    ]


def _get_scheduled_task(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    wanted = call.take("taskname", position=0)
    tasks = ctx.state.data["scheduled_tasks"]
    return [
        PSObject(
            "Microsoft.Management.Infrastructure.CimInstance#Root/Microsoft/Windows/TaskScheduler/MSFT_ScheduledTask",
            {
                "TaskPath": t["path"],
                "TaskName": t["name"],
                "State": t.get("state", "Ready"),
                "Actions": t["action"],
            },
        )
        for t in tasks
        if wanted is None or matches(t["name"], str(wanted))
    ]


def _out_null(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    return []


def _out_string(call: Call, ctx: Context, pipeline_input: list[Any] | None) -> list[Any]:
    return [format_output(pipeline_input or [])]


def _select_object(call: Call, ctx: Context, pipeline_input: list[Any] | None) -> list[Any]:
    expand = call.take("expandproperty")
    first = call.take("first")
    prop = call.take("property", position=0)
    items = list(pipeline_input or [])
    if first is not None:
        items = items[: int(first)]
    if expand is not None:
        return [_member(i, str(expand)) for i in items]
    if prop is not None:
        names = prop if isinstance(prop, list) else [prop]
        return [PSObject("Selected", {str(n): _member(i, str(n)) for n in names}) for i in items]
    return items


def _jsonable(value: Any) -> Any:
    if isinstance(value, PSObject):
        return {k: _jsonable(v) for k, v in value.props.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _convert_to_json(call: Call, ctx: Context, pipeline_input: list[Any] | None) -> list[Any]:
    compress = call.flag("compress")
    call.take("depth")
    value = call.take("inputobject", position=0)
    items = pipeline_input if value is None else [value]
    data = _jsonable(items[0] if items and len(items) == 1 else items)
    return [json.dumps(data, separators=(",", ":")) if compress else json.dumps(data, indent=4)]


def _set_location(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    path = normalize_path(_path_arg(call, ctx), ctx.cwd)
    if not ctx.state.is_dir(path):
        raise _missing(path, "Set-Location")
    ctx.cwd = ctx.state.dir_name(path)
    return []


def _get_location(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    return [PSObject("System.Management.Automation.PathInfo", {"Path": ctx.cwd})]


def _noop(call: Call, ctx: Context, _in: list[Any] | None) -> list[Any]:
    return []


CMDLETS: dict[str, Callable[[Call, Context, list[Any] | None], list[Any]]] = {
    "write-output": _write_output,
    "write-host": _write_host,
    "write-error": _write_error,
    "hostname": _hostname,
    "whoami": _whoami,
    "get-content": _get_content,
    "set-content": _set_content,
    "add-content": _add_content,
    "new-item": _new_item,
    "remove-item": _remove_item,
    "test-path": _test_path,
    "get-childitem": _get_child_item,
    "get-item": _get_item,
    "get-filehash": _get_file_hash,
    "get-service": _get_service,
    "start-service": lambda call, ctx, _in: _change_service(call, ctx, _in, "Running"),
    "stop-service": lambda call, ctx, _in: _change_service(call, ctx, _in, "Stopped"),
    "restart-service": lambda call, ctx, _in: _change_service(call, ctx, _in, "Running"),
    "set-service": _set_service,
    "get-itemproperty": _get_item_property,
    "get-itempropertyvalue": _get_item_property_value,
    "set-itemproperty": _set_item_property,
    "new-itemproperty": _set_item_property,
    "remove-itemproperty": _remove_item_property,
    "get-date": _get_date,
    "get-scheduledtask": _get_scheduled_task,
    "out-null": _out_null,
    "out-string": _out_string,
    "select-object": _select_object,
    "convertto-json": _convert_to_json,
    "set-location": _set_location,
    "get-location": _get_location,
    "set-strictmode": _noop,
    "set-executionpolicy": _noop,
}

ALIASES = {
    "echo": "write-output",
    "write": "write-output",
    "gc": "get-content",
    "cat": "get-content",
    "type": "get-content",
    "sc": "set-content",
    "ac": "add-content",
    "ni": "new-item",
    "md": "new-item",
    "mkdir": "new-item",
    "rm": "remove-item",
    "del": "remove-item",
    "ri": "remove-item",
    "erase": "remove-item",
    "rd": "remove-item",
    "rmdir": "remove-item",
    "gci": "get-childitem",
    "dir": "get-childitem",
    "ls": "get-childitem",
    "gi": "get-item",
    "gsv": "get-service",
    "sasv": "start-service",
    "spsv": "stop-service",
    "gp": "get-itemproperty",
    "gpv": "get-itempropertyvalue",
    "sp": "set-itemproperty",
    "rp": "remove-itemproperty",
    "select": "select-object",
    "cd": "set-location",
    "sl": "set-location",
    "chdir": "set-location",
    "pwd": "get-location",
    "gl": "get-location",
}


# -- output formatting ---------------------------------------------------------------------------------
TABLES = {
    "System.ServiceProcess.ServiceController": (("Status", 8), ("Name", 18), ("DisplayName", 0)),
    "Microsoft.PowerShell.Commands.FileHashInfo": (("Algorithm", 11), ("Hash", 66), ("Path", 0)),
    "System.Management.Automation.PathInfo": (("Path", 0),),
}


def format_output(objects: list[Any]) -> str:
    """Text as powershell.exe's default formatter would roughly print it (CRLF line ends)."""
    lines: list[str] = []
    previous_type = None
    for obj in objects:
        if isinstance(obj, PSObject):
            if obj.type_name in TABLES:
                columns = TABLES[obj.type_name]
                if obj.type_name != previous_type:
                    lines += [
                        "",
                        _row([c for c, _ in columns], columns),
                        _row(["-" * len(c) for c, _ in columns], columns),
                    ]
                lines.append(_row([_to_text(obj.get(c)) for c, _ in columns], columns))
            elif obj.type_name.startswith("System.IO."):
                directory = obj.get("Directory")
                if previous_type != ("dir", directory):
                    lines += [
                        "",
                        f"    Directory: {directory}",
                        "",
                        "Mode                 LastWriteTime         Length Name",
                        "----                 -------------         ------ ----",
                    ]
                length = "" if obj.type_name.endswith("DirectoryInfo") else str(obj.get("Length"))
                lines.append(
                    f"{obj.get('Mode'):<10} {_to_text(obj.get('LastWriteTime')):>25} {length:>14} {obj.get('Name')}"
                )
                previous_type = ("dir", directory)
                continue
            else:
                width = max((len(k) for k in obj.props), default=0)
                lines += [""] + [f"{k:<{width}} : {_to_text(v)}" for k, v in obj.props.items()] + [""]
            previous_type = obj.type_name
        else:
            if previous_type is not None:
                lines.append("")
            previous_type = None
            lines.extend(
                _to_text(obj).replace("\r\n", "\n").split("\n") if isinstance(obj, str) else [_to_text(obj)]
            )
    if any(isinstance(o, PSObject) for o in objects):
        lines.append("")
    return "".join(line + "\r\n" for line in lines)


def _row(values: list[str], columns: tuple[tuple[str, int], ...]) -> str:
    return " ".join(v.ljust(w) if w else v for v, (_, w) in zip(values, columns, strict=True)).rstrip()


def error_lines(err: PSError, script: str) -> list[str]:
    """An ErrorRecord as powershell.exe writes it to stderr in its default (NormalView) error view."""
    invocation = err.statement.strip().splitlines()[0] if err.statement.strip() else ""
    at = script.find(invocation) if invocation else -1
    line_no = script.count("\n", 0, at) + 1 if at >= 0 else 1
    name = invocation.split()[0] if invocation else ""
    head = err.message if err.category in ("ParserError", "NotImplemented") else f"{name} : {err.message}"
    target = f"({err.target}:String)" if err.target else "(:)"
    return [
        head,
        f"At line:{line_no} char:1",
        f"+ {invocation}",
        "+ " + "~" * max(len(invocation), 1),
        f"    + CategoryInfo          : {err.category}: {target} [{name}], {err.error_id.split(',')[0]}",
        f"    + FullyQualifiedErrorId : {err.error_id}",
        "",
    ]
