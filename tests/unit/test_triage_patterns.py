"""Host-supplied fields against the packs' patterns: every shipped pattern runs in linear time on
adversarial input, and the output parser bounds every field before a pattern sees it.

A quadratic pattern turns one 1 MB file name into minutes of CPU on the controller per host; the bounds
are generous (a linear search of 1 MB takes milliseconds) so these tests do not flake on a busy machine.
"""

from __future__ import annotations

import json
import re
import time
from itertools import product

import pytest

from orchestrator.triage import fields, packs, scripts

SHIPPED = packs.load()
PATTERNS = sorted(
    {
        (c.id, f, p)
        for pk in SHIPPED
        for c in pk.checks
        for f, p in {**c.match.where, **c.match.unless}.items()
    }
)
FILLERS = [" ", "-", "_", "/", "\\", ".", "a", "A", "0", "\t", "|", "=", "#", "!", "\n"]
SIZE = 50_000  # a quadratic pattern needs seconds here; a linear one a millisecond


def _adversarial(pattern: str) -> list[str]:
    """Inputs that make backtracking patterns blow up: the pattern's own words repeated, or followed by
    a long run of one filler (the shape of `word[-_ ]*...` and `word.*$` explosions)."""
    words = set(re.findall(r"[A-Za-z0-9]{2,}", pattern)) | {"!!!", "curl ", "wget ", "Exec="}
    found = []
    for word in sorted(words):
        found.append(word * (SIZE // len(word)))
        for filler in FILLERS:
            found.append(word + filler * SIZE)
            found.append((word + filler) * (SIZE // (len(word) + 1)))
    found += [(a + b) * (SIZE // 2) for a, b in product(FILLERS, repeat=2)]
    return found


@pytest.mark.parametrize(("check", "field", "pattern"), PATTERNS, ids=[f"{c}:{f}" for c, f, _ in PATTERNS])
def test_every_shipped_pattern_is_linear_on_adversarial_input(check: str, field: str, pattern: str) -> None:
    compiled = re.compile(pattern)
    for text in _adversarial(pattern):
        started = time.perf_counter()
        compiled.search(text)
        elapsed = time.perf_counter() - started
        assert elapsed < 0.25, f"{check} {field}: {elapsed:.2f}s on {text[:40]!r}... ({len(text)} chars)"


def _check(check_id: str) -> packs.Check:
    return next(c for pk in SHIPPED for c in pk.checks if c.id == check_id)


@pytest.mark.parametrize(
    "name",
    [
        "restore" + " " * 1_000_000,
        "how" + "_" * 1_000_000 + "to",
        "decrypt" * 150_000,
        "recover-my" + "-" * 1_000_000 + "files",
        "A" * 1_000_000 + ".README.tx",
    ],
    ids=["restore-spaces", "how-underscores", "decrypt-repeated", "recover-dashes", "lockbit-near-miss"],
)
def test_a_1mb_adversarial_name_is_matched_fast_even_unbounded(name: str) -> None:
    """The note patterns themselves, on a 1 MB name that bypasses the parser's bound."""
    items = [{"name": name, "path": "C:\\Users\\x\\" + name}]
    started = time.perf_counter()
    for check_id in ("ransom-note-names-windows", "ransom-note-names-linux", "lockbit3-note-windows"):
        assert packs.evaluate(_check(check_id), items) is None
    assert time.perf_counter() - started < 1.0


def test_the_windows_parser_bounds_every_field_before_matching() -> None:
    checks = packs.checks_for(SHIPPED, "windows")
    script = scripts.render("windows", checks)
    note = _check("ransom-note-names-windows")
    huge = "HOW_TO_DECRYPT" + "-" * 1_000_000 + ".txt"
    nested: object = "x"
    for _ in range(50):
        nested = {"deeper": [nested, "y" * 10_000]}
    record = {
        "id": note.probe_id,
        "results": [
            {"path": "C:\\Users\\x\\" + huge, "size": 10, "extra": nested, "many": ["s" * 20_000] * 5_000},
            *({"path": f"C:\\Users\\x\\{i}.txt"} for i in range(fields.MAX_ITEMS + 5)),
        ],
    }
    stdout = json.dumps(record) + "\n" + "[" * 200_000 + "\n"  # a record nested past json's depth
    started = time.perf_counter()
    output = scripts.parse(script, stdout)
    result = output.results[note.probe_id]
    matched = packs.evaluate(note, result.items)
    elapsed = time.perf_counter() - started
    first = result.items[0]
    assert len(first["name"]) <= fields.MAX_TEXT + 1 and len(first["path"]) <= fields.MAX_TEXT + 1
    assert first["name"].endswith("-.txt") and first["name"].startswith("HOW_TO_DECRYPT")
    assert isinstance(first["extra"], str) and len(first["extra"]) <= fields.MAX_TEXT + 1
    assert len(first["many"]) == fields.MAX_LIST and all(len(s) <= fields.MAX_TEXT + 1 for s in first["many"])
    assert len(result.items) == fields.MAX_ITEMS and result.truncated
    assert matched and matched[0] is first  # the bounded name still reads as a ransom note
    assert elapsed < 5.0, elapsed


def test_the_linux_parser_bounds_every_field_before_matching() -> None:
    checks = packs.checks_for(SHIPPED, "linux")
    script = scripts.render("linux", checks)
    note = _check("ransom-note-names-linux")
    block = next(b for b, members in script.groups.items() if note.probe_id in members)
    path = "/home/u/" + "restore my files" + " " * 1_000_000 + ".txt"
    stdout = "\n".join(
        [
            f"{script.nonce} B {block}",
            "\t".join(
                [
                    "F",
                    note.probe_id,
                    "10",
                    "1700000000",
                    "644",
                    "-",
                    "|".join(["s" * 20_000] * 1000),
                    "-",
                    path,
                ]
            ),
            f"{script.nonce} E {block}",
        ]
    )
    started = time.perf_counter()
    result = scripts.parse(script, stdout).results[note.probe_id]
    matched = packs.evaluate(note, result.items)
    assert time.perf_counter() - started < 2.0
    item = result.items[0]
    assert len(item["path"]) <= fields.MAX_TEXT + 1 and len(item["strings"]) == fields.MAX_LIST
    assert item["name"].startswith("restore my files") and item["name"].endswith(" .txt")
    assert matched == [item]
