"""Where a rendered value lands in a shell command line: does it begin a word a command reads as an option?

Shell quoting stops shell syntax, not options: `ssh {{ labels.x }} host` with the label
`-oProxyCommand=...` is one quoted word that ssh still parses as an option. This module
scans a rendered command (POSIX sh syntax, simplified) and reports the values that begin
a word with nothing before them, in a simple command with no `--` word before them.

It errs on the side of reporting: an expansion (`$X`, `$(...)`, `${...}`) may be empty, so
it never counts as text in front of a value; a heredoc body is scanned like commands.
A redirection target (`> {{ x }}`) is a file name, never an option, and is not reported.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["option_positions"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SPECIAL_PARAMETERS = frozenset("@*#?$!-0123456789")


class _Frame:
    """One command context: the top level, a `( )` subshell, `$( )`, backticks or `${ }`."""

    __slots__ = ("chars", "close", "dashdash", "in_word", "literal", "pure", "quote", "redirect")

    def __init__(self, close: str) -> None:
        self.close = close  # what ends this frame: "" (never), ")", "`" or "}"
        self.quote: str | None = None
        self.dashdash = False  # a `--` word came earlier in this simple command
        self.redirect = False  # the next word is a redirection target
        self.in_word = False
        self.literal = False  # the current word already holds text that is surely there
        self.pure = True  # ... and no expansion
        self.chars: list[str] = []

    def add(self, char: str) -> None:
        self.in_word = self.literal = True
        self.chars.append(char)

    def expansion(self) -> None:
        self.in_word, self.pure = True, False

    def end_word(self) -> None:
        if self.in_word:
            if self.redirect:
                self.redirect = False
            elif self.pure and "".join(self.chars) == "--":
                self.dashdash = True
        self.in_word = self.literal = False
        self.pure = True
        self.chars = []

    def end_command(self) -> None:
        self.end_word()
        self.dashdash = self.redirect = False


def option_positions(text: str, starts: Mapping[int, int]) -> list[int]:
    """The ids in `starts` (offset in `text` -> value id) of values that begin an option-position word."""
    found: list[int] = []
    stack = [_Frame("")]
    index, end = 0, len(text)
    while index < end:
        frame = stack[-1]
        if index in starts:
            word = next(f for f in reversed(stack) if f.close != "}")  # `${X:-v}` may be just v
            if not word.literal and not word.dashdash and not word.redirect:
                found.append(starts[index])
        index = _step(text, index, stack, frame)
    return found


def _step(text: str, index: int, stack: list[_Frame], frame: _Frame) -> int:
    """Consume the token at `index`; return where the next one starts."""
    char = text[index]
    after = text[index + 1] if index + 1 < len(text) else ""
    if frame.quote == "'":
        if char == "'":
            frame.quote = None
        else:
            frame.add(char)
        return index + 1
    if char == "\\":
        if after != "\n":  # backslash-newline is a line continuation: nothing at all
            frame.add(after)
        return index + 2
    if char == "$":
        return _dollar(text, index, stack, frame)
    if char == "`":
        if frame.close == "`" and frame.quote is None:
            frame.end_command()
            stack.pop()
        else:
            frame.expansion()
            stack.append(_Frame("`"))
        return index + 1
    if frame.quote == '"':
        if char == '"':
            frame.quote = None
        else:
            frame.add(char)
        return index + 1
    if char in "'\"":
        frame.in_word = True
        frame.quote = char
        return index + 1
    if frame.close == "}" and char == "}":
        stack.pop()
        return index + 1
    if char in " \t":
        frame.end_word()
    elif char == "#" and not frame.in_word:
        newline = text.find("\n", index)
        return len(text) if newline < 0 else newline
    elif char in ";&|\n":
        frame.end_command()
    elif char in "<>":
        frame.end_word()
        index += 1
        while index < len(text) and text[index] in "<>&|-":
            index += 1
        frame.redirect = True
        return index
    elif char == "(":
        frame.end_word()
        stack.append(_Frame(")"))
    elif char == ")":
        frame.end_command()
        if frame.close == ")":
            stack.pop()
    else:
        frame.add(char)
    return index + 1


def _dollar(text: str, index: int, stack: list[_Frame], frame: _Frame) -> int:
    """`$(`, `${`, `$NAME`, `$1`: expansions that may be empty; a lone `$` is a literal."""
    after = text[index + 1] if index + 1 < len(text) else ""
    if after == "(":
        frame.expansion()
        stack.append(_Frame(")"))
        return index + 2
    if after == "{":
        frame.expansion()
        stack.append(_Frame("}"))
        return index + 2
    if after in _SPECIAL_PARAMETERS and after:
        frame.expansion()
        return index + 2
    if after and after in _NAME_CHARS:
        frame.expansion()
        index += 1
        while index < len(text) and text[index] in _NAME_CHARS:
            index += 1
        return index
    frame.add("$")
    return index + 1
