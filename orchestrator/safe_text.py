"""Untrusted text (anything a host returned: file names, cron lines, stderr, reasons) made safe to show.

Hosts belong to the attacker until they are rebuilt. A file name holding `[/]` is rich markup that
aborts a table; one holding ESC sequences draws a clickable link to a fake decryptor, retitles the
operator's window or hides what follows; a cell starting with `=` is a formula in a spreadsheet. So
every host string goes through here on its way to a terminal, a report or a CSV file:

- `plain`: control characters (C0, DEL, C1), Unicode bidi overrides and lone surrogates replaced by a
  visible placeholder; newline and tab kept only where the view is multi-line.
- `text`: the same as a rich `Text`, which rich never parses as markup.
- `csv_cell`: `plain` (multi-line) plus a leading quote for a cell a spreadsheet would evaluate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported when a table is drawn: `--json` output does without it
    from rich.text import Text

# C0 controls and DEL show as their Unicode "control picture" (ESC as ␛): what the attacker sent
# stays readable to the operator. C1 controls, bidi overrides (a name can display reversed) and lone
# surrogates (undecodable bytes; they cannot even be written to a UTF-8 terminal) have no picture.
PLACEHOLDER = "\ufffd"
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")
_UNSAFE_KEEPING_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")
# What a spreadsheet evaluates at the start of a cell (OWASP "CSV injection").
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _picture(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return PLACEHOLDER


def plain(value: Any, multiline: bool = False) -> str:
    """`value` as display text: no control character survives (newline and tab only if `multiline`)."""
    text = value if isinstance(value, str) else str(value)
    pattern = _UNSAFE_KEEPING_LINES if multiline else _UNSAFE
    return pattern.sub(_picture, text)


def text(value: Any, multiline: bool = False, style: str = "") -> Text:
    """A rich Text of `plain(value)`: safe in a table cell or `console.print`, never read as markup."""
    from rich.text import Text

    return Text(plain(value, multiline), style=style)


def optional(value: Any, multiline: bool = False, empty: str = "") -> Text:
    """`text(value)`, or `empty` for None."""
    return text(empty if value is None else value, multiline)


def cells(*values: Any, multiline: bool = False) -> list[Text]:
    """A table row: every value as `text` (None as ""), a Text we built ourselves left as it is."""
    from rich.text import Text

    return [v if isinstance(v, Text) else optional(v, multiline) for v in values]


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: controls replaced, formulas neutralised (leading ')."""
    if not isinstance(value, str):
        return value
    cleaned = plain(value, multiline=True)
    return "'" + cleaned if value.startswith(CSV_TRIGGERS) else cleaned


def csv_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: csv_cell(value) for key, value in row.items()}


def json_text(data: Any, **kwargs: Any) -> str:
    """JSON whose text holds no raw control byte: `json` escapes C0 and, with ensure_ascii, C1, but
    writes DEL as it is."""
    return json.dumps(data, ensure_ascii=True, **kwargs).replace("\x7f", "\\u007f")
