"""What a WinRS command line does on the stand-in: cmd.exe or powershell.exe, answered from host state.

WinRS hands the command line to `cmd /c` (unless WINRS_SKIP_CMD_SHELL), so a line is read as cmd.exe would
read it; `powershell [options] -EncodedCommand <base64 UTF-16LE>` (pywinrm's run_ps, Ansible's winrm
connection) and `-Command ...` reach the PowerShell subset in `powershell.py`, and a script carrying the
triage probe header is answered by `probes.py`. As powershell.exe does with -EncodedCommand, errors go
to stderr as CLIXML, which pywinrm and Ansible decode.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import jinja2

from orchestrator_lab.windows import modules
from orchestrator_lab.windows import powershell as ps
from orchestrator_lab.windows.hoststate import HostState, normalize_path
from orchestrator_lab.windows.probes import ProbeHeaderError, answer, find_probes

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "data"),
    keep_trailing_newline=True,
    autoescape=False,
    undefined=jinja2.StrictUndefined,
)
OS_VERSION = "10.0.20348.2849"
NOT_RECOGNIZED = (
    "'{name}' is not recognized as an internal or external command,\noperable program or batch file.\n"
)


@dataclass
class Outcome:
    stdout: str
    stderr: str
    exit_code: int


@dataclass
class Session:
    """Who runs the command where: the shell's user, working directory, environment and address."""

    state: HostState
    user: str
    cwd: str
    env: dict[str, str]
    address: str


def default_env(hostname: str, user: str) -> dict[str, str]:
    profile = f"C:\\Users\\{user}"
    return {
        "ALLUSERSPROFILE": "C:\\ProgramData",
        "APPDATA": f"{profile}\\AppData\\Roaming",
        "COMPUTERNAME": hostname.upper(),
        "ComSpec": "C:\\Windows\\system32\\cmd.exe",
        "LOCALAPPDATA": f"{profile}\\AppData\\Local",
        "OS": "Windows_NT",
        "Path": "C:\\Windows\\system32;C:\\Windows;C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\",
        "PATHEXT": ".COM;.EXE;.BAT;.CMD;.VBS;.VBE;.JS;.JSE;.WSF;.WSH;.MSC",
        "PROCESSOR_ARCHITECTURE": "AMD64",
        "ProgramData": "C:\\ProgramData",
        "ProgramFiles": "C:\\Program Files",
        "PUBLIC": "C:\\Users\\Public",
        "SystemDrive": "C:",
        "SystemRoot": "C:\\Windows",
        "TEMP": f"{profile}\\AppData\\Local\\Temp",
        "TMP": f"{profile}\\AppData\\Local\\Temp",
        "USERDOMAIN": hostname.upper(),
        "USERNAME": user,
        "USERPROFILE": profile,
        "windir": "C:\\Windows",
    }


def needs_stdin(line: str) -> bool:
    """True when the program reads stdin before it can answer: its script (`powershell -Command -`, bare
    `powershell`), or Ansible's exec wrapper manifest (an -EncodedCommand bootstrap reading `$input`)."""
    program, rest = _split_program(line)
    if program not in ("powershell", "pwsh"):
        return False
    mode, value = _powershell_mode(rest)
    if mode == "encoded":
        script = _decode(value)
        return script is not None and modules.is_exec_bootstrap(script)
    return mode == "stdin"


def _decode(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-16-le")
    except (binascii.Error, UnicodeDecodeError):
        return None


def run(line: str, session: Session, stdin: bytes | None = None) -> Outcome:
    session.state.refresh()
    program, rest = _split_program(line)
    outcome = _powershell(rest, session, stdin) if program in ("powershell", "pwsh") else _cmd(line, session)
    outcome.stdout = _crlf(outcome.stdout)
    if not outcome.stderr.startswith("#< CLIXML"):
        outcome.stderr = _crlf(outcome.stderr)
    return outcome


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def _split_program(line: str) -> tuple[str, str]:
    m = re.match(r'\s*("([^"]*)"|(\S+))\s*(.*)$', line, re.S)
    if not m:
        return "", ""
    exe = (m.group(2) or m.group(3) or "").replace("/", "\\").rsplit("\\", 1)[-1].lower()
    return exe.removesuffix(".exe"), m.group(4)


# -- powershell.exe --------------------------------------------------------------------------------------
OPTIONS_WITH_VALUE = (
    "inputformat",
    "outputformat",
    "executionpolicy",
    "windowstyle",
    "version",
    "configurationname",
)
OPTIONS_FLAG = ("noprofile", "noninteractive", "nologo", "noexit", "sta", "mta")


def _powershell_mode(args: str) -> tuple[str, str]:
    """How powershell.exe gets its script: ("encoded", b64) / ("command", text) / ("stdin", "") / ("file", path)."""
    pos = 0
    while True:
        m = re.match(r'\s*("[^"]*"|\S+)', args[pos:])
        if not m:
            return "stdin", ""
        token = m.group(1)
        pos += m.end()
        if not token.startswith(("-", "/")):
            return "command", args[pos - len(token) :].strip()
        opt = token[1:].lower()
        if opt == "ec" or (opt and "encodedcommand".startswith(opt)):
            value = re.match(r"\s*(\S+)", args[pos:])
            return "encoded", value.group(1) if value else ""
        if opt and "command".startswith(opt):
            text = " ".join(windows_argv(args[pos:]))
            return ("stdin", "") if text == "-" else ("command", text)
        if opt and "file".startswith(opt):
            return "file", args[pos:].strip()
        if any(o.startswith(opt) for o in OPTIONS_WITH_VALUE):
            skip = re.match(r'\s*("[^"]*"|\S+)', args[pos:])
            pos += skip.end() if skip else 0
        elif not any(o.startswith(opt) for o in OPTIONS_FLAG):
            return "command", args[pos - len(token) :].strip()


def windows_argv(line: str) -> list[str]:
    """Split a command line as the Microsoft C runtime does (CommandLineToArgvW): how powershell.exe sees
    `-Command "..."`: quotes group, 2n backslashes + quote give n backslashes, 2n+1 give a literal quote."""
    args: list[str] = []
    buf: list[str] = []
    in_quotes = in_arg = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            j = i
            while j < len(line) and line[j] == "\\":
                j += 1
            count = j - i
            if j < len(line) and line[j] == '"':
                buf.append("\\" * (count // 2))
                if count % 2:
                    buf.append('"')
                    j += 1
            else:
                buf.append("\\" * count)
            in_arg, i = True, j
            continue
        if ch == '"':
            in_quotes, in_arg = not in_quotes, True
        elif ch in " \t" and not in_quotes:
            if in_arg:
                args.append("".join(buf))
                buf, in_arg = [], False
        else:
            buf.append(ch)
            in_arg = True
        i += 1
    if in_arg:
        args.append("".join(buf))
    return args


def _powershell(args: str, session: Session, stdin: bytes | None) -> Outcome:
    mode, value = _powershell_mode(args)
    clixml = mode == "encoded"
    if mode == "encoded":
        decoded = _decode(value)
        if decoded is None:
            return Outcome(
                "",
                "Cannot process the command because the value specified with -EncodedCommand is not properly "
                "encoded. The value must be Base64 encoded.\n",
                1,
            )
        script = decoded
        if modules.is_exec_bootstrap(script):
            return Outcome(*modules.run(stdin or b"", session))
    elif mode == "stdin":
        script = (stdin or b"").decode("utf-8", errors="replace")
    elif mode == "file":
        return Outcome("", "The lab's Windows stand-in does not run script files (-File).\n", 1)
    else:
        script = value
    try:
        probes = find_probes(script)
    except ProbeHeaderError as exc:
        return Outcome("", _ps_errors([str(exc)], clixml), 1)
    if probes is not None:
        return Outcome(answer(session.state, probes), "", 0)
    ctx = ps.Context(
        state=session.state,
        user=session.user,
        cwd=session.cwd,
        env=dict(session.env),
        native=lambda line, _ctx: _cmd(line, session, capture=True),
    )
    objects, error, code = ps.run_script(script, ctx)
    stdout = ps.format_output(objects)
    stderr = _ps_errors(ps.error_lines(error, script), clixml) if error else ""
    return Outcome(stdout, stderr, code)


def _ps_errors(lines: list[str], clixml: bool) -> str:
    if not clixml:
        return "".join(line + "\n" for line in lines)
    body = "".join(
        f'<S S="Error">{escape(line).replace(chr(13), "_x000D_").replace(chr(10), "_x000A_")}_x000D__x000A_</S>'
        for line in lines
    )
    return f'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">{body}</Objs>'


# -- cmd.exe ---------------------------------------------------------------------------------------------
def _cmd(line: str, session: Session, capture: bool = False) -> Any:
    """Run a cmd.exe line; with capture=True (a native command called from PowerShell) return stdout lines."""
    out: list[str] = []
    err: list[str] = []
    code = 0
    for part, joiner in _cmd_parts(line):
        if joiner == "&&" and code != 0:
            break
        code, text, error = _cmd_one(part, session)
        out.append(text)
        err.append(error)
    if capture:
        if code != 0:
            raise ps.PSError(
                "".join(err).strip() or f"native command failed with exit code {code}", "NotSpecified"
            )
        text = "".join(out).replace("\r\n", "\n")
        return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    return Outcome("".join(out), "".join(err), code)


def _cmd_parts(line: str) -> list[tuple[str, str]]:
    parts, joiner = [], "&"
    for piece in re.split(r'(&&|&)(?=(?:[^"]*"[^"]*")*[^"]*$)', line):
        if piece in ("&&", "&"):
            joiner = piece
        elif piece.strip():
            parts.append((piece.strip(), joiner))
    return parts


def _cmd_one(line: str, session: Session) -> tuple[int, str, str]:
    env = {k.casefold(): v for k, v in session.env.items()}
    line = re.sub(r"%(\w+)%", lambda m: env.get(m.group(1).casefold(), m.group(0)), line)
    program, rest = _split_program(line)
    state = session.state
    if program in ("powershell", "pwsh"):
        result = _powershell(rest, session, None)
        return result.exit_code, result.stdout, result.stderr
    if program == "cmd":
        m = re.match(r"/[ckCK]\s+(.*)$", rest.strip(), re.S)
        if not m:
            return 1, "", "The lab's Windows stand-in runs cmd only as cmd /c <command>.\n"
        inner = m.group(1).strip()
        if len(inner) >= 2 and inner[0] == inner[-1] == '"':
            inner = inner[1:-1]
        result = _cmd(inner, session)
        return result.exit_code, result.stdout, result.stderr
    if program == "hostname":
        return 0, state.hostname + "\n", ""
    if program == "whoami":
        return 0, f"{state.hostname}\\{session.user}".lower() + "\n", ""
    if program in ("echo", "echo."):
        text = line.strip()[5:] if program == "echo" else ""
        return 0, (text if text.strip() else ("" if program == "echo." else "ECHO is on.")) + "\n", ""
    if program == "ver":
        return 0, f"\nMicrosoft Windows [Version {OS_VERSION}]\n", ""
    if program == "ipconfig":
        return 0, _render("ipconfig.txt.j2", **_ipconfig_vars(session, "/all" in rest.lower())), ""
    if program == "vssadmin":
        if rest.strip().lower().startswith("list shadows"):
            return 0, _render("vssadmin_list_shadows.txt.j2", **_vss_vars(state)), ""
        return 1, "", "The lab's Windows stand-in only answers 'vssadmin list shadows'.\n"
    if program == "type":
        path = normalize_path(rest.strip().strip('"'), session.cwd)
        found = state.file(path)
        if not found:
            return 1, "", "The system cannot find the file specified.\n"
        if "content" not in found[1]:
            return 1, "", f"The lab's Windows stand-in keeps no bytes for '{path}'.\n"
        return 0, str(found[1]["content"]), ""
    if program == "exit":
        m = re.search(r"(-?\d+)", rest)
        return (int(m.group(1)) if m else 0), "", ""
    if program == "cd" and not rest.strip():
        return 0, session.cwd + "\n", ""
    return 1, "", NOT_RECOGNIZED.format(name=program or line.strip())


def _render(template: str, **variables: Any) -> str:
    return _TEMPLATES.get_template(template).render(**variables)


def _ipconfig_vars(session: Session, show_all: bool) -> dict[str, Any]:
    octets = session.address.split(".")
    return {
        "all": show_all,
        "hostname": session.state.hostname,
        "dns_suffix": str(session.state.data.get("dns_suffix", "lab.local")),
        "address": session.address,
        "gateway": ".".join([*octets[:3], "1"]) if len(octets) == 4 else "",
        "mac": "00-50-56-"
        + "-".join(f"{int(o) % 256:02X}" for o in (octets[1:] if len(octets) == 4 else [0, 0, 0])),
    }


def _vss_vars(state: HostState) -> dict[str, Any]:
    copies = []
    for sc in state.data["shadow_copies"]:
        created = datetime.fromisoformat(str(sc["created"]).replace("Z", "+00:00"))
        copies.append(
            {
                "id": sc["id"],
                "set_id": sc.get("set_id", sc["id"]),
                "created_local": created.strftime("%m/%d/%Y %I:%M:%S %p"),
            }
        )
    return {
        "shadow_copies": copies,
        "hostname": state.hostname.lower() + "." + str(state.data.get("dns_suffix", "lab.local")),
        "volume_guid": str(state.data.get("volume_guid", "6e2f8ba1-0000-0000-0000-100000000000")),
    }
