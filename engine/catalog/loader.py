"""Load codes/ and playbooks/ into typed models; report every problem as `file:line: message`.

Match order is documented and stable: code files sorted by file name, codes in the order
they appear in each file; the first code whose conditions all hold wins.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.errors import CatalogError
from engine.models import UNCLASSIFIED, Code, Playbook, Step, StepTemplate
from engine.yamlfile import LocatedYaml, YamlSyntaxError, describe_validation_error, load_located

_PLACEHOLDER = re.compile(r"\{\{.*?\}\}", re.DOTALL)


def placeholder_inside_quotes(command: str) -> bool:
    """True when a `{{ }}` sits inside '...' or "..." in the shell text around it.

    The value is already shell-quoted; the author's own quotes would undo that and let
    an alert label inject shell syntax. `$( ... )` starts a fresh quoting context.
    """
    quote: str | None = None
    outer: list[str | None] = []  # quote state outside each open $( ... )
    index = 0
    while index < len(command):
        if command.startswith("{{", index):
            if quote is not None:
                return True
            end = _PLACEHOLDER.match(command, index)
            index = end.end() if end else len(command)
            continue
        char = command[index]
        if char == "\\" and quote != "'":
            index += 2
            continue
        if quote != "'" and command.startswith("$(", index):
            outer.append(quote)
            quote = None
            index += 2
            continue
        if char == ")" and quote is None and outer:
            quote = outer.pop()
        elif char in "'\"" and quote in (None, char):
            quote = None if quote == char else char
        index += 1
    return False


#: Names templates see; a `register:` may not shadow them.
RESERVED_NAMES = frozenset({"labels", "annotations", "alert", "incident", "target", "code", "secrets"})


@dataclass(frozen=True)
class PlaybookEntry:
    playbook: Playbook
    body: str
    sha256: str
    path: Path


@dataclass(frozen=True)
class CodeEntry:
    code: Code
    sha256: str
    path: Path
    line: int


@dataclass
class Catalog:
    codes: list[CodeEntry] = field(default_factory=list)
    playbooks: dict[tuple[str, int], PlaybookEntry] = field(default_factory=dict)
    #: `file:line: warning: ...` lines `suture validate` prints; they do not make the catalog invalid.
    warnings: list[str] = field(default_factory=list)

    def find_code(self, code: str) -> Code | None:
        return next((entry.code for entry in self.codes if entry.code.code == code), None)

    def match_patterns(self, code: str) -> dict[str, str]:
        """The label and annotation patterns a code declares ("labels.x" -> regex), for the runner."""
        for entry in self.codes:
            if entry.code.code == code:
                return declared_patterns(entry.code)
        return {}

    def latest_version(self, name: str) -> int | None:
        versions = [v for (n, v) in self.playbooks if n == name]
        return max(versions) if versions else None

    def playbook_for(self, code: Code) -> PlaybookEntry | None:
        """The playbook version a code runs: its pin, or the newest version in the catalog."""
        name = code.playbook_name
        if name is None:
            return None
        version = code.playbook_pin or self.latest_version(name)
        return self.playbooks.get((name, version)) if version is not None else None

    def summary(self, code: Code) -> dict[str, Any]:
        """A code as `codes list` shows it (and the console's catalog): with the version it runs now."""
        entry = self.playbook_for(code)
        return {
            "code": code.code,
            "title": code.title,
            "severity": code.severity.value,
            "mode": code.mode.value,
            "dry_run": code.dry_run,
            "playbook": code.playbook_name,
            "playbook_version": entry.playbook.version if entry is not None else code.playbook_pin,
            "owner": code.knowledge.owner,
            "summary": code.knowledge.summary,
        }

    def users(self) -> dict[tuple[str, int], list[str]]:
        """The codes that run each playbook version now, by (name, version)."""
        found: dict[tuple[str, int], list[str]] = {}
        for entry in self.codes:
            running = self.playbook_for(entry.code)
            if running is not None:
                key = (running.playbook.name, running.playbook.version)
                found.setdefault(key, []).append(entry.code.code)
        return found

    def get_playbook(self, ref: str) -> PlaybookEntry | None:
        name, _, version = ref.partition("@")
        number = int(version) if version.isdigit() else self.latest_version(name)
        return self.playbooks.get((name, number)) if number is not None else None


def declared_patterns(code: Code) -> dict[str, str]:
    """What the code owner constrained: a placeholder reading one of these may start with "-"."""
    match = code.match
    patterns = {f"annotations.{name}": pattern for name, pattern in match.annotations.items()}
    patterns.update({f"labels.{name}": pattern for name, pattern in match.labels.items()})
    return patterns


def content_hash(data: Any) -> str:
    """Hash of the parsed content, so comments and layout can change without a new version."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_catalog(
    codes_dir: Path,
    playbooks_dir: Path,
    stored_playbooks: Mapping[tuple[str, int], str] | None = None,
    *,
    secrets: Collection[str] | None = None,
    host_allowed: Callable[[str], bool] | None = None,
) -> Catalog:
    """Load and cross-check everything; raise CatalogError listing every problem.

    With `secrets` (the names config.yaml declares) and `host_allowed` (the HTTP action's
    allow-list matcher), templates are also checked against the config.
    """
    from engine.catalog.static import playbook_model_problems, playbook_problems
    from engine.templating import check_expression, check_template

    problems: list[str] = []
    catalog = Catalog()
    docs: dict[tuple[str, int], LocatedYaml] = {}
    for path in _yaml_files(playbooks_dir, problems):
        doc = _load(path, problems)
        if doc is None:
            continue
        if not isinstance(doc.data, dict):
            problems.append(f"{path}:1: a playbook file holds one mapping (name, version, steps)")
            continue
        try:
            playbook = Playbook.model_validate(doc.data)
        except ValidationError as exc:
            problems.extend(playbook_model_problems(doc, exc))
            continue
        key = (playbook.name, playbook.version)
        if key in catalog.playbooks:
            other = catalog.playbooks[key].path
            problems.append(f"{doc.where(('version',))}: playbook {playbook.ref} is also defined in {other}")
            continue
        problems.extend(_check_playbook_templates(doc, playbook, check_template, check_expression))
        problems.extend(playbook_problems(doc, playbook, RESERVED_NAMES, secrets, host_allowed))
        entry = PlaybookEntry(playbook, path.read_text(encoding="utf-8"), content_hash(doc.data), path)
        stored = (stored_playbooks or {}).get(key)
        if stored is not None and stored != entry.sha256:
            problems.append(
                f"{doc.where(('version',))}: playbook {playbook.ref} changed but version {playbook.version} "
                "is already stored; raise `version` to publish a change"
            )
        catalog.playbooks[key] = entry
        docs[key] = doc

    seen: dict[str, str] = {}
    for path in _yaml_files(codes_dir, problems):
        doc = _load(path, problems)
        if doc is None or doc.data is None:
            continue
        if not isinstance(doc.data, list):
            problems.append(f"{path}:1: a codes file holds a list of codes (- code: DISK-001 ...)")
            continue
        for index, item in enumerate(doc.data):
            where = doc.where((index,))
            try:
                code = Code.model_validate(item)
            except ValidationError as exc:
                problems.extend(describe_validation_error(doc, exc, prefix=(index,)))
                continue
            if code.code == UNCLASSIFIED:
                problems.append(f"{where}: {UNCLASSIFIED} is reserved for alerts that match no code")
                continue
            if code.code in seen:
                problems.append(f"{where}: duplicate code {code.code} (first defined at {seen[code.code]})")
                continue
            seen[code.code] = where
            problems.extend(_check_code(doc, index, code, catalog, stored_playbooks or {}, check_template))
            catalog.codes.append(CodeEntry(code, content_hash(item), path, doc.line_of((index,))))
    if problems:
        raise CatalogError(problems)
    catalog.warnings = _option_warnings(catalog, docs)
    return catalog


def _option_warnings(catalog: Catalog, docs: Mapping[tuple[str, int], LocatedYaml]) -> list[str]:
    """An alert value alone where an SSH command reads options, unless every code using the
    playbook declares that label's pattern: at run time a value starting with "-" is refused."""
    from engine.templating import option_placeholders

    warnings: list[str] = []
    for key, entry in catalog.playbooks.items():
        users = [c.code for c in catalog.codes if catalog.playbook_for(c.code) is entry]
        declared = set.intersection(*(set(declared_patterns(code)) for code in users)) if users else set()
        for phase in ("steps", "verify", "rollback"):
            for index, step in enumerate(getattr(entry.playbook, phase)):
                for template in step.templates():
                    if not template.shell:
                        continue
                    where, field = docs[key].where((phase, index, *template.path)), _dotted(template)
                    for source, label in option_placeholders(template.source):
                        if label is not None and label in declared:
                            continue
                        hint = f", or declare {label}'s pattern in the code's match" if label else ""
                        warnings.append(
                            f"{where}: warning: {field}: "
                            f"{{{{ {source} }}}} stands alone where the command reads options, so a value "
                            f'starting with "-" will be refused at run time; put it after "--"{hint}'
                        )
    return list(dict.fromkeys(warnings))  # two placeholders on one line: say it once


def _yaml_files(folder: Path, problems: list[str]) -> list[Path]:
    if not folder.is_dir():
        problems.append(f"{folder}:1: catalog folder not found")
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _load(path: Path, problems: list[str]) -> LocatedYaml | None:
    try:
        return load_located(path)
    except YamlSyntaxError as exc:
        problems.append(str(exc))
        return None


def _check_code(
    doc: LocatedYaml,
    index: int,
    code: Code,
    catalog: Catalog,
    stored: Mapping[tuple[str, int], str],
    check_template: Any,
) -> list[str]:
    from engine.catalog.static import target_problems

    problems = []
    conditions: dict[tuple[str | int, ...], str | None] = {
        ("match", "source"): code.match.source,
        ("match", "alertname"): code.match.alertname,
    }
    conditions.update({("match", "labels", k): v for k, v in code.match.labels.items()})
    conditions.update({("match", "annotations", k): v for k, v in code.match.annotations.items()})
    for loc, pattern in conditions.items():
        if pattern is None:
            continue
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"{doc.where((index, *loc))}: bad regular expression {pattern!r}: {exc}")
    if code.target is not None and (error := check_template(code.target)) is not None:
        problems.append(f"{doc.where((index, 'target'))}: target: {error}")
    elif code.target is not None:
        problems += [f"{doc.where((index, 'target'))}: target: {found}" for found in target_problems(code)]
    name, pin = code.playbook_name, code.playbook_pin
    if name is not None:
        known = catalog.latest_version(name) is not None or any(n == name for n, _ in stored)
        if not known:
            problems.append(f"{doc.where((index, 'playbook'))}: playbook {name!r} not found in the catalog")
        elif pin is not None and (name, pin) not in catalog.playbooks:
            problems.append(
                f"{doc.where((index, 'playbook'))}: playbook {name}@{pin} not found in the catalog"
            )
        elif pin is None and catalog.latest_version(name) is None:
            problems.append(f"{doc.where((index, 'playbook'))}: playbook {name!r} not found in the catalog")
    elif code.mode.value != "manual":
        problems.append(f"{doc.where((index, 'mode'))}: mode {code.mode.value} needs a playbook")
    others = [("canary", code.canary.version if code.canary else None), ("shadow", code.shadow_version)]
    for key, version in others:
        if version is None:
            continue
        where = doc.where((index, key, "playbook") if key == "canary" else (index, key))
        if version not in catalog.playbooks:
            problems.append(f"{where}: {key}: playbook {version[0]}@{version[1]} not found in the catalog")
        elif version[0] != name:
            problems.append(f"{where}: {key}: a version of the code's own playbook {name!r} is expected")
    return problems


def _check_playbook_templates(
    doc: LocatedYaml, playbook: Playbook, check_template: Any, check_expression: Any
) -> list[str]:
    from engine.catalog.static import ansible_filter_problem
    from engine.templating import template_facts

    problems = []
    registered: set[str] = set()
    for phase in ("steps", "verify", "rollback"):
        steps: list[Step] = getattr(playbook, phase)
        for index, step in enumerate(steps):
            loc = (phase, index)
            if step.register_as in RESERVED_NAMES:
                problems.append(
                    f"{doc.where((*loc, 'register'))}: register: {step.register_as!r} is a reserved name"
                )
            if step.register_as:
                registered.add(step.register_as)
            templates = list(step.templates())
            for template in templates:
                if (hint := ansible_filter_problem(template_facts(template.source))) is not None:
                    problems.append(f"{doc.where((*loc, *template.path))}: {_dotted(template)}: {hint}")
                elif (error := check_template(template.source)) is not None:
                    problems.append(f"{doc.where((*loc, *template.path))}: {_dotted(template)}: {error}")
            for template in templates:
                if template.shell and placeholder_inside_quotes(template.source):
                    problems.append(
                        f"{doc.where((*loc, *template.path))}: {_dotted(template)}: do not put quotes around "
                        "{{ ... }}; values are shell-quoted automatically and your quotes would undo that"
                    )
            if step.when is not None and (error := check_expression(step.when)) is not None:
                problems.append(f"{doc.where((*loc, 'when'))}: when: {error}")
    return problems


def _dotted(template: StepTemplate) -> str:
    """How a message names the field: `ssh.command`, `http.headers.Authorization`."""
    return ".".join(map(str, template.path))
