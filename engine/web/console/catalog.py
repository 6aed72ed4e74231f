"""Console pages: the catalog in force with each code's last 30 days, every playbook version as
stored, the diff between two of them, and the handover report inside the console's layout.

Read-only: everything here is what `suture codes`, `suture playbooks` and `suture report handover`
show, read the same way, so the page and the terminal never disagree.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from engine.analytics import read_handover, read_stats
from engine.analytics.handover import replayed
from engine.analytics.handover_html import render_handover_body
from engine.analytics.past import ended, ttr_seconds
from engine.catalog.loader import Catalog
from engine.durations import parse_since
from engine.errors import InvalidArgument, NotFound
from engine.models import Code
from engine.records import CodeStats
from engine.store.catalog_history import CatalogHistory
from engine.store.history import History
from engine.web.console.context import ConsoleContext

#: The window of the catalog's per-code numbers.
STATS_DAYS = 30
#: How far back the change record on /catalog goes (the handover report's week).
CHANGES_DAYS = 7
#: Larger numbers cannot be a stored version; refusing them keeps SQLite's INTEGER from overflowing.
MAX_VERSION = 2**62


@dataclass(frozen=True)
class Version:
    """One playbook version as the console shows it: stored (with its first load) or only in the
    catalog's files (the daemon stores those at its next load)."""

    name: str
    version: int
    sha256: str
    loaded_at: datetime | None
    in_catalog: bool
    used_by: tuple[str, ...]
    previous: int | None


@dataclass(frozen=True)
class DiffLine:
    #: `file` (the ---/+++ headers), `hunk` (@@), `ins`, `del` or `ctx`.
    kind: str
    text: str


def router(context: ConsoleContext) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    services = context.services
    history = CatalogHistory(services.store.db)
    facts = History(services.store.db)

    def catalog() -> Catalog:
        return services.intake.view.catalog

    def in_force() -> dict[str, Code]:
        return {entry.code.code: entry.code for entry in catalog().codes}

    @router.get("/catalog")
    def catalog_page(request: Request) -> Response:
        viewer = context.viewer(request)
        now = context.now()
        current = catalog()
        codes = in_force()
        stats = read_stats(facts, codes, now - timedelta(days=STATS_DAYS), now)
        by_code = {row.code: row for row in stats.by_code}
        rows = [_code_row(current, entry.code, by_code.get(entry.code.code)) for entry in current.codes]
        changes = [
            {
                "kind": change.kind,
                "name": change.name,
                "version": change.version,
                "what": "added" if change.previous_body is None else "changed",
                "loaded_at": change.loaded_at,
                "replay": replayed(change.replay, markdown=False),
                "replayed": change.replay is not None,
            }
            for change in facts.catalog_changes(now - timedelta(days=CHANGES_DAYS), now)
        ]
        return context.page(
            viewer,
            "catalog.html",
            codes=rows,
            playbooks=_versions(history, current),
            changes=changes,
            changes_days=CHANGES_DAYS,
            stats_days=STATS_DAYS,
            stats_since=stats.since,
        )

    @router.get("/catalog/codes/{code}")
    def code_page(request: Request, code: str) -> Response:
        viewer = context.viewer(request)
        current = catalog()
        found = current.find_code(code)
        versions = history.code_versions(code)
        if found is None:
            if not versions:
                return context.problem(
                    request, 404, f"code {code} is not in the catalog and was never stored"
                )
            # Removed from the catalog: what it said when last loaded.
            found = Code.model_validate(history.code(code).body)
        recent = history.recent_incidents(code, limit=10)
        return context.page(
            viewer,
            "catalog_code.html",
            code=found,
            summary=_code_row(current, found, None),
            in_catalog=current.find_code(code) is not None,
            match=_match(found),
            policy=_flat(found.policy.model_dump(mode="json", exclude_none=True)),
            escalation=_flat(found.escalation.model_dump(mode="json", exclude_none=True))
            if found.escalation
            else [],
            versions=versions,
            recent=[
                {
                    "id": past.id,
                    "target": past.target,
                    "opened_at": past.opened_at,
                    "ended": ended(past),
                    "ttr": ttr_seconds(past),
                    "fixed_by": past.fixed_by,
                }
                for past in recent
            ],
        )

    # Before /{version}: `diff` is not a version (the int convertor refuses it anyway).
    @router.get("/catalog/playbooks/{name}/diff")
    def diff_page(
        request: Request,
        name: str,
        from_: str | None = Query(default=None, alias="from"),
        to: str | None = None,
    ) -> Response:
        viewer = context.viewer(request)
        current = catalog()
        known = {v.version: v for v in _versions(history, current) if v.name == name}
        if not known:
            return context.problem(request, 404, f"playbook {name} is not stored and not in the catalog")
        try:
            new = _number("to", to) if to else max(known)
            before_new = known[new].previous if new in known else None
            old = _number("from", from_) if from_ else before_new if before_new is not None else new
        except InvalidArgument as exc:
            return context.problem(request, 400, str(exc))
        for wanted in (old, new):
            if wanted not in known:
                return context.problem(request, 404, f"playbook {name}@{wanted} is not stored")
        before, after = known[old], known[new]
        try:
            lines = diff_lines(
                before, yaml_of(history, current, before), after, yaml_of(history, current, after)
            )
        except NotFound as exc:
            return context.problem(request, 404, str(exc))
        return context.page(
            viewer, "catalog_diff.html", name=name, old=before, new=after, choices=sorted(known), lines=lines
        )

    @router.get("/catalog/playbooks/{name}/{version:int}")
    def playbook_page(request: Request, name: str, version: int) -> Response:
        viewer = context.viewer(request)
        current = catalog()
        known = [v for v in _versions(history, current) if v.name == name]
        shown = next((v for v in known if v.version == version), None)
        if shown is None:
            return context.problem(request, 404, f"playbook {name}@{version} is not stored")
        try:
            body = yaml_of(history, current, shown)
        except NotFound as exc:
            return context.problem(request, 404, str(exc))
        later = [v.version for v in known if v.version > version]
        return context.page(
            viewer,
            "catalog_playbook.html",
            playbook=shown,
            body=body,
            others=[v.version for v in known if v.version != version],
            next_version=min(later) if later else None,
        )

    @router.get("/handover")
    def handover_page(request: Request, since: str = "7d") -> Response:
        viewer = context.viewer(request)
        now = context.now()
        try:
            start = parse_since(since, now)
            if start is None or start >= now:
                raise InvalidArgument(f"since: {since!r} is not in the past")
        except InvalidArgument as exc:
            return context.problem(request, 400, str(exc))
        codes = in_force()
        report = render_handover_body(read_handover(facts, codes, start, now), codes)
        return context.page(viewer, "handover.html", report=report, since=since)

    return router


def yaml_of(history: CatalogHistory, catalog: Catalog, version: Version) -> str:
    """The YAML exactly as stored; a version not stored yet, as its catalog file says it."""
    if version.loaded_at is not None:
        return history.playbook(version.name, version.version).body
    return catalog.playbooks[(version.name, version.version)].body


def diff_lines(old: Version, old_yaml: str, new: Version, new_yaml: str) -> list[DiffLine]:
    """The unified diff `suture playbooks diff` prints, each line with the kind it is drawn as."""
    lines = difflib.unified_diff(
        old_yaml.splitlines(keepends=True),
        new_yaml.splitlines(keepends=True),
        fromfile=f"{old.name}@{old.version}",
        tofile=f"{new.name}@{new.version}",
        fromfiledate=_loaded(old),
        tofiledate=_loaded(new),
    )
    return [DiffLine(_kind(line), line.rstrip("\r\n")) for line in lines]


def _kind(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    return {"+": "ins", "-": "del"}.get(line[:1], "ctx")


def _loaded(version: Version) -> str:
    if version.loaded_at is None:
        return "(not stored yet)"
    return version.loaded_at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(name: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_VERSION:
        raise InvalidArgument(f"{name}: expected a playbook version (1, 2, ...), got {text!r}")
    return int(text)


def _versions(history: CatalogHistory, catalog: Catalog) -> list[Version]:
    """Every playbook version, stored or in the catalog, by name then version (`playbooks list`)."""
    stored = {(v.name, v.version): v for v in history.playbook_versions()}
    users = catalog.users()
    answer: list[Version] = []
    previous: dict[str, int] = {}
    for key in sorted(set(stored) | set(catalog.playbooks)):
        kept, entry = stored.get(key), catalog.playbooks.get(key)
        if kept is not None:
            sha256, loaded_at = kept.sha256, kept.loaded_at
        else:
            assert entry is not None  # a key comes from one of the two
            sha256, loaded_at = entry.sha256, None
        answer.append(
            Version(
                name=key[0],
                version=key[1],
                sha256=sha256,
                loaded_at=loaded_at,
                in_catalog=entry is not None,
                used_by=tuple(users.get(key, [])),
                previous=previous.get(key[0]),
            )
        )
        previous[key[0]] = key[1]
    return answer


def _code_row(catalog: Catalog, code: Code, stats: CodeStats | None) -> dict[str, Any]:
    return {**catalog.summary(code), "stats": stats}


def _match(code: Code) -> list[tuple[str, str]]:
    """The match rules as `suture codes show` lists them: all must hold, matched in full."""
    match = code.match
    rules = [(key, str(getattr(match, key))) for key in ("source", "alertname") if getattr(match, key)]
    rules += [(f"labels.{k}", v) for k, v in match.labels.items()]
    rules += [(f"annotations.{k}", v) for k, v in match.annotations.items()]
    return rules


def _flat(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested policy settings as `storm.threshold: 5` lines."""
    lines: list[tuple[str, str]] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            lines += _flat(value, f"{prefix}{key}.")
        else:
            lines.append((f"{prefix}{key}", str(value)))
    return lines
