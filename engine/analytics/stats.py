"""`suture stats` / GET /api/v1/stats: pure arithmetic over one window of history facts.

Definitions (DESIGN.md, "stats --json"): TTR = resolved_at - opened_at; TTA = acknowledged_at -
opened_at, averaged over acknowledged incidents only; `auto_resolved` = resolved with an effective run
and no person's ack, note or manual resolution; `effectiveness` = effective runs / runs that started;
`auto_resolution_rate` = auto_resolved / resolved; `sla_breached` = resolved after `due_at` or still open
past it. Everything counts incidents opened in the window. Percentiles interpolate linearly between the
closest ranks (numpy's default); a mean, median or rate of nothing is null, never 0.

Two ways in, one way out: the store counts a window in SQL (engine.store.history.Summary), or
`summarize` counts a row-by-row Window the same way in Python (the reference the SQL is tested
against); `stats_of` turns either Summary into the contract's Stats.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

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
from engine.store.history import IncidentFacts, Newest, Recurrence, RunFacts, Summary, Window
from engine.store.tallies import FAILED_RUNS, AlertGroup, IncidentTally, RunTally

SEVERITIES = ("critical", "high", "medium", "low")
#: Final statuses that say the automation did not fix it (engine.store.store.FAILED_RUNS).
FAILED = frozenset(FAILED_RUNS)
_MICROSECOND = timedelta(microseconds=1)
TOP_RECURRING = 10
TOP_UNCLASSIFIED = 20
#: The label every alert carries and a code matches as `alertname:`, not as a label.
ALERTNAME = "alertname"


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks; None for no values."""
    return _ranked(sorted(values), fraction)


def _ranked(ordered: Sequence[float], fraction: float) -> float | None:
    """`percentile` of values already sorted (a median is the 0.5 one: the middle, or the mean
    of the two middles)."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * fraction
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _mean_of(micros_values: Sequence[int]) -> float | None:
    """The mean of durations in microseconds, in seconds: summed exactly, divided once."""
    return _round(sum(micros_values) / len(micros_values) / 1_000_000) if micros_values else None


def _in_seconds(micros_value: float | None) -> float | None:
    return None if micros_value is None else _round(micros_value / 1_000_000)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def micros(span: timedelta) -> int:
    return span // _MICROSECOND


def breached(incident: IncidentFacts, now: datetime) -> bool:
    """Resolved after its due time, or still open past it."""
    if incident.due_at is None:
        return False
    if incident.resolved_at is not None:
        return incident.resolved_at > incident.due_at
    return now > incident.due_at


def open_overdue(incident: IncidentFacts, now: datetime) -> bool:
    return incident.resolved_at is None and incident.due_at is not None and now > incident.due_at


def resolved_in_time(incident: IncidentFacts) -> bool:
    return incident.resolved_at is not None and (
        incident.due_at is None or incident.resolved_at <= incident.due_at
    )


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
    """The contract's stats of a row-by-row `window` against the catalog `codes`, as of `now`."""
    return stats_of(summarize(window, codes, now), codes)


def summarize(
    window: Window, codes: Mapping[str, Code], now: datetime, recurring_limit: int = TOP_RECURRING
) -> Summary:
    """What engine.store.history.History.summary counts in SQL, counted here from the rows."""
    policies: dict[str, Policy] = {name: code.policy for name, code in codes.items()}
    effective = effective_runs(window.incidents, window.runs, window.verify, window.later, policies)
    effective_incidents = {run.incident_id for run in window.runs if run.id in effective}
    failed_verify = verify_failed(window.verify)
    by_id = {incident.id: incident for incident in window.incidents}
    return Summary(
        since=window.since,
        until=window.until,
        incidents=_incident_tallies(window.incidents, now),
        runs=_run_tallies(window.runs, by_id, effective, effective_incidents, failed_verify),
        newest=_newest(window.incidents, codes),
        recurring=_recurrences(window.incidents, recurring_limit),
        unclassified=list(window.unclassified),
    )


def _incident_tallies(incidents: Sequence[IncidentFacts], now: datetime) -> list[IncidentTally]:
    grouped: dict[tuple[str, str], list[IncidentFacts]] = defaultdict(list)
    for incident in incidents:
        grouped[(incident.code, incident.severity)].append(incident)
    return [
        IncidentTally(
            code=code,
            severity=severity,
            opened=len(group),
            resolved=sum(i.resolved_at is not None for i in group),
            breached=sum(breached(i, now) for i in group),
            open_overdue=sum(open_overdue(i, now) for i in group),
            resolved_in_time=sum(resolved_in_time(i) for i in group),
            ttr_us=[micros(i.resolved_at - i.opened_at) for i in group if i.resolved_at is not None],
            tta_us=[micros(i.acknowledged_at - i.opened_at) for i in group if i.acknowledged_at is not None],
        )
        for (code, severity), group in grouped.items()
    ]


def _run_tallies(
    runs: Sequence[RunFacts],
    by_id: Mapping[int, IncidentFacts],
    effective: set[int],
    effective_incidents: set[int],
    failed_verify: set[int],
) -> list[RunTally]:
    """Per playbook version and code, the runs that started (a dry run is not a remediation)."""
    grouped: dict[tuple[str, int, str], list[RunFacts]] = defaultdict(list)
    for run in runs:
        if run.started_at is not None and not run.dry_run:
            its = by_id.get(run.incident_id)
            grouped[(run.playbook, run.playbook_version, its.code if its else "")].append(run)
    answer = []
    for (playbook, version, code), group in grouped.items():
        fixed = [
            run.incident_id
            for run in group
            if run.id in effective
            and run.incident_id in by_id
            and auto_resolved(by_id[run.incident_id], effective_incidents)
        ]
        answer.append(
            RunTally(
                playbook=playbook,
                version=version,
                code=code,
                runs=len(group),
                succeeded=sum(
                    run.status == RunStatus.succeeded.value and run.id not in failed_verify for run in group
                ),
                failed=sum(run.status in FAILED or run.id in failed_verify for run in group),
                effective=sum(run.id in effective for run in group),
                durations_us=[
                    micros(run.finished_at - run.started_at)
                    for run in group
                    if run.finished_at is not None and run.started_at is not None
                ],
                auto_resolved=fixed,
            )
        )
    return answer


def _newest(incidents: Sequence[IncidentFacts], codes: Mapping[str, Code]) -> dict[str, Newest]:
    """The newest incident's title and severity of each code that is not in the catalog."""
    newest: dict[str, IncidentFacts] = {}
    for incident in incidents:
        if incident.code in codes:
            continue
        seen = newest.get(incident.code)
        if seen is None or (incident.opened_at, incident.id) > (seen.opened_at, seen.id):
            newest[incident.code] = incident
    return {code: Newest(i.title, i.severity) for code, i in newest.items()}


def _recurrences(incidents: Sequence[IncidentFacts], limit: int) -> list[Recurrence]:
    """The (code, target) pairs opened more than once, most often first."""
    counts = Counter((i.code, i.target) for i in incidents)
    pairs = sorted(((n, code, target) for (code, target), n in counts.items() if n > 1), key=_by_count)
    return [Recurrence(code, target, n) for n, code, target in pairs[:limit]]


def _by_count(item: tuple[int, str, str]) -> tuple[int, str, str]:
    return (-item[0], item[1], item[2])


def stats_of(summary: Summary, codes: Mapping[str, Code]) -> Stats:
    """The contract's Stats of a counted window against the catalog `codes` (titles, severities)."""
    auto: dict[str, set[int]] = defaultdict(set)
    for tally in summary.runs:
        auto[tally.code].update(tally.auto_resolved)
    incidents = summary.incidents
    opened = sum(t.opened for t in incidents)
    resolved = sum(t.resolved for t in incidents)
    return Stats.trusted(
        {
            "since": summary.since,
            "until": summary.until,
            "incidents": StatsIncidents.trusted(
                {
                    "opened": opened,
                    "resolved": resolved,
                    "open": opened - resolved,
                    "overdue": sum(t.open_overdue for t in incidents),
                }
            ),
            "by_code": _by_code(incidents, codes, summary.newest, auto),
            "sla": _sla(incidents),
            "playbooks": _playbooks(summary.runs),
            "auto_resolution_rate": ratio(sum(len(ids) for ids in auto.values()), resolved),
            "recurring": [
                RecurringPair.trusted({"code": r.code, "target": r.target, "incidents": r.incidents})
                for r in summary.recurring
            ],
            "unclassified": _unclassified(summary.unclassified),
        }
    )


def _by_code(
    tallies: Sequence[IncidentTally],
    codes: Mapping[str, Code],
    newest: Mapping[str, Newest],
    auto: Mapping[str, set[int]],
) -> list[CodeStats]:
    grouped: dict[str, list[IncidentTally]] = defaultdict(list)
    for tally in tallies:
        grouped[tally.code].append(tally)
    answer = []
    for name, group in grouped.items():
        code = codes.get(name)
        ttrs = sorted(us for tally in group for us in tally.ttr_us)
        ttas = [us for tally in group for us in tally.tta_us]
        opened = sum(t.opened for t in group)
        answer.append(
            CodeStats.trusted(
                {
                    "code": name,
                    "title": code.title if code else newest[name].title,
                    "severity": code.severity.value if code else newest[name].severity,
                    "opened": opened,
                    "resolved": len(ttrs),
                    "open": opened - len(ttrs),
                    "mttr_seconds": _mean_of(ttrs),
                    "median_ttr_seconds": _in_seconds(_ranked(ttrs, 0.5)),
                    "p90_ttr_seconds": _in_seconds(_ranked(ttrs, 0.9)),
                    "mtta_seconds": _mean_of(ttas),
                    "auto_resolved": len(auto.get(name, ())),
                    "sla_breached": sum(t.breached for t in group),
                }
            )
        )
    answer.sort(key=lambda c: (-c.opened, c.code))
    return answer


def _sla(tallies: Sequence[IncidentTally]) -> list[SlaStats]:
    """Every severity, always, in the order of the severity table."""
    answer = []
    for severity in SEVERITIES:
        group = [t for t in tallies if t.severity == severity]
        answer.append(
            SlaStats.trusted(
                {
                    "severity": severity,
                    "opened": sum(t.opened for t in group),
                    "resolved_in_time": sum(t.resolved_in_time for t in group),
                    "breached": sum(t.breached for t in group),
                    "open_overdue": sum(t.open_overdue for t in group),
                }
            )
        )
    return answer


def _playbooks(tallies: Sequence[RunTally]) -> list[PlaybookStats]:
    """Per playbook version, the runs that started (a dry run is not a remediation: not counted)."""
    grouped: dict[tuple[str, int], list[RunTally]] = defaultdict(list)
    for tally in tallies:
        grouped[(tally.playbook, tally.version)].append(tally)
    answer = []
    for (playbook, version), group in sorted(grouped.items()):
        runs = sum(t.runs for t in group)
        effective = sum(t.effective for t in group)
        durations = sorted(us for tally in group for us in tally.durations_us)
        answer.append(
            PlaybookStats.trusted(
                {
                    "playbook": playbook,
                    "version": version,
                    "runs": runs,
                    "succeeded": sum(t.succeeded for t in group),
                    "failed": sum(t.failed for t in group),
                    "effective": effective,
                    "effectiveness": ratio(effective, runs),
                    "median_duration_seconds": _in_seconds(_ranked(durations, 0.5)),
                }
            )
        )
    return answer


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
