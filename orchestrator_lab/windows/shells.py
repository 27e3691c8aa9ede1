"""WinRS on one stand-in host: shells, commands and their output streams (MS-WSMV 3.1.4.x).

A command runs when it is created (or, for one that reads its script from stdin, when the client sends
stdin with End="true"); its output is then handed out by Receive in chunks that fit the client's
MaxEnvelopeSize, the last one carrying CommandState Done and the exit code, as WinRM does. A host whose
scenario sets `faults.hang` never finishes a command: Receive answers with the OperationTimeout fault the
client retries on, which is how a hung Windows host looks on the wire.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator_lab.windows import commands, soap
from orchestrator_lab.windows.hoststate import HostState, normalize_path
from orchestrator_lab.windows.soap import Fault, Request, element, q

DEFAULT_IDLE_TIMEOUT = 7200.0
CMD_LINE_LIMIT = 8191  # cmd.exe's maximum command line, which WinRS goes through unless WINRS_SKIP_CMD_SHELL
CREATE_PROCESS_LIMIT = 32767
MAX_RECEIVE_WAIT = 60.0


@dataclass
class Command:
    id: str
    line: str
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    stdin: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def done(self) -> bool:
        return self.exit_code is not None


@dataclass
class Shell:
    id: str
    owner: str
    codepage: str
    cwd: str
    env: dict[str, str]
    idle_timeout: float
    input_streams: str
    output_streams: str
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    commands: dict[str, Command] = field(default_factory=dict)


def _codec(codepage: str) -> str:
    return {"65001": "utf-8", "437": "cp437", "1252": "cp1252"}.get(codepage, "utf-8")


class Host:
    """One stand-in Windows host behind one listen address."""

    def __init__(self, address: str, port: int, state_path: Path, users: dict[str, str]) -> None:
        self.address = address
        self.port = port
        self.state = HostState(state_path)
        self.users = users
        self.shells: dict[str, Shell] = {}
        self.lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.state.hostname

    # -- dispatch --------------------------------------------------------------------------------------
    def handle(self, req: Request, user: str) -> bytes:
        if req.action == "Identify":
            return soap.envelope("", "", self._identify())
        if req.resource_uri and req.resource_uri.rstrip("/").lower() != soap.CMD_RESOURCE:
            raise Fault(
                "w:DestinationUnreachable",
                "The WS-Management service cannot process the request. The resource URI is not supported by "
                "the lab's Windows stand-in (only the WinRS cmd shell is).",
                2150858770,
            )
        handlers = {
            soap.CREATE: self._create,
            soap.DELETE: self._delete,
            soap.COMMAND: self._command,
            soap.SEND: self._send,
            soap.RECEIVE: self._receive,
            soap.SIGNAL: self._signal,
        }
        handler = handlers.get(req.action)
        if handler is None:
            raise Fault(
                "a:ActionNotSupported",
                "The WS-Management service cannot process the request because the action is not supported.",
                2150858754,
            )
        action, body = handler(req, user)
        return soap.envelope(action, req.message_id, *body)

    def _identify(self) -> ET.Element:
        return element(
            "wsmid",
            "IdentifyResponse",
            children=(
                element("wsmid", "ProtocolVersion", "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"),
                element("wsmid", "ProductVendor", "Microsoft Corporation"),
                element("wsmid", "ProductVersion", f"OS: {commands.OS_VERSION} SP: 0.0 Stack: 3.0"),
            ),
        )

    def _shell(self, req: Request, user: str) -> Shell:
        shell_id = req.selectors.get("ShellId", "")
        with self.lock:
            shell = self.shells.get(shell_id.upper())
        if shell is None:
            raise soap.invalid_selectors(shell_id)
        if shell.owner.casefold() != user.casefold():
            raise soap.access_denied()
        shell.last_used = time.monotonic()
        return shell

    def _command_of(self, shell: Shell, command_id: str) -> Command:
        command = shell.commands.get(command_id.upper())
        if command is None:
            raise Fault(
                "w:InvalidParameter",
                "The parameter is incorrect.",
                87,
                f"The WinRS command {command_id} was not found in shell {shell.id}.",
            )
        return command

    # -- operations ------------------------------------------------------------------------------------
    def _create(self, req: Request, user: str) -> tuple[str, list[ET.Element]]:
        node = req.body if req.body is not None else ET.Element("none")
        env = commands.default_env(self.name, user)
        for var in node.iterfind(f"{q('rsp', 'Environment')}/{q('rsp', 'Variable')}"):
            env[var.get("Name", "")] = var.text or ""
        workdir = node.findtext(q("rsp", "WorkingDirectory"))
        idle = soap._duration(node.findtext(q("rsp", "IdleTimeOut")), DEFAULT_IDLE_TIMEOUT)
        shell = Shell(
            id=str(uuid.uuid4()).upper(),
            owner=user,
            codepage=req.options.get("WINRS_CODEPAGE", "437"),
            cwd=normalize_path(workdir) if workdir else env["USERPROFILE"],
            env=env,
            idle_timeout=idle,
            input_streams=node.findtext(q("rsp", "InputStreams")) or "stdin",
            output_streams=node.findtext(q("rsp", "OutputStreams")) or "stdout stderr",
        )
        with self.lock:
            now = time.monotonic()
            for stale in [s for s in self.shells.values() if now - s.last_used > s.idle_timeout]:
                del self.shells[stale.id]
            self.shells[shell.id] = shell
        endpoint = f"http://{self.address}:{self.port}/wsman"
        created = element(
            "x",
            "ResourceCreated",
            children=(
                element("a", "Address", endpoint),
                element(
                    "a",
                    "ReferenceParameters",
                    children=(
                        element("w", "ResourceURI", soap.CMD_RESOURCE),
                        element(
                            "w",
                            "SelectorSet",
                            children=(element("w", "Selector", shell.id, {"Name": "ShellId"}),),
                        ),
                    ),
                ),
            ),
        )
        info = element(
            "rsp",
            "Shell",
            children=(
                element("rsp", "ShellId", shell.id),
                element("rsp", "ResourceUri", soap.CMD_RESOURCE),
                element("rsp", "Owner", user),
                element("rsp", "ClientIP", self.address),
                element("rsp", "IdleTimeOut", f"PT{shell.idle_timeout:.3f}S"),
                element("rsp", "InputStreams", shell.input_streams),
                element("rsp", "OutputStreams", shell.output_streams),
                element("rsp", "ShellRunTime", "P0DT0H0M0S"),
                element("rsp", "ShellInactivity", "P0DT0H0M0S"),
            ),
        )
        return soap.TRANSFER + "CreateResponse", [created, info]

    def _delete(self, req: Request, user: str) -> tuple[str, list[ET.Element]]:
        shell = self._shell(req, user)
        with self.lock:
            self.shells.pop(shell.id, None)
        for command in shell.commands.values():
            self._finish(command, None)
        return soap.TRANSFER + "DeleteResponse", []

    def _command(self, req: Request, user: str) -> tuple[str, list[ET.Element]]:
        shell = self._shell(req, user)
        node = req.body if req.body is not None else ET.Element("none")
        program = (node.findtext(q("rsp", "Command")) or "").strip()
        arguments = [a.text or "" for a in node.iterfind(q("rsp", "Arguments"))]
        command = Command(id=str(uuid.uuid4()).upper(), line=" ".join([program, *arguments]).strip())
        shell.commands[command.id] = command
        via_cmd = req.options.get("WINRS_SKIP_CMD_SHELL", "FALSE").upper() != "TRUE"
        if len(command.line) > (CMD_LINE_LIMIT if via_cmd else CREATE_PROCESS_LIMIT):
            # cmd.exe (and CreateProcess) refuse longer lines: real Windows fails a large `run_ps` script here
            command.stderr += b"The command line is too long.\r\n"
            self._finish(command, 1)
        elif not commands.needs_stdin(command.line):
            self._execute(shell, command)
        return soap.SHELL + "CommandResponse", [
            element("rsp", "CommandResponse", children=(element("rsp", "CommandId", command.id),))
        ]

    def _execute(self, shell: Shell, command: Command) -> None:
        if self.state.data.get("faults", {}).get("hang"):
            return
        session = commands.Session(self.state, shell.owner, shell.cwd, shell.env, self.address)
        with self.state.lock:  # one command at a time per host: commands read and write the same state
            outcome = commands.run(command.line, session, bytes(command.stdin))
        codec = _codec(shell.codepage)
        with command.cond:
            command.stdout += outcome.stdout.encode(codec, errors="replace")
            command.stderr += outcome.stderr.encode(codec, errors="replace")
        self._finish(command, outcome.exit_code)

    def _finish(self, command: Command, exit_code: int | None) -> None:
        with command.cond:
            if command.exit_code is None:
                command.exit_code = (
                    exit_code if exit_code is not None else -1073741510
                )  # STATUS_CONTROL_C_EXIT
            command.cond.notify_all()

    def _send(self, req: Request, user: str) -> tuple[str, list[ET.Element]]:
        shell = self._shell(req, user)
        node = req.body if req.body is not None else ET.Element("none")
        for stream in node.iterfind(q("rsp", "Stream")):
            command = self._command_of(shell, stream.get("CommandId", ""))
            command.stdin += base64.b64decode(stream.text or "")
            if stream.get("End", "false").lower() == "true" and not command.done:
                self._execute(shell, command)
        return soap.SHELL + "SendResponse", [element("rsp", "SendResponse")]

    def _receive(self, req: Request, user: str) -> tuple[str, list[ET.Element]]:
        shell = self._shell(req, user)
        node = req.body if req.body is not None else ET.Element("none")
        desired = node.find(q("rsp", "DesiredStream"))
        command = self._command_of(shell, desired.get("CommandId", "") if desired is not None else "")
        budget = max(1024, (req.max_envelope - 4096) * 3 // 4)
        deadline = time.monotonic() + min(req.operation_timeout, MAX_RECEIVE_WAIT)
        with command.cond:
            while not command.done and not command.stdout and not command.stderr:
                remaining = deadline - time.monotonic()
                woken = remaining > 0 and command.cond.wait(remaining)
                if not woken and not command.done and not command.stdout and not command.stderr:
                    raise soap.operation_timeout()
            out = bytes(command.stdout[:budget])
            del command.stdout[: len(out)]
            err = bytes(command.stderr[: budget - len(out)])
            del command.stderr[: len(err)]
            finished = command.done and not command.stdout and not command.stderr
            exit_code = command.exit_code
        streams = []
        for name, data in (("stdout", out), ("stderr", err)):
            if data:
                streams.append(
                    element(
                        "rsp",
                        "Stream",
                        base64.b64encode(data).decode(),
                        {"Name": name, "CommandId": command.id},
                    )
                )
        if finished:
            streams += [
                element("rsp", "Stream", None, {"Name": "stdout", "CommandId": command.id, "End": "true"}),
                element("rsp", "Stream", None, {"Name": "stderr", "CommandId": command.id, "End": "true"}),
                element(
                    "rsp",
                    "CommandState",
                    attrib={"CommandId": command.id, "State": soap.STATE_DONE},
                    children=(element("rsp", "ExitCode", str(exit_code)),),
                ),
            ]
        else:
            streams.append(
                element("rsp", "CommandState", attrib={"CommandId": command.id, "State": soap.STATE_RUNNING})
            )
        return soap.SHELL + "ReceiveResponse", [element("rsp", "ReceiveResponse", children=tuple(streams))]

    def _signal(self, req: Request, user: str) -> tuple[str, list[ET.Element]]:
        shell = self._shell(req, user)
        node = req.body if req.body is not None else ET.Element("none")
        command = self._command_of(shell, node.get("CommandId", ""))
        code = (node.findtext(q("rsp", "Code")) or "").strip()
        self._finish(command, None)
        if code == soap.SIGNAL_TERMINATE:
            shell.commands.pop(command.id, None)
        return soap.SHELL + "SignalResponse", [element("rsp", "SignalResponse")]
