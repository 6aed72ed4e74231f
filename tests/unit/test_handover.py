"""The handover report: the contract's headings in order, each open incident with what a newcomer needs
to act (code, title, target, severity, age, deadline, owner, what automation tried, manual steps),
failing automation first, catalog diffs, notes, and the numbers against the period before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.analytics.handover import HEADINGS, HandoverFacts, render_handover
from engine.analytics.stats import build_stats
from engine.models import Code
from engine.store.history import AwaitingRun, CatalogChange, IncidentFacts, NoteFacts, RunFacts, Window

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)
OPENED = NOW - timedelta(hours=2, minutes=5)

DISK = Code.model_validate(
    {
        "code": "DISK-001",
        "title": "Filesystem almost full",
        "severity": "high",
        "match": {},
        "knowledge": {
            "summary": "A filesystem is above 90%.",
            "manual_steps": ["Find the largest files: du -xh / | sort -h | tail", "Vacuum the journal"],
            "owner": "infra",
        },
    }
)
CODES = {"DISK-001": DISK}

OPEN = IncidentFacts(
    id=42,
    code="DISK-001",
    title="Filesystem almost full",
    severity="high",
    target="db-1",
    status="open",
    opened_at=OPENED,
    resolved_at=None,
    resolution=None,
    due_at=OPENED + timedelta(hours=24),
    respond_by=OPENED + timedelta(hours=2),
    acknowledged_at=None,
    acknowledged_by=None,
    noted=True,
)
FAILED_RUN = RunFacts(
    id=7,
    incident_id=42,
    playbook="disk-cleanup",
    playbook_version=3,
    status="failed",
    trigger="auto",
    dry_run=False,
    queued_at=OPENED,
    started_at=OPENED + timedelta(seconds=1),
    finished_at=OPENED + timedelta(seconds=9),
    error="step 'vacuum journal' exit 1",
)
GOOD_RUN = RunFacts(
    id=8,
    incident_id=43,
    playbook="cache-flush",
    playbook_version=1,
    status="succeeded",
    trigger="auto",
    dry_run=False,
    queued_at=OPENED,
    started_at=OPENED + timedelta(seconds=1),
    finished_at=OPENED + timedelta(seconds=3),
    error=None,
)
RESOLVED = IncidentFacts(
    **{
        **{name: getattr(OPEN, name) for name in OPEN.__slots__},
        "id": 43,
        "code": "CACHE-001",
        "target": "app-1",
        "status": "resolved",
        "resolved_at": OPENED + timedelta(minutes=5),
        "resolution": "alert_resolved",
        "noted": False,
    }
)


def report() -> str:
    window = Window(SINCE, NOW, [OPEN, RESOLVED], [FAILED_RUN, GOOD_RUN], [], [], [])
    before = Window(SINCE - timedelta(days=7), SINCE, [], [], [], [], [])
    waiting = RunFacts(
        id=9,
        incident_id=44,
        playbook="noop",
        playbook_version=1,
        status="awaiting_approval",
        trigger="approval",
        dry_run=False,
        queued_at=NOW - timedelta(minutes=30),
        started_at=None,
        finished_at=None,
        error=None,
    )
    facts = HandoverFacts(
        now=NOW,
        since=SINCE,
        open_incidents=[OPEN],
        open_runs=[FAILED_RUN],
        awaiting=[AwaitingRun(waiting, "APPR-001", "Needs approval", "db-9")],
        stats=build_stats(window, CODES, NOW),
        previous=build_stats(before, CODES, SINCE),
        changes=[
            CatalogChange(
                "playbook",
                "disk-cleanup",
                3,
                "ab" * 32,
                NOW - timedelta(days=1),
                "name: disk-cleanup\nversion: 3\ntimeout: 600s\n",
                "name: disk-cleanup\nversion: 2\ntimeout: 300s\n",
            ),
            CatalogChange(
                "code", "CACHE-001", 1, "cd" * 32, NOW - timedelta(days=2), {"code": "CACHE-001"}, None
            ),
        ],
        notes=[
            NoteFacts(
                NOW - timedelta(hours=1), "alice", "WAL files\nkept after backup", 42, "DISK-001", "db-1"
            )
        ],
    )
    return render_handover(facts, CODES)


def section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    rest = text[start + len(heading) :]
    following = [rest.index(h + "\n") for h in HEADINGS if h + "\n" in rest]
    return rest[: min(following)] if following else rest


def test_the_sections_come_with_exactly_the_contracts_headings_in_order() -> None:
    text = report()
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Open incidents",
        "## Waiting for approval",
        "## Recurring",
        "## Automation",
        "## Catalog changes",
        "## Notes from the shift",
        "## Numbers",
    ]
    assert text.startswith("# Handover 2026-12-01 12:00 UTC .. 2026-12-08 12:00 UTC\n")


def test_an_open_incident_says_everything_needed_to_act_on_it() -> None:
    block = section(report(), "## Open incidents")
    assert "### #42 DISK-001: Filesystem almost full" in block
    for line in (
        "- Code: DISK-001",
        "- Title: Filesystem almost full",
        "- Target: db-1",
        "- Severity: high",
        "- Age: 2h 5m (opened 2026-12-08 09:55 UTC)",
        "- Deadline: resolve by 2026-12-09 09:55 UTC (in 21h 55m);"
        " acknowledge by 2026-12-08 11:55 UTC (late by 5m)",
        "- Owner: infra",
        "- Acknowledged: no",
        "- Automation tried: disk-cleanup@3 failed at 2026-12-08 09:55 UTC: step 'vacuum journal' exit 1",
        "- Summary: A filesystem is above 90%.",
        "- Manual steps:",
        "  1. Find the largest files: du -xh / | sort -h | tail",
        "  2. Vacuum the journal",
    ):
        assert line in block.splitlines(), line


def test_approvals_recurrences_automation_changes_notes_and_numbers() -> None:
    text = report()
    assert section(text, "## Waiting for approval").strip() == (
        "- run 9: noop@1 for #44 APPR-001 (Needs approval) on db-9, waiting since 2026-12-08 11:30 UTC (30m):"
        " `suture approve 9` or `suture reject 9`"
    )
    assert section(text, "## Recurring").strip() == "Nothing."
    automation = section(text, "## Automation").strip().splitlines()
    # The failing version first, flagged; the effective one after it.
    assert automation[2] == "| disk-cleanup@3 (needs attention) | 1 | 0 | 1 | 0 | 0% | 8s |"
    assert automation[3] == "| cache-flush@1 | 1 | 1 | 0 | 1 | 100% | 2s |"
    changes = section(text, "## Catalog changes")
    assert "- playbook disk-cleanup version 3 changed, loaded 2026-12-07 12:00 UTC" in changes
    assert "  -timeout: 300s" in changes.splitlines() and "  +timeout: 600s" in changes.splitlines()
    assert "- code CACHE-001 version 1 added, loaded 2026-12-06 12:00 UTC" in changes
    assert section(text, "## Notes from the shift").strip() == (
        "- 2026-12-08 11:00 UTC alice on #42 DISK-001 (db-1): WAL files kept after backup"
    )
    numbers = section(text, "## Numbers").strip().splitlines()
    assert numbers[0] == "| | this period | previous period (2026-11-24 12:00 UTC .. 2026-12-01 12:00 UTC) |"
    assert "| incidents opened | 2 | 0 |" in numbers
    assert "| auto-resolution rate | 100% | - |" in numbers
    assert "| effective runs | 1 of 2 (50%) | 0 of 0 |" in numbers


def test_an_empty_shift_still_has_every_section() -> None:
    empty = Window(SINCE, NOW, [], [], [], [], [])
    facts = HandoverFacts(
        NOW, SINCE, [], [], [], build_stats(empty, CODES, NOW), build_stats(empty, CODES, NOW), [], []
    )
    text = render_handover(facts, CODES)
    for heading in HEADINGS[:-1]:
        assert section(text, heading).strip() == "Nothing."
