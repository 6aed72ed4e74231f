"""libyaml and PyYAML's pure-Python loader give the same documents, lines and `file:line` errors
(engine.yamlfile uses libyaml where PyYAML was built with it, the other where not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import yamlfile
from engine.errors import YamlSyntaxError
from engine.yamlfile import MAX_DEPTH, parse_located

pytestmark = pytest.mark.skipif(
    getattr(yaml, "CSafeLoader", None) is None, reason="PyYAML built without libyaml: one loader only"
)

PATH = Path("codes/sample.yaml")

VALID = """\
- code: DISK-001
  title: "Disk almost full: é"
  severity: high
  match: {alertname: DiskFull, source: alertmanager}
  policy:
    cooldown: 30m
    max_runs: 3
  tags: [disk, storage]
  since: 2026-11-01
  anchors: &base {a: 1}
  again: *base
"""

BAD = {
    "tab": "a: 1\n\tb: 2\n",
    "unclosed": "a: [1, 2\nb: 3\n",
    "control-character": "a: 1\nb: \x07\n",
    "control-after-wide": "a: éééé\nb: ok\nc: \x07\n",
    "too-deep": "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",
    "deep-enough-plus-one": "a: " + "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1) + "\n",
    "python-tag": "a: 1\nb: !!python/name:os.system ''\n",
    "duplicate": "a: 1\nb: 2\na: 3\n",
    "recursive-alias": "a: 1\nsteps: &s [*s]\n",
    "two-documents": "a: 1\n---\nb: 2\n",
}


def _both(text: str, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    found = []
    for loader in (yamlfile._CLoader, None):
        monkeypatch.setattr(yamlfile, "_CLoader", loader)
        try:
            doc = parse_located(text, PATH)
        except YamlSyntaxError as exc:
            found.append(("error", exc.line, str(exc).split(": invalid YAML: ")[0]))
        else:
            found.append(("doc", doc.data, doc.lines))
    return found


def test_a_valid_document_reads_the_same_with_either_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    c, python = _both(VALID, monkeypatch)
    assert c == python
    kind, data, lines = c
    assert kind == "doc" and data[0]["title"] == "Disk almost full: é" and data[0]["again"] == {"a": 1}
    assert lines[(0, "policy", "max_runs")] == 7


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_document_fails_on_the_same_line_with_either_loader(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, python = _both(BAD[case], monkeypatch)
    assert c[0] == "error", c
    assert c == python


def test_a_document_nested_just_within_the_limit_reads_with_either_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    depth = MAX_DEPTH - 2  # the mapping and the scalar are levels too
    c, python = _both("a: " + "[" * depth + "1" + "]" * depth + "\n", monkeypatch)
    assert c == python and c[0] == "doc"


def test_a_control_character_is_named_alike_by_either_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = []
    for loader in (yamlfile._CLoader, None):
        monkeypatch.setattr(yamlfile, "_CLoader", loader)
        with pytest.raises(YamlSyntaxError) as caught:
            parse_located(BAD["control-after-wide"], PATH)
        messages.append(str(caught.value))
    assert messages[0].startswith(f"{PATH}:3: invalid YAML: ") and messages[0].endswith("(character '\\x07')")
    assert messages[1].endswith("(character '\\x07')")
