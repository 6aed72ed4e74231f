"""`suture stats` / GET /api/v1/stats: pure arithmetic over one window of history facts.

Definitions (DESIGN.md, "stats --json"): TTR = resolved_at - opened_at; TTA = acknowledged_at -
opened_at, averaged over acknowledged incidents only; `auto_resolved` = resolved with an effective run
and no person's ack, note or manual resolution; `effectiveness` = effective runs / runs that started;
`auto_resolution_rate` = auto_resolved / resolved; `sla_breached` = resolved after `due_at` or still open
past it. Everything counts incidents opened in the window. Percentiles interpolate linearly between the
closest ranks (numpy's default); a mean, median or rate of nothing is null, never 0.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from engine.analytics.effectiveness import MANUAL, effective_runs, verify_failed
from engine.models import Code, Policy, RunStatus
from engine.records import (
    CodeStats,
    PlaybookStats,
    RecurringPair,
    SlaStats,
    Stats,
    StatsIncidents,
    UnclassifiedGroup,
)
from engine.store.history import AlertGroup, IncidentFacts, RunFacts, Window

SEVERITIES = ("critical", "high", "medium", "low")
#: Final statuses that say the automation did not fix it (engine.store.store.FAILED_RUNS).
FAILED = frozenset(
    status.value
    for status in (RunStatus.failed, RunStatus.rolled_back, RunStatus.timed_out, RunStatus.interrupted)
)
TOP_RECURRING = 10
TOP_UNCLASSIFIED = 20
#: The label every alert carries and a code matches as `alertname:`, not as a label.
ALERTNAME = "alertname"


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * fraction
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _mean(values: Sequence[float]) -> float | None:
    return _round(statistics.fmean(values)) if values else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def ttr_seconds(incident: IncidentFacts) -> float | None:
    if incident.resolved_at is None:
        return None
    return (incident.resolved_at - incident.opened_at).total_seconds()


def breached(incident: IncidentFacts, now: datetime) -> bool:
    """Resolved after its due time, or still open past it."""
    if incident.due_at is None:
        return False
    if incident.resolved_at is not None:
        return incident.resolved_at > incident.due_at
    return now > incident.due_at


def open_overdue(incident: IncidentFacts, now: datetime) -> bool:
    return incident.resolved_at is None and incident.due_at is not None and now > incident.due_at


def auto_resolved(incident: IncidentFacts, effective_incidents: set[int]) -> bool:
    """Resolved with an effective run, and no person acknowledged it, wrote a note or closed it."""
    return (
        incident.resolved_at is not None
        and incident.id in effective_incidents
        and incident.acknowledged_at is None
        and not incident.noted
        and incident.resolution != MANUAL
    )


def suggested_match(label_sets: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The labels (name and value) every alert of a group shares, `alertname` aside."""
    if not label_sets:
        return {}
    shared = dict(label_sets[0])
    for labels in label_sets[1:]:
        shared = {name: value for name, value in shared.items() if labels.get(name) == value}
    shared.pop(ALERTNAME, None)
    return dict(sorted(shared.items()))


def build_stats(window: Window, codes: Mapping[str, Code], now: datetime) -> Stats:
    """The contract's stats of `window` against the catalog `codes` (titles, severities, policies)."""
    policies: dict[str, Policy] = {name: code.policy for name, code in codes.items()}
    effective = effective_runs(window.incidents, window.runs, window.verify, window.later, policies)
    effective_incidents = {run.incident_id for run in window.runs if run.id in effective}
    incidents = window.incidents
    resolved = [i for i in incidents if i.resolved_at is not None]
    auto = [i for i in resolved if auto_resolved(i, effective_incidents)]
    return Stats.trusted(
        {
            "since": window.since,
            "until": window.until,
            "incidents": StatsIncidents.trusted(
                {
                    "opened": len(incidents),
                    "resolved": len(resolved),
                    "open": len(incidents) - len(resolved),
                    "overdue": sum(open_overdue(i, now) for i in incidents),
                }
            ),
            "by_code": _by_code(incidents, codes, effective_incidents, now),
            "sla": _sla(incidents, now),
            "playbooks": _playbooks(window.runs, effective, verify_failed(window.verify)),
            "auto_resolution_rate": ratio(len(auto), len(resolved)),
            "recurring": _recurring(incidents),
            "unclassified": _unclassified(window.unclassified),
        }
    )


def _by_code(
    incidents: Sequence[IncidentFacts], codes: Mapping[str, Code], effective: set[int], now: datetime
) -> list[CodeStats]:
    grouped: dict[str, list[IncidentFacts]] = defaultdict(list)
    for incident in incidents:
        grouped[incident.code].append(incident)
    answer = []
    for name, group in grouped.items():
        newest = max(group, key=lambda i: (i.opened_at, i.id))
        code = codes.get(name)
        ttrs = [t for t in (ttr_seconds(i) for i in group) if t is not None]
        ttas = [(i.acknowledged_at - i.opened_at).total_seconds() for i in group if i.acknowledged_at]
        answer.append(
            CodeStats.trusted(
                {
                    "code": name,
                    "title": code.title if code else newest.title,
                    "severity": code.severity.value if code else newest.severity,
                    "opened": len(group),
                    "resolved": len(ttrs),
                    "open": len(group) - len(ttrs),
                    "mttr_seconds": _mean(ttrs),
                    "median_ttr_seconds": _round(statistics.median(ttrs)) if ttrs else None,
                    "p90_ttr_seconds": _round(percentile(ttrs, 0.9)),
                    "mtta_seconds": _mean(ttas),
                    "auto_resolved": sum(auto_resolved(i, effective) for i in group),
                    "sla_breached": sum(breached(i, now) for i in group),
                }
            )
        )
    answer.sort(key=lambda c: (-c.opened, c.code))
    return answer


def _sla(incidents: Sequence[IncidentFacts], now: datetime) -> list[SlaStats]:
    """Every severity, always, in the order of the severity table."""
    answer = []
    for severity in SEVERITIES:
        group = [i for i in incidents if i.severity == severity]
        answer.append(
            SlaStats.trusted(
                {
                    "severity": severity,
                    "opened": len(group),
                    "resolved_in_time": sum(
                        i.resolved_at is not None and (i.due_at is None or i.resolved_at <= i.due_at)
                        for i in group
                    ),
                    "breached": sum(breached(i, now) for i in group),
                    "open_overdue": sum(open_overdue(i, now) for i in group),
                }
            )
        )
    return answer


def _playbooks(runs: Sequence[RunFacts], effective: set[int], failed_verify: set[int]) -> list[PlaybookStats]:
    """Per playbook version, the runs that started (a dry run is not a remediation: not counted)."""
    grouped: dict[tuple[str, int], list[RunFacts]] = defaultdict(list)
    for run in runs:
        if run.started_at is not None and not run.dry_run:
            grouped[(run.playbook, run.playbook_version)].append(run)
    answer = []
    for (playbook, version), group in sorted(grouped.items()):
        durations = [
            (run.finished_at - run.started_at).total_seconds()
            for run in group
            if run.finished_at is not None and run.started_at is not None
        ]
        count_effective = sum(run.id in effective for run in group)
        answer.append(
            PlaybookStats.trusted(
                {
                    "playbook": playbook,
                    "version": version,
                    "runs": len(group),
                    "succeeded": sum(
                        run.status == RunStatus.succeeded.value and run.id not in failed_verify
                        for run in group
                    ),
                    "failed": sum(run.status in FAILED or run.id in failed_verify for run in group),
                    "effective": count_effective,
                    "effectiveness": ratio(count_effective, len(group)),
                    "median_duration_seconds": _round(statistics.median(durations)) if durations else None,
                }
            )
        )
    return answer


def _recurring(incidents: Sequence[IncidentFacts]) -> list[RecurringPair]:
    """The (code, target) pairs opened more than once, most often first."""
    counts = Counter((i.code, i.target) for i in incidents)
    pairs = sorted(((n, code, target) for (code, target), n in counts.items() if n > 1), key=_by_count)
    return [
        RecurringPair.trusted({"code": code, "target": target, "incidents": n})
        for n, code, target in pairs[:TOP_RECURRING]
    ]


def _by_count(item: tuple[int, str, str]) -> tuple[int, str, str]:
    return (-item[0], item[1], item[2])


def _unclassified(groups: Sequence[AlertGroup]) -> list[UnclassifiedGroup]:
    by_name: dict[tuple[str, str], list[AlertGroup]] = defaultdict(list)
    for group in groups:
        by_name[(group.name, group.source)].append(group)
    answer = [
        UnclassifiedGroup.trusted(
            {
                "alertname": name,
                "source": source,
                "alerts": sum(g.alerts for g in parts),
                "targets": len({g.target for g in parts if g.target}),
                "suggested_match": suggested_match([g.labels for g in parts]),
            }
        )
        for (name, source), parts in by_name.items()
    ]
    answer.sort(key=lambda u: (-u.alerts, u.alertname, u.source))
    return answer[:TOP_UNCLASSIFIED]
