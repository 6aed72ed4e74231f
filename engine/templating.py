"""Render playbook templates safely: sandboxed Jinja, strict names, shell quoting, secrets.

Why it looks like this:
- Playbook authors write templates; alert data (labels, annotations, outputs of earlier
  steps) only ever arrives as *values*. Output is never rendered a second time, so a
  label holding ``{{ 7*7 }}`` stays literal text.
- Each ``{{ ... }}`` is wrapped at compile time in the filter ``suture:mark`` (templates
  cannot name it), which knows what the expression reads (a ``_Slot``). In shell mode it
  quotes the value with ``shlex.quote``, so a label can never inject shell syntax, and
  brackets it with markers so the finished command can be scanned for values that would
  be read as options (``engine.shellwords``): a value from the alert that starts with
  ``-`` and begins a word before any ``--`` is refused, unless the code declares that
  label's pattern and the value matches it.
  "From the alert" means anything but literals, ``secrets``, ``code`` and Jinja's globals
  (and template variables set only from those): registered step output counts too. The
  check is skipped unless some such value starts with "-" (the template is then rendered
  a second time, with markers). Not covered: a value a command parses as shell code again
  (``sh -c {{ x }}``, a remote command of ``ssh``), and bash's ``$'...'`` (``${{ x }}``).
- Whatever an expression that touches ``secrets`` renders to (``| urlencode``, ``~``,
  ``[::-1]``...) is collected by a ``RenderSession`` and redacted like the secret itself,
  except results shorter than ``MIN_SECRET_LENGTH``, booleans and numbers, and results
  equal to one of the expression's own literals (``'on' if secrets.X else 'off'``). What is
  collected is each ``{{ }}``'s whole result, so a loop printing a secret one character per
  ``{{ }}`` is only caught where the characters join up to the secret itself.
- ``StrictUndefined`` turns a typo such as ``labels.mountpont`` into an error instead of
  an empty string that would silently run ``df`` on the wrong path; ``undefined_names``
  finds such names before a run starts.
- Every failure leaves as ``TemplateError`` (the CLI and API know how to show it), with
  secret values redacted from its message.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
    pass_context,
    sandbox,
)
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import TemplateError
from engine.shellwords import option_positions

__all__ = [
    "RenderSession",
    "Renderer",
    "TemplateFacts",
    "TemplateRef",
    "check_expression",
    "check_template",
    "option_placeholders",
    "template_facts",
]

#: Secrets shorter than this are not redacted: replacing "a" or "on" everywhere would
#: destroy the evidence while protecting nothing. The same holds for what an expression
#: touching a secret renders to (``secrets.X[0]``, ``secrets.X | length``).
MIN_SECRET_LENGTH = 4
REDACTED = "***"
_MAX_SOURCE_IN_MESSAGE = 200
_MAX_VALUE_IN_MESSAGE = 40
#: Names whose values never come from an alert: the catalog's code, secrets, Jinja's globals.
_TRUSTED_ROOTS = frozenset({"secrets", "code", "range", "dict", "lipsum", "cycler", "joiner", "namespace"})
#: A pattern in the code's `match` constrains these; a placeholder reading one may start with "-".
_DECLARABLE = ("labels", "annotations")


@dataclass(frozen=True)
class _Slot:
    """What one ``{{ }}`` reads, found from its expression when the template is compiled."""

    source: str  # how a message names it: "labels.x"
    trusted: bool  # built only from literals, secrets, the code and Jinja globals
    secret: bool  # touches secrets, directly or through a variable set from them
    declared: str | None  # the one label/annotation it reads ("labels.x"), for match patterns
    consts: frozenset[str]  # its string literals: a result equal to one is the author's text


@dataclass(frozen=True)
class _Compiled:
    template: Template
    slots: tuple[_Slot, ...]


#: Brackets each shell value in the rendered text until the command is checked. A value cannot
#: forge one: it holds no NUL, and the nonce is drawn when the process starts. Digits only,
#: so a `{% filter upper %}` block leaves the markers as they are.
_NONCE = str(int.from_bytes(os.urandom(6), "big"))
_OPEN = f"\x00{_NONCE}:"
_CLOSE = f"\x00{_NONCE};"
_MARKERS = re.compile(re.escape(_OPEN) + r"(\d+):|" + re.escape(_CLOSE))


class _RenderState:
    """One render call: each shell value rendered, and where secret fragments go."""

    def __init__(self, slots: tuple[_Slot, ...], shell: bool, found: set[str]) -> None:
        self.slots = slots
        self.shell = shell
        self.found = found
        #: Set once a value from the alert starts with "-": render again, with markers, and scan.
        self.suspect = False
        self.marking = False
        self.values: list[tuple[_Slot, str]] = []

    def mark(self, index: int, value: Any) -> str:
        slot = self.slots[index]
        text = "" if value is None else str(value)
        if self.shell and "\x00" in text:
            text = _MARKERS.sub("", text)  # a macro or `{% set %}` block holding marked values
        if (
            slot.secret
            and not isinstance(value, bool | int | float)
            and len(text) >= MIN_SECRET_LENGTH
            and text not in slot.consts
        ):
            self.found.add(text)
        if not self.shell:
            return text
        if "\x00" in text:
            # A NUL cannot travel in a command line; a remote shell would truncate there.
            raise TemplateError(
                f"{slot.source}: a value contains a NUL byte, which cannot be passed to a shell"
            )
        if not self.marking:
            self.suspect = self.suspect or (not slot.trusted and text.startswith("-"))
            return shlex.quote(text)
        self.values.append((slot, text))
        return f"{_OPEN}{len(self.values) - 1}:{shlex.quote(text)}{_CLOSE}"

    def finish(self, marked: str, patterns: Mapping[str, str]) -> str:
        """The command without markers, once no alert value stands where an option would."""
        pieces: list[str] = []
        starts: dict[int, int] = {}
        offset = last = 0
        for match in _MARKERS.finditer(marked):
            pieces.append(marked[last : match.start()])
            offset += match.start() - last
            last = match.end()
            if match.group(1) is not None:
                starts[offset] = int(match.group(1))
        pieces.append(marked[last:])
        command = "".join(pieces)
        if "\x00" in command:
            raise TemplateError("the command contains a NUL byte, which cannot be passed to a shell")
        for occurrence in option_positions(command, starts):
            slot, text = self.values[occurrence]
            if slot.trusted or not text.startswith("-") or _matches(slot, text, patterns):
                continue
            shown = "" if slot.secret else f" {_shorten(text)!r}"
            raise TemplateError(
                f'{slot.source}: value{shown} starts with "-" and would be read as an option; '
                f"put the placeholder after \"--\" or declare the label's pattern in the code's match"
            )
        return command


_STATE: ContextVar[_RenderState | None] = ContextVar("suture_render_state", default=None)


#: The filter every compiled ``{{ }}`` goes through; no template can name it (not an identifier).
_MARK = "suture:mark"


@pass_context  # never folded at compile time: it needs the render's state
def _mark(_context: Any, value: Any, index: int) -> str:
    state = _STATE.get()
    if state is None:  # pragma: no cover - only Renderer renders these templates
        raise TemplateError("template rendered outside a Renderer")
    return state.mark(index, value)


def _matches(slot: _Slot, text: str, patterns: Mapping[str, str]) -> bool:
    """The code declares this label's pattern and the value (still) matches it in full."""
    pattern = patterns.get(slot.declared) if slot.declared else None
    return pattern is not None and re.fullmatch(pattern, text) is not None


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_VALUE_IN_MESSAGE else text[:_MAX_VALUE_IN_MESSAGE] + "…"


_ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)
_ENVIRONMENT.filters[_MARK] = _mark


# ------------------------------------------------------------------ what expressions read


def _loaded(node: nodes.Node) -> set[str]:
    found = [node, *node.find_all(nodes.Name)]
    return {n.name for n in found if isinstance(n, nodes.Name) and n.ctx == "load"}


def _stored(node: nodes.Node | None) -> set[str]:
    if node is None:
        return set()
    found = [node, *node.find_all((nodes.Name, nodes.NSRef))]
    return {
        n.name for n in found if isinstance(n, nodes.NSRef) or (isinstance(n, nodes.Name) and n.ctx != "load")
    }


def _bindings(ast: nodes.Template) -> tuple[set[str], list[tuple[set[str], set[str]]], set[str]]:
    """Template-local names: all of them, (targets, names read) per binding, and macro parameters."""
    bindings: list[tuple[set[str], set[str]]] = []
    params: set[str] = set()
    for node in ast.find_all(
        (nodes.Assign, nodes.AssignBlock, nodes.For, nodes.With, nodes.Macro, nodes.CallBlock)
    ):
        if isinstance(node, nodes.Assign):
            bindings.append((_stored(node.target), _loaded(node.node)))
        elif isinstance(node, nodes.AssignBlock):
            read = set().union(*(_loaded(child) for child in node.body)) if node.body else set()
            bindings.append((_stored(node.target), read))
        elif isinstance(node, nodes.For):
            bindings.append((_stored(node.target) | {"loop"}, _loaded(node.iter)))
        elif isinstance(node, nodes.With):
            for target, value in zip(node.targets, node.values, strict=False):
                bindings.append((_stored(target), _loaded(value)))
        elif isinstance(node, nodes.Macro | nodes.CallBlock):
            params |= {arg.name for arg in node.args} | {"varargs", "kwargs", "caller"}
    bound = params.union(*(targets for targets, _ in bindings)) if bindings else set(params)
    return bound, bindings, params


def _spread(seeds: set[str], bindings: list[tuple[set[str], set[str]]]) -> set[str]:
    """Every local name set, directly or not, from one of `seeds`."""
    tainted = set(seeds)
    changed = True
    while changed:
        changed = False
        for targets, read in bindings:
            if read & tainted and not targets <= tainted:
                tainted |= targets
                changed = True
    return tainted


def _references(node: nodes.Node) -> Iterator[tuple[str, str | None]]:
    """(root name, first key) of every `root.key`, `root['key']` and bare `root` in an expression."""
    if isinstance(node, nodes.Getattr | nodes.Getitem) and isinstance(node.node, nodes.Name):
        if isinstance(node, nodes.Getattr):
            yield node.node.name, node.attr
            return
        key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        yield node.node.name, key if isinstance(key, str) else None
        yield from _references(node.arg)
        return
    if isinstance(node, nodes.Name):
        if node.ctx == "load":
            yield node.name, None
        return
    for child in node.iter_child_nodes():
        yield from _references(child)


def _dotted(root: str, key: str | None) -> str:
    if key is None:
        return root
    return f"{root}.{key}" if key.isidentifier() else f"{root}[{key!r}]"


def _slot(expr: nodes.Expr, untrusted: set[str], secret: set[str], bound: set[str]) -> _Slot:
    def alert_derived(name: str) -> bool:
        return name in untrusted or (name not in bound and name not in _TRUSTED_ROOTS)

    refs = [(root, key) for root, key in _references(expr) if alert_derived(root)]
    distinct = list(dict.fromkeys(refs))
    declared = None
    if len(distinct) == 1 and distinct[0][0] in _DECLARABLE and distinct[0][0] not in bound:
        declared = _dotted(*distinct[0]) if distinct[0][1] else None
    names = _loaded(expr)
    return _Slot(
        source=_dotted(*distinct[0]) if distinct else "value",
        trusted=not distinct,
        secret=bool(names & secret),
        declared=declared,
        consts=frozenset(c.value for c in expr.find_all(nodes.Const) if isinstance(c.value, str)),
    )


def _instrument(ast: nodes.Template) -> tuple[_Slot, ...]:
    """Wrap each output expression in the ``suture:mark`` filter; return what each one reads."""
    bound, bindings, params = _bindings(ast)
    local_trust_seeds = params | {
        name
        for targets, read in bindings
        for name in targets
        if any(r not in bound and r not in _TRUSTED_ROOTS for r in read)
    }
    untrusted = _spread(local_trust_seeds, bindings)
    secret = _spread({"secrets"}, bindings)
    slots: list[_Slot] = []
    for output in list(ast.find_all(nodes.Output)):
        for position, child in enumerate(output.nodes):
            if isinstance(child, nodes.TemplateData):
                continue
            slots.append(_slot(child, untrusted, secret, bound))
            call = nodes.Filter(child, _MARK, [nodes.Const(len(slots) - 1)], [], None, None)
            call.set_lineno(child.lineno)
            output.nodes[position] = call
    return tuple(slots)


@lru_cache(maxsize=2048)
def _compile(source: str) -> _Compiled:
    """Compile once per source; steps render the same templates again and again."""
    ast = _ENVIRONMENT.parse(source)
    slots = _instrument(ast)
    return _Compiled(_ENVIRONMENT.from_string(ast), slots)


@lru_cache(maxsize=1024)
def _compile_expression(expression: str) -> Any:
    return _ENVIRONMENT.compile_expression(expression, undefined_to_none=False)


@lru_cache(maxsize=2048)
def _required(source: str, expression: bool) -> tuple[tuple[str, str | None], ...]:
    """Names a template (or `when:` expression) reads on every render, in order.

    Not counted: what only a branch reads (``if``, ``a if c else b``, the right of ``and``/``or``,
    a loop body, a macro), what ``default`` or ``is defined`` guards, and template-local names.
    """
    if expression:
        tree: nodes.Node = Parser(_ENVIRONMENT, source, state="variable").parse_expression()
        local: set[str] = set()
    else:
        ast = _ENVIRONMENT.parse(source)
        tree, local = ast, _loaded(ast) - meta.find_undeclared_variables(ast)
    found: list[tuple[str, str | None]] = []
    _walk_required(tree, found)
    return tuple(dict.fromkeys(ref for ref in found if ref[0] not in local))


def _walk_required(node: nodes.Node, found: list[tuple[str, str | None]]) -> None:
    if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
        for arg in [*node.args, *node.kwargs]:
            _walk_required(arg, found)
        return
    if isinstance(node, nodes.Test) and node.name in ("defined", "undefined"):
        return
    if isinstance(node, nodes.If | nodes.CondExpr):
        _walk_required(node.test, found)
        return
    if isinstance(node, nodes.And | nodes.Or):
        _walk_required(node.left, found)
        return
    if isinstance(node, nodes.For):
        _walk_required(node.iter, found)
        return
    if isinstance(node, nodes.Macro | nodes.CallBlock):
        return
    if isinstance(node, nodes.Name):
        if node.ctx == "load":
            found.append((node.name, None))
        return
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        found.append((node.node.name, node.attr))
        return
    if isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name):
        key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        found.append((node.node.name, key if isinstance(key, str) else None))
        _walk_required(node.arg, found)
        return
    _walk_children(node, found)


def _walk_children(node: nodes.Node, found: list[tuple[str, str | None]]) -> None:
    for child in node.iter_child_nodes():
        _walk_required(child, found)


def option_placeholders(command: str) -> list[tuple[str, str | None]]:
    """For ``suture validate``: placeholders of an SSH command that stand where options are read.

    Each is (how to name it, the label it reads if the code could declare its pattern). Only
    alert values count, and only where the scan of the command with ``{% %}`` tags removed
    finds them alone at the start of a word with no ``--`` before.
    """
    try:
        slots = _compile(command).slots
    except Exception:  # noqa: BLE001 - syntax errors are reported by check_template
        return []
    text = _BLOCK_OR_COMMENT.sub("", command)
    placeholders = list(_PLACEHOLDER.finditer(text))
    if len(placeholders) != len(slots):  # `{% raw %}` and friends: no reliable mapping
        return []
    pieces: list[str] = []
    starts: dict[int, int] = {}
    offset = last = 0
    for index, (match, slot) in enumerate(zip(placeholders, slots, strict=True)):
        pieces.append(text[last : match.start()])
        offset += match.start() - last
        starts[offset] = index
        stand_in = "x" if slot.trusted else "-x"
        pieces.append(stand_in)
        offset += len(stand_in)
        last = match.end()
    pieces.append(text[last:])
    found = option_positions("".join(pieces), starts)
    return [(slots[i].source, slots[i].declared) for i in found if not slots[i].trusted]


_PLACEHOLDER = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_BLOCK_OR_COMMENT = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.DOTALL)


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


def _forms(values: Iterable[str]) -> set[str]:
    """Every form a value may take once rendered: raw, shell-quoted, JSON-escaped."""
    forms: set[str] = set()
    for value in values:
        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
            forms.update((value, shlex.quote(value), json.dumps(value)[1:-1]))
    return forms


def _longest_first(forms: Iterable[str]) -> list[str]:
    """Longest first, so a secret containing another is replaced whole."""
    return sorted(forms, key=lambda form: (-len(form), form))


def _redact(value: Any, forms: list[str]) -> Any:
    if not forms:
        return value
    if isinstance(value, str):
        for form in forms:
            if form in value:
                value = value.replace(form, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {_redact(key, forms): _redact(item, forms) for key, item in value.items()}
    if isinstance(value, list | tuple):
        redacted = [_redact(item, forms) for item in value]
        return tuple(redacted) if isinstance(value, tuple) else redacted
    return value


class Renderer:
    """Renders step parameters and ``when:`` conditions; one per configured secret set.

    Shared by every worker thread, so it keeps no per-run state: a run renders through a
    ``session()``, which also remembers what secret-touching expressions rendered to.
    """

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self._secrets = _Secrets(secrets or {})
        self._redactions = _longest_first(_forms((secrets or {}).values()))

    def session(self) -> RenderSession:
        return RenderSession(self)

    def _context(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {**context, "secrets": self._secrets}

    def _render(
        self,
        template: str,
        context: Mapping[str, Any],
        shell: bool,
        patterns: Mapping[str, str],
        found: set[str],
    ) -> str:
        token = None
        try:
            compiled = _compile(template)
            state = _RenderState(compiled.slots, shell, found)
            token = _STATE.set(state)
            variables = self._context(context)
            out = compiled.template.render(variables)
            if not state.suspect:
                if shell and "\x00" in out:
                    raise TemplateError("the command contains a NUL byte, which cannot be passed to a shell")
                return out
            # Rare: a value starts with "-". Render again with markers to see where each one lands.
            state.marking = True
            return state.finish(compiled.template.render(variables), patterns)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the user as TemplateError
            forms = _longest_first(_forms(found) | set(self._redactions))
            raise TemplateError(_redact(_describe(exc, "template", template), forms)) from None
        finally:
            if token is not None:
                _STATE.reset(token)

    def render(
        self,
        template: str,
        context: Mapping[str, Any],
        *,
        shell: bool = False,
        patterns: Mapping[str, str] | None = None,
    ) -> str:
        """Render one template; ``shell=True`` quotes each ``{{ }}`` result for ``sh``.

        ``patterns`` ("labels.x" -> regex, from the code's match) lets a value that matches
        its label's declared pattern start with "-" where options are read.
        """
        return self._render(template, context, shell, patterns or {}, set())

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
        return _redact(value, self._redactions)

    def undefined_names(
        self,
        template: str,
        context: Mapping[str, Any],
        *,
        expression: bool = False,
        may_wait: Iterable[str] = (),
    ) -> list[str]:
        """What a template reads on every render that `context` lacks, each said in a few words.

        `may_wait` are names later registered by steps. A template that does not compile
        yields nothing here; rendering it reports the error.
        """
        try:
            required = _required(template, expression)
        except Exception:  # noqa: BLE001 - syntax errors belong to render()
            return []
        waiting = set(may_wait)
        missing: list[str] = []
        for root, key in required:
            if root in waiting or (root in _TRUSTED_ROOTS and root != "secrets" and root not in context):
                continue
            if root == "secrets":
                if key is not None and not hasattr(dict, key) and key not in self._secrets:
                    missing.append(f"secrets.{key} (not set in config.yaml)")
                continue
            if root not in context:
                missing.append(f"{root} (not defined)")
                continue
            value = context[root]
            if key is None or not isinstance(value, Mapping) or hasattr(dict, key) or key in value:
                continue
            what = {"labels": "label", "annotations": "annotation"}.get(root)
            why = f"the alert has no {what} {key!r}" if what else "not defined"
            missing.append(f"{_dotted(root, key)} ({why})")
        return list(dict.fromkeys(missing))


class RenderSession(Renderer):
    """One run's renderer: it redacts, besides the secrets, whatever any expression touching
    ``secrets`` rendered to during the run (``secrets.X | urlencode``, ``'Bearer ' ~ secrets.X``)."""

    def __init__(self, renderer: Renderer) -> None:
        self._secrets = renderer._secrets
        self._redactions = renderer._redactions
        self._found: set[str] = set()
        self._forms = self._redactions
        self._known = 0

    def render(
        self,
        template: str,
        context: Mapping[str, Any],
        *,
        shell: bool = False,
        patterns: Mapping[str, str] | None = None,
    ) -> str:
        return self._render(template, context, shell, patterns or {}, self._found)

    def redact(self, value: Any) -> Any:
        """Replace secrets and everything rendered from them with ``***``."""
        if len(self._found) != self._known:
            self._known = len(self._found)
            self._forms = _longest_first(set(self._redactions) | _forms(self._found))
        return _redact(value, self._forms)


def check_template(template: str) -> str | None:
    """Syntax check for ``suture validate``: a message naming the line, or None when fine."""
    try:
        _compile(template)
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


# ------------------------------------------------------------------ static facts, for validate

#: Attributes the sandbox refuses on the objects templates see: Python internals, not data.
_UNSAFE_ATTRIBUTES = frozenset({"mro"}).union(
    sandbox.UNSAFE_FUNCTION_ATTRIBUTES,
    sandbox.UNSAFE_METHOD_ATTRIBUTES,
    sandbox.UNSAFE_GENERATOR_ATTRIBUTES,
    sandbox.UNSAFE_COROUTINE_ATTRIBUTES,
    sandbox.UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
)


@dataclass(frozen=True)
class TemplateRef:
    """One `root`, `root.key` or `root['key']` a template reads from its context."""

    root: str
    key: str | None
    #: Under `| default(...)` or `is defined`: its absence is handled by the template.
    guarded: bool


@dataclass(frozen=True)
class TemplateFacts:
    """What `suture validate` needs to know about a template without rendering it."""

    refs: tuple[TemplateRef, ...]
    filters: frozenset[str]
    #: Attribute names the sandbox would refuse at run time (`__class__`, `mro`, ...).
    forbidden: tuple[str, ...]


def _forbidden(name: str) -> bool:
    return name.startswith("_") or name in _UNSAFE_ATTRIBUTES


class _FactWalker:
    def __init__(self, local: set[str]) -> None:
        self.local = local
        self.refs: list[TemplateRef] = []
        self.filters: set[str] = set()
        self.forbidden: list[str] = []

    def ref(self, root: str, key: str | None, guarded: bool) -> None:
        if root not in self.local:
            self.refs.append(TemplateRef(root, key, guarded))

    def walk(self, node: nodes.Node, guarded: bool = False) -> None:
        if isinstance(node, nodes.Filter | nodes.Test):
            if isinstance(node, nodes.Filter):
                self.filters.add(node.name)
            if node.name == "attr":
                self.forbidden += [
                    str(a.value) for a in node.args if isinstance(a, nodes.Const) and _forbidden(str(a.value))
                ]
            guard = guarded or node.name in ("default", "d", "defined", "undefined")
            if node.node is not None:
                self.walk(node.node, guard)
            for child in [*node.args, *node.kwargs, node.dyn_args, node.dyn_kwargs]:
                if child is not None:
                    self.walk(child, guarded)
            return
        if isinstance(node, nodes.Getattr):
            if _forbidden(node.attr):
                self.forbidden.append(node.attr)
            if isinstance(node.node, nodes.Name) and node.node.ctx == "load":
                self.ref(node.node.name, node.attr, guarded)
            else:
                self.walk(node.node, guarded)
            return
        if isinstance(node, nodes.Getitem):
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            if isinstance(key, str) and _forbidden(key):
                self.forbidden.append(key)
            if isinstance(node.node, nodes.Name) and node.node.ctx == "load":
                self.ref(node.node.name, key if isinstance(key, str) else None, guarded)
            else:
                self.walk(node.node, guarded)
            self.walk(node.arg, guarded)
            return
        if isinstance(node, nodes.Name):
            if node.ctx == "load":
                self.ref(node.name, None, guarded)
            return
        for inner in node.iter_child_nodes():
            self.walk(inner, guarded)


def _local_names(ast: nodes.Template) -> set[str]:
    try:
        return _loaded(ast) - meta.find_undeclared_variables(ast)
    except Exception:  # noqa: BLE001 - an unknown filter fails code generation; the facts still help
        return _bindings(ast)[0] | {"loop"}


@lru_cache(maxsize=2048)
def template_facts(source: str, expression: bool = False) -> TemplateFacts | None:
    """Names, filters and refused attributes of a template (or `when:` expression), read from
    its syntax tree; None when it does not parse (check_template reports that)."""
    try:
        if expression:
            tree: nodes.Node = Parser(_ENVIRONMENT, source, state="variable").parse_expression()
            local: set[str] = set()
        else:
            ast = _ENVIRONMENT.parse(source)
            tree, local = ast, _local_names(ast)
    except Exception:  # noqa: BLE001 - syntax errors are reported by check_template
        return None
    walker = _FactWalker(local)
    walker.walk(tree)
    return TemplateFacts(
        refs=tuple(dict.fromkeys(walker.refs)),
        filters=frozenset(walker.filters),
        forbidden=tuple(dict.fromkeys(walker.forbidden)),
    )
