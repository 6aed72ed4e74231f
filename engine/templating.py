"""Render playbook templates safely: sandboxed Jinja, strict names, shell quoting, secrets.

Why it looks like this:
- Playbook authors write templates; alert data (labels, annotations, outputs of earlier
  steps) only ever arrives as *values*. Output is never rendered a second time, so a
  label holding ``{{ 7*7 }}`` stays literal text.
- In shell mode every ``{{ ... }}`` result goes through ``shlex.quote`` via the
  Environment's ``finalize`` hook, so a label can never inject shell syntax; literal
  template text (the author's) is left alone.
- ``StrictUndefined`` turns a typo such as ``labels.mountpont`` into an error instead of
  an empty string that would silently run ``df`` on the wrong path.
- Every failure leaves as ``TemplateError`` (the CLI and API know how to show it), with
  secret values redacted from its message.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import TemplateError

__all__ = ["Renderer", "check_expression", "check_template"]

#: Secrets shorter than this are not redacted: replacing "a" or "on" everywhere would
#: destroy the evidence while protecting nothing.
MIN_SECRET_LENGTH = 4
REDACTED = "***"
_MAX_SOURCE_IN_MESSAGE = 200


def _finalize_plain(value: Any) -> Any:
    """Render ``None`` as nothing rather than the word "None"."""
    return "" if value is None else value


def _finalize_shell(value: Any) -> str:
    """Quote each expression result so the shell sees exactly one literal word."""
    text = "" if value is None else str(value)
    if "\x00" in text:
        # A NUL cannot travel in a command line; a remote shell would truncate there.
        raise TemplateError("a value contains a NUL byte, which cannot be passed to a shell")
    return shlex.quote(text)


def _environment(shell: bool) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        finalize=_finalize_shell if shell else _finalize_plain,
        autoescape=False,
        keep_trailing_newline=True,
    )


_ENVIRONMENTS = {False: _environment(False), True: _environment(True)}


@lru_cache(maxsize=2048)
def _compile(source: str, shell: bool) -> Template:
    """Compile once per (source, shell); steps render the same templates again and again."""
    return _ENVIRONMENTS[shell].from_string(source)


@lru_cache(maxsize=1024)
def _compile_expression(expression: str) -> Any:
    return _ENVIRONMENTS[False].compile_expression(expression, undefined_to_none=False)


def _excerpt(source: str) -> str:
    if len(source) > _MAX_SOURCE_IN_MESSAGE:
        return repr(source[:_MAX_SOURCE_IN_MESSAGE] + "...")
    return repr(source)


def _syntax_message(exc: TemplateSyntaxError, source: str) -> str:
    """Name the line and show its text: templates sit inside YAML, so line 1 is rarely enough."""
    lineno = exc.lineno or 1
    lines = source.splitlines() or [""]
    line = lines[min(lineno, len(lines)) - 1].strip()
    return f"line {lineno}: {exc.message} (in {line!r})"


def _describe(exc: Exception, kind: str, source: str) -> str:
    """One clear sentence for any failure; never leak a raw Jinja exception type."""
    what = f"{kind} {_excerpt(source)}"
    if isinstance(exc, TemplateError):
        return f"in {what}: {exc}"
    if isinstance(exc, TemplateSyntaxError):
        return f"syntax error in {what}: {_syntax_message(exc, source)}"
    if isinstance(exc, UndefinedError):
        return f"undefined name in {what}: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"forbidden operation in {what}: {exc}"
    return f"error in {what}: {type(exc).__name__}: {exc}"


class _Secrets(Mapping[str, str]):
    """The ``secrets`` name seen by templates.

    A missing secret yields a StrictUndefined whose hint names it, so ``default`` and
    ``is defined`` still work while any other use fails with a message saying what to fix.
    ``repr`` never shows values, so ``{{ secrets }}`` cannot dump them.
    """

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            hint = (
                f"secret {name!r} is not set: define it under secrets: in config.yaml "
                "and set its environment variable"
            )
            return StrictUndefined(hint=hint, name=name)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<secrets: {', '.join(sorted(self._values))}>"


class Renderer:
    """Renders step parameters and ``when:`` conditions; one per configured secret set."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self._secrets = _Secrets(secrets or {})
        self._redactions = self._redaction_forms(secrets or {})

    @staticmethod
    def _redaction_forms(secrets: Mapping[str, str]) -> list[str]:
        """Every form a secret may take once rendered: raw, shell-quoted, JSON-escaped.

        Longest first, so a secret containing another is replaced whole.
        """
        forms: set[str] = set()
        for value in secrets.values():
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                forms.update((value, shlex.quote(value), json.dumps(value)[1:-1]))
        return sorted(forms, key=lambda form: (-len(form), form))

    def _context(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {**context, "secrets": self._secrets}

    def render(self, template: str, context: Mapping[str, Any], *, shell: bool = False) -> str:
        """Render one template; ``shell=True`` quotes each ``{{ }}`` result for ``sh``."""
        try:
            return _compile(template, shell).render(self._context(context))
        except Exception as exc:  # noqa: BLE001 - every failure must reach the user as TemplateError
            raise TemplateError(self.redact(_describe(exc, "template", template))) from None

    def render_value(self, value: Any, context: Mapping[str, Any], *, shell: bool = False) -> Any:
        """Render every string inside dicts, lists and tuples; keys and non-strings stay as they are."""
        if isinstance(value, str):
            return self.render(value, context, shell=shell)
        if isinstance(value, Mapping):
            return {key: self.render_value(item, context, shell=shell) for key, item in value.items()}
        if isinstance(value, list | tuple):
            rendered = [self.render_value(item, context, shell=shell) for item in value]
            return tuple(rendered) if isinstance(value, tuple) else rendered
        return value

    def evaluate(self, expression: str, context: Mapping[str, Any]) -> bool:
        """Truthiness of a ``when:`` expression; an undefined name is an error, not False."""
        try:
            return bool(_compile_expression(expression)(**self._context(context)))
        except Exception as exc:  # noqa: BLE001 - as in render()
            raise TemplateError(self.redact(_describe(exc, "expression", expression))) from None

    def redact(self, value: Any) -> Any:
        """Replace every secret value in strings (recursively) with ``***`` before storing."""
        if not self._redactions:
            return value
        if isinstance(value, str):
            for form in self._redactions:
                if form in value:
                    value = value.replace(form, REDACTED)
            return value
        if isinstance(value, Mapping):
            return {self.redact(key): self.redact(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            redacted = [self.redact(item) for item in value]
            return tuple(redacted) if isinstance(value, tuple) else redacted
        return value


def check_template(template: str) -> str | None:
    """Syntax check for ``suture validate``: a message naming the line, or None when fine."""
    try:
        _compile(template, False)
    except TemplateSyntaxError as exc:
        return _syntax_message(exc, template)
    except Exception as exc:  # noqa: BLE001 - validation reports, never crashes
        return f"{type(exc).__name__}: {exc}"
    return None


def check_expression(expression: str) -> str | None:
    """Syntax check of a ``when:`` expression, or None when it compiles."""
    try:
        _compile_expression(expression)
    except TemplateSyntaxError as exc:
        return _syntax_message(exc, expression)
    except Exception as exc:  # noqa: BLE001 - validation reports, never crashes
        return f"{type(exc).__name__}: {exc}"
    return None
