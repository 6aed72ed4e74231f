"""`suture report handover`: the Markdown a newcomer reads at the start of a shift, pure over facts.

Sections, in the contract's order (DESIGN.md, "report handover"): open incidents (each with what to do by
hand), runs waiting for a person, what recurred, automation per playbook version (the failing or
ineffective first), catalog changes with their diff, people's notes, and the numbers against the
period of the same length before.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import yaml

from engine.models import Code
from engine.records import PlaybookStats, Stats
from engine.store.history import AwaitingRun, CatalogChange, IncidentFacts, NoteFacts, RunFacts

HEADINGS = (
    "## Open incidents",
    "## Waiting for approval",
    "## Recurring",
    "## Automation",
    "## Catalog changes",
    "## Notes from the shift",
    "## Numbers",
)
#: Diff lines shown per catalog change; the rest is in `suture playbooks diff` / `codes show`.
DIFF_LINES = 60


@dataclass(frozen=True, slots=True)
class HandoverFacts:
    """Everything the report shows, read beforehand (engine.store.history)."""

    now: datetime
    since: datetime
    open_incidents: Sequence[IncidentFacts]
    open_runs: Sequence[RunFacts]
    awaiting: Sequence[AwaitingRun]
    stats: Stats
    previous: Stats
    changes: Sequence[CatalogChange]
    notes: Sequence[NoteFacts]


def render_handover(facts: HandoverFacts, codes: Mapping[str, Code]) -> str:
    lines = [f"# Handover {when(facts.since)} .. {when(facts.now)}", ""]
    sections = (
        _open_incidents(facts, codes),
        _awaiting(facts),
        _recurring(facts.stats),
        _automation(facts.stats.playbooks),
        _catalog_changes(facts.changes),
        _notes(facts.notes),
        _numbers(facts.stats, facts.previous),
    )
    for heading, body in zip(HEADINGS, sections, strict=True):
        lines += [heading, "", *(body or ["Nothing."]), ""]
    return "\n".join(lines).rstrip() + "\n"


def when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def span(value: timedelta) -> str:
    """A duration as a person reads it: 45s, 12m, 3h 20m, 2d 4h."""
    total = int(abs(value).total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _deadline(incident: IncidentFacts, now: datetime) -> str:
    parts = []
    if incident.due_at is not None:
        left = incident.due_at - now
        state = f"overdue by {span(left)}" if left.total_seconds() < 0 else f"in {span(left)}"
        parts.append(f"resolve by {when(incident.due_at)} ({state})")
    if incident.respond_by is not None and incident.acknowledged_at is None:
        left = incident.respond_by - now
        state = f"late by {span(left)}" if left.total_seconds() < 0 else f"in {span(left)}"
        parts.append(f"acknowledge by {when(incident.respond_by)} ({state})")
    return "; ".join(parts) or "none (no deadline for this severity)"


def _tried(runs: Sequence[RunFacts]) -> str:
    if not runs:
        return "nothing: no run for this incident"
    told = []
    for run in runs:
        dry = " (dry run)" if run.dry_run else ""
        at = run.finished_at or run.started_at or run.queued_at
        error = f": {one_line(run.error)}" if run.error else ""
        told.append(f"{run.playbook}@{run.playbook_version} {run.status}{dry} at {when(at)}{error}")
    return "; ".join(told)


def _open_incidents(facts: HandoverFacts, codes: Mapping[str, Code]) -> list[str]:
    runs_of: dict[int, list[RunFacts]] = defaultdict(list)
    for run in facts.open_runs:
        runs_of[run.incident_id].append(run)
    lines: list[str] = []
    for incident in facts.open_incidents:
        code = codes.get(incident.code)
        knowledge = code.knowledge if code else None
        acked = (
            f"yes, by {incident.acknowledged_by} at {when(incident.acknowledged_at)}"
            if incident.acknowledged_at
            else "no"
        )
        lines += [
            f"### #{incident.id} {incident.code}: {one_line(incident.title)}",
            "",
            f"- Code: {incident.code}",
            f"- Title: {one_line(incident.title)}",
            f"- Target: {incident.target or '(unknown)'}",
            f"- Severity: {incident.severity}",
            f"- Age: {span(facts.now - incident.opened_at)} (opened {when(incident.opened_at)})",
            f"- Deadline: {_deadline(incident, facts.now)}",
            f"- Owner: {(knowledge.owner if knowledge else '') or '(no owner in the catalog)'}",
            f"- Acknowledged: {acked}",
            f"- Automation tried: {_tried(runs_of.get(incident.id, []))}",
        ]
        if knowledge and knowledge.summary:
            lines.append(f"- Summary: {one_line(knowledge.summary)}")
        if knowledge and knowledge.diagnosis:
            lines.append("- Diagnosis:")
            lines += [f"  - {one_line(step)}" for step in knowledge.diagnosis]
        if knowledge and knowledge.manual_steps:
            lines.append("- Manual steps:")
            lines += [f"  {n}. {one_line(step)}" for n, step in enumerate(knowledge.manual_steps, 1)]
        elif code is None:
            lines.append("- Manual steps: none: this code is not in the catalog (write one for it)")
        else:
            lines.append(f"- Manual steps: none written yet (add knowledge.manual_steps to {incident.code})")
        lines.append("")
    return lines[:-1] if lines else []


def _awaiting(facts: HandoverFacts) -> list[str]:
    return [
        f"- run {a.run.id}: {a.run.playbook}@{a.run.playbook_version} for #{a.run.incident_id} {a.code}"
        f" ({one_line(a.title)}) on {a.target or '(unknown)'}, waiting since {when(a.run.queued_at)}"
        f" ({span(facts.now - a.run.queued_at)}): `suture approve {a.run.id}` or `suture reject {a.run.id}`"
        for a in facts.awaiting
    ]


def _recurring(stats: Stats) -> list[str]:
    return [f"- {r.code} on {r.target or '(unknown)'}: {r.incidents} incidents" for r in stats.recurring]


def _troubled(p: PlaybookStats) -> bool:
    return p.failed > 0 or p.effective < p.runs


def _automation(playbooks: Sequence[PlaybookStats]) -> list[str]:
    if not playbooks:
        return []
    ordered = sorted(
        playbooks,
        key=lambda p: (not _troubled(p), p.effectiveness if p.effectiveness is not None else 1.0, p.playbook),
    )
    lines = [
        "| playbook | runs | succeeded | failed | effective | effectiveness | median duration |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in ordered:
        rate = "-" if p.effectiveness is None else f"{p.effectiveness * 100:.0f}%"
        median = (
            "-" if p.median_duration_seconds is None else span(timedelta(seconds=p.median_duration_seconds))
        )
        flag = " (needs attention)" if _troubled(p) else ""
        lines.append(
            f"| {p.playbook}@{p.version}{flag} | {p.runs} | {p.succeeded} | {p.failed} | {p.effective}"
            f" | {rate} | {median} |"
        )
    return lines


def _text(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def _catalog_changes(changes: Sequence[CatalogChange]) -> list[str]:
    lines: list[str] = []
    for change in changes:
        new = change.previous_body is None
        what = "added" if new else "changed"
        lines.append(
            f"- {change.kind} {change.name} version {change.version} {what}, loaded {when(change.loaded_at)}"
        )
        lines.append(f"  {replayed(change.replay)}")
        if new:
            continue
        lines += ["", "  ```diff", *(f"  {line}" for line in capped_diff(change)), "  ```", ""]
    return lines


def replayed(replay: dict[str, Any] | None, markdown: bool = True) -> str:
    """The replay run for a catalog change before it loaded, in one line (plain text when not
    `markdown`: the console shows it as it is)."""
    if replay is None:
        command = "`suture validate --replay 7d`" if markdown else "suture validate --replay 7d"
        return f"no replay was run for it ({command} in review records one)"
    return (
        f"replayed before it loaded ({replay['command']}, {replay['at']}): {replay['alerts']} alerts of "
        f"{replay['since']} .. {replay['until']}, {replay['reclassified']} changing code, "
        f"{replay['decisions_changed']} decisions changing"
    )


def capped_diff(change: CatalogChange) -> list[str]:
    """The unified diff of a changed version against the one before, cut at DIFF_LINES."""
    diff = list(
        difflib.unified_diff(
            _text(change.previous_body).splitlines(),
            _text(change.body).splitlines(),
            "previous version",
            f"version {change.version}",
            lineterm="",
        )
    )
    shown = diff[:DIFF_LINES]
    if len(diff) > DIFF_LINES:
        shown.append(f"... {len(diff) - DIFF_LINES} more lines")
    return shown


def _notes(notes: Sequence[NoteFacts]) -> list[str]:
    return [
        f"- {when(n.at)} {n.by} on #{n.incident_id} {n.code} ({n.target or 'unknown target'}):"
        f" {one_line(n.text)}"
        for n in notes
    ]


def _numbers(now: Stats, before: Stats) -> list[str]:
    lines = [
        f"| | this period | previous period ({when(before.since)} .. {when(before.until)}) |",
        "|---|---|---|",
    ]
    for label, this, that in (
        ("incidents opened", now.incidents.opened, before.incidents.opened),
        ("resolved", now.incidents.resolved, before.incidents.resolved),
        ("still open", now.incidents.open, before.incidents.open),
        ("open past their deadline", now.incidents.overdue, before.incidents.overdue),
        ("SLA breached", _breached(now), _breached(before)),
        ("mean time to resolve", _mttr(now), _mttr(before)),
        ("auto-resolution rate", _rate(now.auto_resolution_rate), _rate(before.auto_resolution_rate)),
        ("runs started", sum(p.runs for p in now.playbooks), sum(p.runs for p in before.playbooks)),
        ("effective runs", _effectiveness(now), _effectiveness(before)),
        ("unclassified alerts", _unclassified(now), _unclassified(before)),
    ):
        lines.append(f"| {label} | {this} | {that} |")
    return lines


def _breached(stats: Stats) -> int:
    return sum(s.breached for s in stats.sla)


def _mttr(stats: Stats) -> str:
    resolved = [c for c in stats.by_code if c.mttr_seconds is not None]
    count = sum(c.resolved for c in resolved)
    if not count:
        return "-"
    total = sum((c.mttr_seconds or 0.0) * c.resolved for c in resolved)
    return span(timedelta(seconds=total / count))


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _effectiveness(stats: Stats) -> str:
    runs = sum(p.runs for p in stats.playbooks)
    effective = sum(p.effective for p in stats.playbooks)
    return f"{effective} of {runs}" + (f" ({effective / runs * 100:.0f}%)" if runs else "")


def _unclassified(stats: Stats) -> int:
    return sum(u.alerts for u in stats.unclassified)
