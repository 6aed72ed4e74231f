"""`suture report handover --format html`: the same report as engine.analytics.handover, as one
self-contained HTML page (no CDN, no external asset) a team can mail or attach to a ticket.

Built from the same HandoverFacts and the same wording helpers as the Markdown, so both say the same
thing. Rendered with Jinja2 with autoescape on: titles, labels, annotations, notes and diffs come from
alerts and people, and must never become markup.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import jinja2
from markupsafe import Markup

from engine.analytics.handover import (
    HEADINGS,
    HandoverFacts,
    _breached,
    _deadline,
    _effectiveness,
    _mttr,
    _rate,
    _tried,
    _troubled,
    _unclassified,
    capped_diff,
    one_line,
    replayed,
    span,
    when,
)
from engine.models import Code
from engine.records import PlaybookStats, Stats
from engine.store.history import CatalogChange, RunFacts

#: The section titles, in the contract's order: the Markdown headings without their `## `.
TITLES = tuple(heading.removeprefix("## ") for heading in HEADINGS)

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
.attention { color: #a00; font-weight: bold; }
.nothing { color: #777; }
</style>
</head>
<body>
{% include "body" %}
</body>
</html>
"""

#: The report without the page around it: what the console shows inside its own layout.
_BODY = """<h1>{{ title }}</h1>
{% for section in sections %}
<h2 id="{{ section.id }}">{{ section.title }}</h2>
{% if not section.empty %}{% include section.id %}{% else %}<p class="nothing">Nothing.</p>{% endif %}
{% endfor %}
"""

_SECTIONS = {
    "open-incidents": """{% for i in open_incidents %}
<h3>#{{ i.id }} {{ i.code }}: {{ i.title }}</h3>
<ul>
{% for label, value in i.fields %}<li><strong>{{ label }}:</strong> {{ value }}</li>
{% endfor %}
</ul>
{% if i.diagnosis %}<p><strong>Diagnosis:</strong></p>
<ul>{% for step in i.diagnosis %}<li>{{ step }}</li>{% endfor %}</ul>
{% endif %}
{% if i.manual_steps %}<p><strong>Manual steps:</strong></p>
<ol>{% for step in i.manual_steps %}<li>{{ step }}</li>{% endfor %}</ol>
{% else %}<p><strong>Manual steps:</strong> {{ i.no_steps }}</p>
{% endif %}
{% endfor %}""",
    "waiting-for-approval": """<ul>
{% for a in awaiting %}<li>run {{ a.id }}: {{ a.playbook }} for #{{ a.incident_id }} {{ a.code }}
({{ a.title }}) on {{ a.target }}, waiting since {{ a.since }} ({{ a.age }}):
<code>suture approve {{ a.id }}</code> or <code>suture reject {{ a.id }}</code></li>
{% endfor %}</ul>""",
    "recurring": """<ul>
{% for r in recurring %}<li>{{ r.code }} on {{ r.target }}: {{ r.incidents }} incidents</li>
{% endfor %}</ul>""",
    "automation": """<table>
<tr><th>playbook</th><th>runs</th><th>succeeded</th><th>failed</th><th>effective</th>
<th>effectiveness</th><th>median duration</th></tr>
{% for p in automation %}<tr><td>{{ p.name }}{% if p.troubled %}
<span class="attention">(needs attention)</span>{% endif %}</td><td>{{ p.runs }}</td>
<td>{{ p.succeeded }}</td><td>{{ p.failed }}</td><td>{{ p.effective }}</td><td>{{ p.rate }}</td>
<td>{{ p.median }}</td></tr>
{% endfor %}</table>""",
    "catalog-changes": """<ul>
{% for c in changes %}<li>{{ c.kind }} {{ c.name }} version {{ c.version }} {{ c.what }},
loaded {{ c.loaded }}; {{ c.replay }}
{% if c.diff %}<pre>{{ c.diff }}</pre>{% endif %}</li>
{% endfor %}</ul>""",
    "notes-from-the-shift": """<ul>
{% for n in notes %}<li>{{ n.at }} {{ n.by }} on #{{ n.incident_id }} {{ n.code }} ({{ n.target }}):
{{ n.text }}</li>
{% endfor %}</ul>""",
    "numbers": """<table>
<tr><th></th><th>this period</th><th>previous period ({{ previous_span }})</th></tr>
{% for label, this, that in numbers %}<tr><td>{{ label }}</td><td>{{ this }}</td><td>{{ that }}</td></tr>
{% endfor %}</table>""",
}

_ENV = jinja2.Environment(
    loader=jinja2.DictLoader({"page": _TEMPLATE, "body": _BODY, **_SECTIONS}),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def render_handover_html(facts: HandoverFacts, codes: Mapping[str, Code]) -> str:
    return _ENV.get_template("page").render(_context(facts, codes))


def render_handover_body(facts: HandoverFacts, codes: Mapping[str, Code]) -> Markup:
    """The same report as markup to place inside another page (the console's `/handover`): its
    `<h1>` and sections, no document, head or style of its own. Already escaped."""
    return Markup(_ENV.get_template("body").render(_context(facts, codes)))


def _context(facts: HandoverFacts, codes: Mapping[str, Code]) -> dict[str, Any]:
    context: dict[str, Any] = {
        "title": f"Handover {when(facts.since)} .. {when(facts.now)}",
        "open_incidents": _open_incidents(facts, codes),
        "awaiting": [
            {
                "id": a.run.id,
                "playbook": f"{a.run.playbook}@{a.run.playbook_version}",
                "incident_id": a.run.incident_id,
                "code": a.code,
                "title": one_line(a.title),
                "target": a.target or "(unknown)",
                "since": when(a.run.queued_at),
                "age": span(facts.now - a.run.queued_at),
            }
            for a in facts.awaiting
        ],
        "recurring": [
            {"code": r.code, "target": r.target or "(unknown)", "incidents": r.incidents}
            for r in facts.stats.recurring
        ],
        "automation": _automation(facts.stats.playbooks),
        "changes": [_change(change) for change in facts.changes],
        "notes": [
            {
                "at": when(n.at),
                "by": n.by,
                "incident_id": n.incident_id,
                "code": n.code,
                "target": n.target or "unknown target",
                "text": one_line(n.text),
            }
            for n in facts.notes
        ],
        "numbers": _numbers(facts.stats, facts.previous),
        "previous_span": f"{when(facts.previous.since)} .. {when(facts.previous.until)}",
    }
    filled = ("open_incidents", "awaiting", "recurring", "automation", "changes", "notes", "numbers")
    context["sections"] = [
        {"id": key, "title": title, "empty": not context[name]}
        for (key, title, name) in zip(_SECTIONS, TITLES, filled, strict=True)
    ]
    return context


def _open_incidents(facts: HandoverFacts, codes: Mapping[str, Code]) -> list[dict[str, Any]]:
    runs_of: dict[int, list[RunFacts]] = defaultdict(list)
    for run in facts.open_runs:
        runs_of[run.incident_id].append(run)
    shown = []
    for incident in facts.open_incidents:
        code = codes.get(incident.code)
        knowledge = code.knowledge if code else None
        acked = (
            f"yes, by {incident.acknowledged_by} at {when(incident.acknowledged_at)}"
            if incident.acknowledged_at
            else "no"
        )
        fields = [
            ("Code", incident.code),
            ("Title", one_line(incident.title)),
            ("Target", incident.target or "(unknown)"),
            ("Severity", incident.severity),
            ("Age", f"{span(facts.now - incident.opened_at)} (opened {when(incident.opened_at)})"),
            ("Deadline", _deadline(incident, facts.now)),
            ("Owner", (knowledge.owner if knowledge else "") or "(no owner in the catalog)"),
            ("Acknowledged", acked),
            ("Automation tried", _tried(runs_of.get(incident.id, []))),
        ]
        if knowledge and knowledge.summary:
            fields.append(("Summary", one_line(knowledge.summary)))
        if code is None:
            no_steps = "none: this code is not in the catalog (write one for it)"
        else:
            no_steps = f"none written yet (add knowledge.manual_steps to {incident.code})"
        shown.append(
            {
                "id": incident.id,
                "code": incident.code,
                "title": one_line(incident.title),
                "fields": fields,
                "diagnosis": [one_line(s) for s in knowledge.diagnosis] if knowledge else [],
                "manual_steps": [one_line(s) for s in knowledge.manual_steps] if knowledge else [],
                "no_steps": no_steps,
            }
        )
    return shown


def _automation(playbooks: Sequence[PlaybookStats]) -> list[dict[str, Any]]:
    """Failing or ineffective versions first, as in the Markdown."""
    ordered = sorted(
        playbooks,
        key=lambda p: (not _troubled(p), p.effectiveness if p.effectiveness is not None else 1.0, p.playbook),
    )
    return [
        {
            "name": f"{p.playbook}@{p.version}",
            "troubled": _troubled(p),
            "runs": p.runs,
            "succeeded": p.succeeded,
            "failed": p.failed,
            "effective": p.effective,
            "rate": _rate(p.effectiveness),
            "median": "-"
            if p.median_duration_seconds is None
            else span(timedelta(seconds=p.median_duration_seconds)),
        }
        for p in ordered
    ]


def _change(change: CatalogChange) -> dict[str, Any]:
    new = change.previous_body is None
    diff = "" if new else "\n".join(capped_diff(change))
    return {
        "kind": change.kind,
        "name": change.name,
        "version": change.version,
        "what": "added" if new else "changed",
        "loaded": when(change.loaded_at),
        "replay": replayed(change.replay, markdown=False),
        "diff": diff,
    }


def _numbers(now: Stats, before: Stats) -> list[tuple[str, Any, Any]]:
    return [
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
    ]


__all__ = ["TITLES", "render_handover_body", "render_handover_html"]
