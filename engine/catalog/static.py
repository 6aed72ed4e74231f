"""What `suture validate` can tell from the files alone, before any alert arrives.

A template that reads a result no earlier step registers, a secret config.yaml does not
declare, a literal URL host outside `http.allowed_hosts`, an attribute the sandbox refuses,
a label typo in a code's `target`, and the spellings an Ansible user reaches for first:
each is a run that would fail (or act on the wrong host) later, so each is a problem now.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from engine.models import Alert, Code, Playbook, Step
from engine.templating import TemplateFacts, template_facts
from engine.yamlfile import LocatedYaml, describe_validation_error

#: Label names alerts commonly carry; a code's `target` may read these without naming them in `match`.
COMMON_LABELS = (
    "instance",
    "job",
    "host",
    "hostname",
    "node",
    "target",
    "service",
    "pod",
    "namespace",
    "mountpoint",
    "device",
    "name",
    "alertname",
    "severity",
)
COMMON_ANNOTATIONS = ("summary", "description", "runbook_url")
#: What a code's `target` template sees at intake.
TARGET_ROOTS = ("labels", "annotations", "alert")
#: Jinja's own globals: no step registers them.
_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace"})
#: What `register:` exposes for each action (engine/execution/actions/*.py, `registered`).
REGISTERED_FIELDS: dict[str, tuple[str, ...]] = {
    "ssh": ("stdout", "stderr", "exit_code"),
    "http": ("status", "body", "json", "retry_after"),
    "wait": (),
}
#: Registered-result fields an Ansible user writes, and the Suture field.
_ANSIBLE_FIELDS = {"rc": "exit_code", "stdout_lines": "stdout", "stderr_lines": "stderr", "content": "body"}
#: Keys an Ansible user writes in a step or playbook, and how Suture says it.
ANSIBLE_KEYS = {
    "become": "use `sudo: true` under `ssh:`",
    "become_user": "commands run as the configured ssh user; `sudo: true` under `ssh:` runs them as root",
    "ignore_errors": "use `on_failure: continue`",
    "shell": "use `ssh: {command: ...}`",
    "command": "use `ssh: {command: ...}`",
    "raw": "use `ssh: {command: ...}`",
    "script": "use `ssh: {command: ...}`",
    "uri": "use `http: {url: ...}`",
    "delay": "use `retry_delay:`",
    "until": "use `retries:`; a step is retried until it succeeds",
    "loop": "steps do not loop; write one step per item, or loop inside the command",
    "with_items": "steps do not loop; write one step per item, or loop inside the command",
    "failed_when": "ssh fails on a non-zero exit code, http on a status outside `expect_status`",
    "changed_when": "Suture does not track changes; drop `changed_when`",
    "delegate_to": "use `ssh: {target: ...}`",
    "tasks": "use `steps:`",
    "hosts": "the host is the incident's target (a code's `target:`), or `ssh: {target: ...}` per step",
    "gather_facts": "Suture gathers no facts; drop `gather_facts`",
}
#: Filters an Ansible user writes, and what to do instead.
ANSIBLE_FILTERS = {
    "quote": "values are quoted already; drop `| quote`",
    "mandatory": "every name a template reads is required already; drop `| mandatory`",
    "to_json": "use `| tojson`",
}
_PHASES = ("steps", "verify", "rollback")


def playbook_model_problems(doc: LocatedYaml, exc: ValidationError) -> list[str]:
    """The loader's `file:line: key: message` lines, with the Suture spelling for Ansible keys."""
    problems = describe_validation_error(doc, exc)
    for index, item in enumerate(exc.errors()):
        loc = tuple(item["loc"])
        if item.get("type") == "extra_forbidden" and loc and str(loc[-1]) in ANSIBLE_KEYS:
            dotted = ".".join(map(str, loc))
            key = str(loc[-1])
            problems[index] = f"{doc.where(loc)}: {dotted}: `{key}` is Ansible; {ANSIBLE_KEYS[key]}"
    return problems


def ansible_filter_problem(facts: TemplateFacts | None) -> str | None:
    """The hint for the first Ansible-only filter a template uses (Jinja would say only "no filter")."""
    for name, hint in ANSIBLE_FILTERS.items():
        if facts is not None and name in facts.filters:
            return hint
    return None


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _forbidden(facts: TemplateFacts) -> Iterator[str]:
    for name in facts.forbidden:
        yield (
            f"`{name}` reaches Python internals, which the template sandbox refuses; "
            "templates read only alert data, step results and secrets"
        )


def _secret_problems(facts: TemplateFacts, secrets: Collection[str] | None) -> Iterator[str]:
    if secrets is None:
        return
    for ref in facts.refs:
        if ref.root == "secrets" and ref.key is not None and not hasattr(dict, ref.key):
            if ref.key not in secrets:
                declared = ", ".join(sorted(secrets)) or "none declared"
                yield (
                    f"secret {ref.key!r} is not declared under secrets: in config.yaml "
                    f"({declared}){_suggest(ref.key, secrets)}"
                )


class _Registry:
    """Which names steps register, where, and with what action, in run order."""

    def __init__(self, doc: LocatedYaml, playbook: Playbook) -> None:
        self.order: list[tuple[tuple[str, int], Step]] = [
            ((phase, index), step) for phase in _PHASES for index, step in enumerate(getattr(playbook, phase))
        ]
        self.doc = doc
        self.kinds: dict[str, set[str]] = {}
        for _, step in self.order:
            if step.register_as:
                self.kinds.setdefault(step.register_as, set()).add(step.action)

    def first(self, name: str) -> str:
        loc = next(loc for loc, step in self.order if step.register_as == name)
        return self.doc.where((*loc, "register"))


def _result_problems(
    facts: TemplateFacts, earlier: dict[str, set[str]], registry: _Registry, reserved: Collection[str]
) -> Iterator[str]:
    known = {*reserved, *_GLOBALS}
    for ref in facts.refs:
        if ref.root in known:
            continue
        if ref.root not in earlier:
            if ref.guarded:
                continue
            if ref.root in registry.kinds:
                yield (
                    f"`{ref.root}` is registered only by a later step ({registry.first(ref.root)}); "
                    "a step reads only what earlier steps registered"
                )
            else:
                names = [*registry.kinds, *reserved]
                yield f"no earlier step has `register: {ref.root}`{_suggest(ref.root, names)}"
            continue
        if ref.key is None or hasattr(dict, ref.key):
            continue
        fields = sorted({f for kind in earlier[ref.root] for f in REGISTERED_FIELDS.get(kind, ())})
        if ref.key in fields:
            continue
        if ref.key in _ANSIBLE_FIELDS:
            yield f"`{ref.root}.{ref.key}` is Ansible; use `.{_ANSIBLE_FIELDS[ref.key]}`"
            continue
        kinds = " or ".join(sorted(earlier[ref.root]))
        has = ", ".join(fields) or "nothing"
        yield (f"`{ref.root}.{ref.key}`: the result of a {kinds} step has {has}{_suggest(ref.key, fields)}")


def literal_url_host(url: str) -> str | None:
    """The host of an http step's URL when no template touches it; None when one does."""
    literal = re.split(r"\{\{|\{%|\{#", url, maxsplit=1)[0]
    templated = literal != url
    scheme, sep, rest = literal.partition("://")
    if not sep:
        return None
    end = re.search(r"[/?#]", rest)
    if end is not None:
        authority = rest[: end.start()]
    elif not templated:
        authority = rest
    else:  # the template may still be part of the host, unless a port follows it
        tail = rest.rsplit("@", 1)[-1]
        if tail.startswith("[") or ":" not in tail:
            return None
        authority = rest
    try:
        host = urlsplit(f"{scheme}://{authority}").hostname
    except ValueError:
        return None
    return host or None


def playbook_problems(
    doc: LocatedYaml,
    playbook: Playbook,
    reserved: Collection[str],
    secrets: Collection[str] | None = None,
    host_allowed: Callable[[str], bool] | None = None,
) -> list[str]:
    """Every static problem of one playbook's templates and `when:` conditions."""
    registry = _Registry(doc, playbook)
    earlier: dict[str, set[str]] = {}
    problems: list[str] = []
    for (phase, index), step in registry.order:
        loc = (phase, index)
        sources: list[tuple[Sequence[str | int], str, str, bool]] = [
            ((*loc, *template.path), ".".join(map(str, template.path)), template.source, False)
            for template in step.templates()
        ]
        if step.when is not None:
            sources.append(((*loc, "when"), "when", step.when, True))
        for path, field, source, expression in sources:
            facts = template_facts(source, expression)
            if facts is None:
                continue
            where = doc.where(path)
            found = [
                *_forbidden(facts),
                *_result_problems(facts, earlier, registry, reserved),
                *_secret_problems(facts, secrets),
            ]
            problems += [f"{where}: {field}: {message}" for message in found]
        if step.http is not None and host_allowed is not None:
            host = literal_url_host(step.http.url)
            if host is not None and not host_allowed(host):
                problems.append(
                    f"{doc.where((*loc, 'http', 'url'))}: http.url: host {host!r} is not in "
                    "http.allowed_hosts; add it there in config.yaml or correct the URL"
                )
        if step.register_as:
            earlier.setdefault(step.register_as, set()).add(step.action)
    return problems


def target_problems(code: Code) -> list[str]:
    """What a code's `target` template reads must exist at intake: a typo is an error, not a fallback."""
    facts = template_facts(code.target) if code.target else None
    if facts is None:
        return []
    problems = list(_forbidden(facts))
    labels = dict.fromkeys([*code.match.labels, *COMMON_LABELS])
    annotations = dict.fromkeys([*code.match.annotations, *COMMON_ANNOTATIONS])
    known: dict[str, Any] = {"labels": labels, "annotations": annotations, "alert": Alert.model_fields}
    for ref in facts.refs:
        if ref.root in _GLOBALS:
            continue
        if ref.root not in known:
            problems.append(
                f"`{ref.root}` is not available to a target, which reads only "
                f"{', '.join(TARGET_ROOTS)}{_suggest(ref.root, TARGET_ROOTS)}"
            )
            continue
        if ref.key is None or ref.key in known[ref.root] or hasattr(dict, ref.key):
            continue
        kind = {"labels": "label", "annotations": "annotation", "alert": "alert field"}[ref.root]
        hint = (
            f"; if alerts carry it, name it in the code's match {ref.root} (e.g. {ref.key}: '.+')"
            if ref.root != "alert"
            else ""
        )
        problems.append(f"unknown {kind} {ref.key!r} in target{_suggest(ref.key, known[ref.root])}{hint}")
    return problems
