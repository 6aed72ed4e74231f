"""Replay: the stored alerts of a period, in arrival order, through a catalog's intake into a scratch
store, to see what that catalog would have done with them.

It is the daemon's own intake, unchanged: `Intake.prepare` classifies (codes, targets, deadlines),
`IntakeWriter.commit` dedups and asks the policy gates for each new incident's run, writing into a
scratch SQLite store whose clock steps through the stored arrival times. No worker runs, so
nothing is executed; the real store is only read; the scratch store goes with its folder. Alerts
that arrived within `step` of each other are committed together with the clock at the last
one's arrival, as the daemon groups webhooks that arrive together into one commit: a smaller step
follows the arrival times more closely and takes longer. The gates start from a clean slate: no
breaker open, not paused, the silences of the period as they were made; an incident already open
when the period began is opened anew by its next alert and left out of the comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from engine.clock import ManualClock
from engine.errors import StoreUnavailable
from engine.intake.classify import CatalogView, Intake
from engine.intake.scratch import ScratchStore, drop_unread_indexes
from engine.models import ReplayedAlert, ReplayedIncident, RunDecision, Submission
from engine.policy import chain
from engine.policy.guards import NO_RAILS, Rails
from engine.store import open_database
from engine.store.arrivals import Arrival, arrivals, copy_silences, first_runs
from engine.store.db import Database

#: Arrivals this close together are committed as one batch.
STEP = timedelta(minutes=1)
#: Webhook bodies in one commit at most (the daemon's writer takes as many).
MAX_EVENTS = 256
#: Incidents whose decisions are read at a time once every alert is in.
CHUNK = 5000


class ReplayFailed(StoreUnavailable):
    """The scratch store refused a batch: the replay cannot go on truthfully."""


def batches(found: Iterable[Arrival], step: timedelta) -> Iterator[list[list[Arrival]]]:
    """Arrivals grouped by webhook body (event), and bodies into batches: a batch holds the bodies
    that arrived within `step` of its first, at most MAX_EVENTS of them."""
    batch: list[list[Arrival]] = []
    for arrival in found:
        if batch and batch[-1][0].event_id == arrival.event_id:
            batch[-1].append(arrival)
            continue
        if batch and (len(batch) >= MAX_EVENTS or arrival.received_at - batch[0][0].received_at > step):
            yield batch
            batch = []
        batch.append([arrival])
    if batch:
        yield batch


class Replayer:
    def __init__(
        self, source: Database, view: CatalogView, rails: Rails = NO_RAILS, step: timedelta = STEP
    ) -> None:
        self.source = source
        self.view = view
        self.rails = rails
        self.step = step

    def run(
        self, since: datetime, until: datetime, folder: Path
    ) -> Iterator[ReplayedAlert | ReplayedIncident]:
        """Each alert of [since, until) as it was and as replayed, in arrival order; then each
        incident an alert opened either way, with both decisions (final only once every alert is in).
        The scratch store is made in `folder`, which the caller removes."""
        scratch = open_database(f"sqlite:///{folder / 'replay.db'}", upgrade=True, sqlite_synchronous="off")
        try:
            drop_unread_indexes(scratch)
            yield from self._run(scratch, since, until)
        finally:
            scratch.dispose()

    def _run(
        self, scratch: Database, since: datetime, until: datetime
    ) -> Iterator[ReplayedAlert | ReplayedIncident]:
        silenced = copy_silences(self.source, scratch, since, until)
        clock = ManualClock(since)
        store = ScratchStore(scratch, clock, lookback(self.view), silenced)
        intake = Intake(store, self.view, rails=self.rails)
        try:
            #: Each incident the replay opened: the incident the same alert opened in fact, if any.
            opened: dict[int, int | None] = {}
            seen: set[int] = set()  # actual incidents met already
            last_incident = 0
            for batch in batches(arrivals(self.source, since, until), self.step):
                arrived = batch[-1][0].received_at
                if arrived > clock.now():
                    clock.advance(arrived - clock.now())
                submissions = [
                    intake.prepare(event[0].alert.source, "", [a.alert for a in event]) for event in batch
                ]
                stored = _commit(intake, submissions, arrived)
                flat = [arrival for event in batch for arrival in event]
                codes = [item.code for submission in submissions for item in submission.alerts]
                for arrival, code, incident in zip(flat, codes, stored, strict=True):
                    yield ReplayedAlert(arrival.code, code)
                    actual = arrival.incident_id if _opened_here(arrival, since, seen) else None
                    if incident is not None and incident > last_incident:
                        last_incident = incident
                        if not _carried(arrival, since):
                            opened[incident] = actual
                    elif actual is not None:
                        yield ReplayedIncident(*self._actual([actual])[actual], None, None)
            store.commit()
            ids = sorted(opened)
            with scratch.read() as conn:
                for start in range(0, len(ids), CHUNK):
                    chunk = ids[start : start + CHUNK]
                    decided = first_runs(conn, chunk)
                    facts = self._actual(sorted({i for i in map(opened.get, chunk) if i is not None}))
                    for incident in chunk:
                        code, decision = decided[incident]
                        actual = opened.pop(incident)
                        happened = (None, None, None) if actual is None else facts[actual]
                        yield ReplayedIncident(*happened, code, decision)
        finally:
            store.close()

    def _actual(
        self, incident_ids: list[int]
    ) -> dict[int, tuple[int | None, str | None, RunDecision | None]]:
        """What these stored incidents did: id, code and the decision of their first run (none
        for one no longer stored: retention keeps incidents, but a person may delete one by hand
        while the replay runs)."""
        with self.source.read() as conn:
            decided = first_runs(conn, incident_ids)
        return {incident: (incident, *decided.get(incident, (None, None))) for incident in incident_ids}


def _commit(intake: Intake, submissions: list[Submission], arrived: datetime) -> list[int | None]:
    """Commit one batch as the daemon's writer does; the incident each of its alerts counts on."""
    receipts = []
    for outcome in intake.commit(submissions):
        if isinstance(outcome, StoreUnavailable):
            raise ReplayFailed(f"replay stopped at {arrived.isoformat()}: {outcome}")
        receipts.append(outcome)
    # As the daemon's writer does after its commit: what the writer keeps of it is let go.
    applied = intake.after_commit(receipts)
    stored = [incident for batch in applied for incident in batch.alert_incidents]
    alerts = sum(len(submission.alerts) for submission in submissions)
    if len(stored) != alerts:
        raise ReplayFailed(f"replay stored {len(stored)} of {alerts} alerts at {arrived.isoformat()}")
    return stored


def lookback(view: CatalogView) -> timedelta:
    """The longest run history a code of the catalog has its gates read."""
    spans = [chain.lookback(entry.code.policy) for entry in view.catalog.codes]
    return max((span for span in spans if span is not None), default=timedelta(0))


def _carried(arrival: Arrival, since: datetime) -> bool:
    """Whether this alert's incident was open before the period began: the replay, which starts
    from nothing, opens it anew, which is no change of the catalog's making."""
    opened = arrival.incident_opened_at
    return opened is not None and opened < since


def _opened_here(arrival: Arrival, since: datetime, seen: set[int]) -> bool:
    """Whether this alert opened its incident: the first of that incident's alerts met, which
    opened within the period."""
    incident = arrival.incident_id
    if incident is None or incident in seen:
        return False
    seen.add(incident)
    return arrival.incident_opened_at is not None and arrival.incident_opened_at >= since
