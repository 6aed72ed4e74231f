"""YAML loading that remembers where every value came from, for `file:line` errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.errors import YamlSyntaxError

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


#: Deeper than any catalog or config document needs; keeps PyYAML's recursive composer far from
#: Python's recursion limit.
MAX_DEPTH = 64
#: Values built from one document, aliases expanded: a bound on "billion laughs" documents.
MAX_VALUES = 100_000
_CORE = "tag:yaml.org,2002:"
#: The tags a node of each kind may carry; anything else (`!!python/...`, `!custom`, `!!binary`,
#: `!!set`) is refused instead of being handed to a constructor.
_ALLOWED_TAGS: dict[type[yaml.Node], frozenset[str]] = {
    yaml.ScalarNode: frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp")),
    yaml.SequenceNode: frozenset({_CORE + "seq"}),
    yaml.MappingNode: frozenset({_CORE + "map"}),
}


class _DepthLimitedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses documents nested deeper than MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_depth(text: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH from libyaml's events, which it makes without
    recursing, as `_DepthLimitedLoader` does while composing."""
    assert _CLoader is not None
    depth = 0
    for event in yaml.parse(text, Loader=_CLoader):
        if isinstance(event, _NODES) and depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested deeper than {MAX_DEPTH} levels",
                event.start_mark,  # type: ignore[arg-type]
            )
        if isinstance(event, _OPENS):
            depth += 1
        elif isinstance(event, _CLOSES):
            depth -= 1


def load_located(path: Path) -> LocatedYaml:
    """Parse one YAML file; every failure becomes YamlSyntaxError with a line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlSyntaxError(path, 1, f"cannot read file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start : exc.start + 1].hex()
        raise YamlSyntaxError(path, line, f"not UTF-8 text (byte 0x{byte})") from None
    return parse_located(text, path)


#: libyaml's parser and composer, where PyYAML was built with it (its wheels are): a catalog's
#: files parse in a fifth of the pure-Python composer's time, which was most of the daemon's load.
_CLoader: type[Any] | None = getattr(yaml, "CSafeLoader", None)
_OPENS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSES = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
_NODES = (*_OPENS, yaml.ScalarEvent, yaml.AliasEvent)


def parse_located(text: str, path: Path) -> LocatedYaml:
    loader: Any = None
    try:
        if _CLoader is not None:
            _check_depth(text)  # before libyaml composes: its composer recurses on the C stack
            loader = _CLoader(text)
        else:
            loader = _DepthLimitedLoader(text)  # the reader checks every character here
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlSyntaxError(path, line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.reader.ReaderError as exc:
        # libyaml counts the position in the text's UTF-8 bytes, PyYAML's reader in characters.
        if _CLoader is not None:
            line = text.encode()[: exc.position].count(b"\n") + 1
        else:
            line = text[: exc.position].count("\n") + 1
        # libyaml gives the character's code, PyYAML the character: the message shows the character.
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        reason = f"invalid YAML: {exc.reason} (character {character!r})"
        raise YamlSyntaxError(path, line, reason) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(path, 1, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlSyntaxError(path, 1, f"invalid YAML: nested deeper than {MAX_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    doc = LocatedYaml(path=path, data=None)
    if node is None:
        return doc
    doc.data = _Builder(path, doc.lines).build(node, ())
    return doc


class _Builder:
    """Turns composed nodes into plain values, recording lines and refusing what is unsafe."""

    def __init__(self, path: Path, lines: dict[Loc, int]) -> None:
        self.path = path
        self.lines = lines
        self.values = 0
        self.open: set[int] = set()  # nodes being built: meeting one again is a recursive alias
        self.constructor = yaml.SafeLoader("")  # per document: it caches every node it constructs

    def fail(self, node: yaml.Node, message: str) -> YamlSyntaxError:
        return YamlSyntaxError(self.path, node.start_mark.line + 1, message)

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.fail(node, f"more than {MAX_VALUES} values (aliases expanding too far?)")
        if len(loc) > MAX_DEPTH:
            raise self.fail(node, f"nested deeper than {MAX_DEPTH} levels")
        if id(node) in self.open:
            raise self.fail(node, "an alias refers to the value that contains it")
        self.check_tag(node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, loc)
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _CORE + "merge":
                raise self.fail(key_node, "merge keys (<<) are not supported; write the keys out")
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, "a key must be a plain value")
            self.check_tag(key_node)
            key = self.scalar(key_node)
            if key in result:
                raise self.fail(key_node, f"duplicate key {key!r}")
            self.lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, (*loc, key))
        return result

    def check_tag(self, node: yaml.Node) -> None:
        if node.tag not in _ALLOWED_TAGS.get(type(node), frozenset()):
            tag = node.tag.replace(_CORE, "!!")
            raise self.fail(node, f"YAML tag {tag!r} is not allowed here; write a plain value")

    def scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            reason = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
            raise self.fail(node, f"invalid value {node.value[:40]!r}: {reason[:120]}") from None


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
