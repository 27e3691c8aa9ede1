"""Host strings made safe to show: no control character, no markup, no spreadsheet formula; a manifest
read as untrusted; a display that raises does not stop its caller."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from orchestrator import observers, safe_text
from orchestrator.execution import evidence_manifest

CONTROL = {*range(0x00, 0x20), *range(0x7F, 0xA0)}
LINES = {0x0A, 0x09}
ATTACKS = [
    "[/]",
    "[bold red]x[/]",
    "\x1b]8;;mailto:pay@evil.example\x07Decryptor\x1b]8;;\x07",
    "\x1b]0;ALL HOSTS CLEAN\x07",
    "\x1b[2J\x1b[8mhidden",
    "\u009b31m",
    "bell\x07 del\x7f nul\x00 cr\r",
    "name\u202etxt.exe",
    "raw\udc9b",
    ":warning: [link=https://evil.example]x[/link]",
]
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=200) | st.sampled_from(ATTACKS)


def _render(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=120, force_terminal=False, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


@given(any_text)
def test_plain_leaves_no_control_character(value: str) -> None:
    out = safe_text.plain(value)
    assert not [c for c in out if ord(c) in CONTROL or 0xD800 <= ord(c) <= 0xDFFF]
    out.encode("utf-8")  # writable to any UTF-8 terminal
    multi = safe_text.plain(value, multiline=True)
    assert not [c for c in multi if ord(c) in CONTROL - LINES]
    assert multi.count("\n") == value.count("\n") and multi.count("\t") == value.count("\t")


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=100))
def test_printable_text_is_unchanged(value: str) -> None:
    assert safe_text.plain(value) == value


def test_controls_are_shown_not_dropped() -> None:
    assert safe_text.plain("\x1b]0;x\x07\x7f\n\t") == "\u241b]0;x\u2407\u2421\u240a\u2409"
    assert safe_text.plain("a\nb\tc\rd", multiline=True) == "a\nb\tc\u240dd"
    assert safe_text.plain("\u009b\u202e\udc9b") == "\ufffd" * 3


@given(any_text)
def test_text_in_a_table_is_never_markup(value: str) -> None:
    table = Table()
    table.add_column("evidence")
    table.add_row(*safe_text.cells(value))
    rendered = _render(table) + _render(safe_text.text(value))
    assert not [c for c in rendered if ord(c) in CONTROL - LINES]


@pytest.mark.parametrize("value", ATTACKS)
def test_markup_is_shown_as_written(value: str) -> None:
    rendered = _render(safe_text.text(value)).rstrip("\n")
    assert rendered == safe_text.plain(value)


@given(any_text)
def test_csv_cells_are_never_formulas(value: str) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["a", "n"])
    writer.writerow(safe_text.csv_row({"a": value, "n": 3}))
    (row,) = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert not row[0].startswith(safe_text.CSV_TRIGGERS)
    assert row[1] == "3"
    assert not [c for c in buffer.getvalue() if ord(c) in CONTROL - LINES - {0x0D}]


@pytest.mark.parametrize("value", ['=HYPERLINK("x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_formula_triggers_get_a_quote(value: str) -> None:
    assert str(safe_text.csv_cell(value)).startswith("'")


@given(any_text)
def test_json_text_has_no_raw_control(value: str) -> None:
    out = safe_text.json_text({"v": value})
    assert not [c for c in out if ord(c) in CONTROL]
    assert json.loads(out)["v"] == value


def _manifest(tmp_path: Path, items: object) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"host": "h", "items": items}))
    return path


def test_manifest_items_are_checked(tmp_path: Path) -> None:
    good = {
        "path": "/srv/[/]x",
        "sha256": "a" * 64,
        "size": 3,
        "stored_at": "evid:/srv/evidence/h/files/000000",
    }
    assert evidence_manifest.read(_manifest(tmp_path, [good])) == [good]
    bad = [
        {**good, "sha256": "a" * 63},
        {**good, "sha256": "A" * 64},
        {**good, "size": "3"},
        {**good, "size": -1},
        {**good, "size": True},
        {**good, "path": ""},
        {**good, "path": 5},
        {**good, "stored_at": ["x"]},
        "not an object",
    ]
    for item in bad:
        with pytest.raises(evidence_manifest.ManifestError):
            evidence_manifest.read(_manifest(tmp_path, [item]))
    with pytest.raises(evidence_manifest.ManifestError, match="no evidence manifest"):
        evidence_manifest.read(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_bytes(b"\xff{")
    with pytest.raises(evidence_manifest.ManifestError):
        evidence_manifest.read(tmp_path / "bad.json")


def test_manifest_path_that_is_not_utf8_is_kept_as_escaped_text(tmp_path: Path) -> None:
    item = {"path": "/srv/raw\udc9b.txt", "sha256": "b" * 64, "size": 1, "stored_at": None}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"items": [item]}))  # json escapes the lone surrogate
    (read,) = evidence_manifest.read(path)
    assert read["path"] == "/srv/raw\\x9b.txt"


class _Broken:
    def __init__(self) -> None:
        self.calls = 0

    def wave(self, number: int, hosts: list[str]) -> None:
        self.calls += 1
        raise ValueError("closing tag '[/]' at position 0 has nothing to close \x1b]0;x\x07")


def test_a_failing_observer_is_logged_once_and_keeps_being_called(caplog: pytest.LogCaptureFixture) -> None:
    inner = _Broken()
    guarded = observers.guarded(inner)
    assert guarded is not None
    with caplog.at_level(logging.WARNING, logger="orchestrator.observer"):
        for n in range(3):
            guarded.wave(n, [])
    assert inner.calls == 3
    (record,) = caplog.records
    assert "the run goes on" in record.getMessage() and "\x1b" not in record.getMessage()
    assert observers.guarded(None) is None
    callback = observers.guarded_callback(lambda result: 1 / 0)
    assert callback is not None
    callback("r")
