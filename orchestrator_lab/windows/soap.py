"""WS-Management SOAP envelopes: reading requests, writing responses and faults as WinRM writes them.

Clients find elements by local name (pywinrm, Ansible) or by namespace, so the envelopes use the same
namespaces, actions and fault codes as Windows' WinRM service (MS-WSMV), with its usual prefixes.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "wsmid": "http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)

TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
CREATE, DELETE = TRANSFER + "Create", TRANSFER + "Delete"
COMMAND, SEND, RECEIVE, SIGNAL = SHELL + "Command", SHELL + "Send", SHELL + "Receive", SHELL + "Signal"
CMD_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
STATE_DONE = SHELL + "CommandState/Done"
STATE_RUNNING = SHELL + "CommandState/Running"
SIGNAL_TERMINATE = SHELL + "signal/terminate"
SIGNAL_CTRL_C = SHELL + "signal/ctrl_c"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"


def q(prefix: str, local: str) -> str:
    return f"{{{NS[prefix]}}}{local}"


class Fault(Exception):
    """A WS-Management fault: HTTP 500 with a SOAP Fault body carrying the WSManFault code."""

    def __init__(
        self, subcode: str, reason: str, wsman_code: int, message: str = "", sender: bool = True
    ) -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason
        self.wsman_code = wsman_code
        self.message = message or reason
        self.sender = sender


def invalid_selectors(shell_id: str) -> Fault:
    return Fault(
        "w:InvalidSelectors",
        "The WS-Management service cannot process the request because the request contained invalid selectors "
        "for the resource.",
        2150858843,
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found "
        "on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on "
        "the server. Provide the correct ShellId or create a new shell and retry the operation.",
    )


def operation_timeout() -> Fault:
    return Fault(
        "w:TimedOut",
        "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
        2150858793,
        sender=False,
    )


def access_denied() -> Fault:
    return Fault("w:AccessDenied", "Access is denied.", 5)


@dataclass
class Request:
    action: str
    message_id: str
    resource_uri: str
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    operation_timeout: float = 60.0
    max_envelope: int = 153600
    body: ET.Element | None = None


def _duration(text: str | None, default: float) -> float:
    m = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?", (text or "").strip())
    if not m or not any(m.groups()):
        return default
    hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return hours * 3600 + minutes * 60 + seconds


def parse(data: bytes) -> Request:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise Fault(
            "w:InvalidMessageInformationHeader", f"The request is not well-formed XML: {exc}", 2150858817
        ) from exc
    header = root.find(q("s", "Header"))
    body = root.find(q("s", "Body"))
    if header is None or body is None:
        raise Fault(
            "w:InvalidMessageInformationHeader", "The SOAP envelope has no Header or Body.", 2150858817
        )

    def text(prefix: str, local: str) -> str:
        node = header.find(q(prefix, local))
        return (node.text or "").strip() if node is not None else ""

    action = text("a", "Action")
    if not action and body.find(q("wsmid", "Identify")) is not None:
        action = "Identify"
    selectors = {
        node.get("Name", ""): (node.text or "").strip()
        for node in header.iterfind(f"{q('w', 'SelectorSet')}/{q('w', 'Selector')}")
    }
    options = {
        node.get("Name", ""): (node.text or "").strip()
        for node in header.iterfind(f"{q('w', 'OptionSet')}/{q('w', 'Option')}")
    }
    try:
        max_envelope = int(text("w", "MaxEnvelopeSize") or 153600)
    except ValueError:
        max_envelope = 153600
    return Request(
        action=action,
        message_id=text("a", "MessageID"),
        resource_uri=text("w", "ResourceURI"),
        selectors=selectors,
        options=options,
        operation_timeout=_duration(text("w", "OperationTimeout"), 60.0),
        max_envelope=max_envelope,
        body=next(iter(body), None),
    )


def envelope(action: str, relates_to: str, *body: ET.Element) -> bytes:
    root = ET.Element(q("s", "Envelope"), {"xml:lang": "en-US"})
    header = ET.SubElement(root, q("s", "Header"))
    ET.SubElement(header, q("a", "Action")).text = action
    ET.SubElement(header, q("a", "MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
    ET.SubElement(header, q("a", "To")).text = ANONYMOUS
    if relates_to:
        ET.SubElement(header, q("a", "RelatesTo")).text = relates_to
    body_node = ET.SubElement(root, q("s", "Body"))
    body_node.extend(body)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False)


def fault_envelope(fault: Fault, relates_to: str, machine: str) -> bytes:
    node = ET.Element(q("s", "Fault"))
    code = ET.SubElement(node, q("s", "Code"))
    ET.SubElement(code, q("s", "Value")).text = "s:Sender" if fault.sender else "s:Receiver"
    sub = ET.SubElement(code, q("s", "Subcode"))
    ET.SubElement(sub, q("s", "Value")).text = fault.subcode
    reason = ET.SubElement(node, q("s", "Reason"))
    ET.SubElement(reason, q("s", "Text"), {"xml:lang": "en-US"}).text = fault.reason + " "
    detail = ET.SubElement(node, q("s", "Detail"))
    wsman = ET.SubElement(detail, q("f", "WSManFault"), {"Code": str(fault.wsman_code), "Machine": machine})
    ET.SubElement(wsman, q("f", "Message")).text = fault.message + " "
    return envelope(FAULT_ACTION, relates_to, node)


def element(
    prefix: str,
    local: str,
    text: str | None = None,
    attrib: dict[str, str] | None = None,
    children: tuple[ET.Element, ...] = (),
) -> ET.Element:
    node = ET.Element(q(prefix, local), attrib or {})
    if text is not None:
        node.text = text
    node.extend(children)
    return node
