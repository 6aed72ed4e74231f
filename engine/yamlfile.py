"""YAML loading that remembers where every value came from, for `file:line` errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[str | int, ...]


@dataclass
class LocatedYaml:
    """A parsed document plus the line (1-based) of every key and item."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int:
        """The line of the deepest known prefix of `loc` (pydantic error locations)."""
        key = tuple(loc)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), 1)

    def where(self, loc: Sequence[str | int]) -> str:
        return f"{self.path}:{self.line_of(loc)}"


class YamlSyntaxError(Exception):
    def __init__(self, path: Path, line: int, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}")


def load_located(path: Path) -> LocatedYaml:
    """Parse one YAML file; syntax errors become YamlSyntaxError with a line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlSyntaxError(path, 1, f"cannot read file: {exc}") from exc
    return parse_located(text, path)


def parse_located(text: str, path: Path) -> LocatedYaml:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlSyntaxError(path, line, f"invalid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(path, 1, f"invalid YAML: {exc}") from exc
    doc = LocatedYaml(path=path, data=None)
    if node is None:
        return doc
    doc.data = _build(node, (), doc.lines, path)
    return doc


def _build(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: Path) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader(" ").construct_object(key_node, deep=True)
            if isinstance(key, (dict, list)):
                raise YamlSyntaxError(path, key_node.start_mark.line + 1, "a key must be a plain value")
            if key in result:
                raise YamlSyntaxError(path, key_node.start_mark.line + 1, f"duplicate key {key!r}")
            lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = _build(value_node, (*loc, key), lines, path)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), lines, path) for i, item in enumerate(node.value)]
    return yaml.SafeLoader(" ").construct_object(node, deep=True)


def describe_validation_error(doc: LocatedYaml, error: ValidationError, prefix: Loc = ()) -> list[str]:
    """Every pydantic error as `file:line: dotted.key: message`."""
    problems = []
    for item in error.errors():
        loc = (*prefix, *item["loc"])
        dotted = ".".join(str(part) for part in loc) or "(top level)"
        problems.append(f"{doc.where(loc)}: {dotted}: {_message(item)}")
    return problems


def _message(item: Any) -> str:
    kind = item.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(item.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if "input" in item and kind not in ("model_type",) and not isinstance(item["input"], (dict, list)):
        return f"{msg} (got {item['input']!r})"
    return msg
