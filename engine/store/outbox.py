"""The notification outbox: events written with the change that caused them, deliveries per channel.

An outbox row is inserted in the transaction of its cause (an incident opened, a run failed,
an escalation), so a notification exists exactly when its cause was committed. The notifier
expands each row into one delivery per channel that hears of it (unique per row and channel:
expanding twice, from two replicas or after a crash, adds nothing) and sends them oldest first
per channel. A delivery is claimed (`sending`) before its attempt and settled after it; a claim
left by a process that died mid-attempt is taken again after `stale_after`, so a notification
is never lost, and doubled only if the process died between the channel's answer and the commit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, literal_column, or_, select, update

from engine.records import Notification
from engine.store.bulk import insert_rows
from engine.store.db import Database
from engine.store.tables import audit_log, notifications, outbox

NOTIFICATION_FIELDS = Notification.field_names()

#: Spelled as the partial index `ix_outbox_undispatched` is, so that every plan can use it (a bound
#: parameter, or `IS 0`, makes SQLite scan the whole outbox).
_UNDISPATCHED = outbox.c.dispatched == literal_column("false")

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"


def add_event(
    conn: Connection,
    notify: Collection[str],
    event: str,
    now: datetime,
    *,
    incident_id: int | None,
    run_id: int | None = None,
    reason: str,
) -> None:
    """Write the outbox row of `event` in the caller's transaction, if some channel hears of it."""
    if event in notify:
        conn.execute(
            insert(outbox).values(
                at=now, event=event, incident_id=incident_id, run_id=run_id, reason=reason, dispatched=False
            )
        )


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    at: datetime
    event: str
    incident_id: int | None
    run_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery claimed for one attempt."""

    id: int
    outbox_id: int
    channel: str
    event: str
    incident_id: int | None
    run_id: int | None
    attempts: int
    reason: str
    created_at: datetime


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def undispatched(self, limit: int = 500) -> list[OutboxEvent]:
        """Outbox rows not yet expanded into deliveries, oldest first."""
        query = (
            select(
                outbox.c.id,
                outbox.c.at,
                outbox.c.event,
                outbox.c.incident_id,
                outbox.c.run_id,
                outbox.c.reason,
            )
            .where(_UNDISPATCHED)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [OutboxEvent(*row) for row in conn.execute(query)]

    def dispatch(self, expanded: Sequence[tuple[OutboxEvent, Sequence[str]]], now: datetime) -> int:
        """Mark the events expanded and add a pending delivery per channel, in one transaction of
        two statements (the notifier shares the write lock with intake, so it takes it briefly).

        Returns how many deliveries were added; an event another process expanded first adds none."""
        if not expanded:
            return 0
        wanted = [event.id for event, _ in expanded]
        with self.db.write() as conn:
            taken: set[int] = set()
            for i in range(0, len(wanted), 500):
                taken.update(
                    conn.execute(
                        update(outbox)
                        .where(and_(outbox.c.id.in_(wanted[i : i + 500]), _UNDISPATCHED))
                        .values(dispatched=True)
                        .returning(outbox.c.id)
                    ).scalars()
                )
            rows = [
                {
                    "outbox_id": event.id,
                    "incident_id": event.incident_id,
                    "run_id": event.run_id,
                    "event": event.event,
                    "channel": channel,
                    "status": PENDING,
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for event, channels in expanded
                if event.id in taken
                for channel in channels
            ]
            insert_rows(conn, notifications, rows, ids=False)
        return len(rows)

    def channels_with_work(self, channels: Sequence[str], now: datetime, stale_before: datetime) -> list[str]:
        """Those of `channels` whose oldest unsettled delivery may be attempted now."""
        with self.db.read() as conn:
            return [channel for channel in channels if _due(_head(conn, channel), now, stale_before)]

    def claim(self, channel: str, now: datetime, stale_before: datetime) -> Delivery | None:
        """Take the channel's oldest unsettled delivery for one attempt, if it is due."""
        with self.db.write() as conn:
            head = _head(conn, channel)
            if head is None or not _due(head, now, stale_before):
                return None
            taken = conn.execute(
                update(notifications)
                .where(
                    and_(
                        notifications.c.id == head.id,
                        notifications.c.status == head.status,
                        or_(
                            notifications.c.claimed_at.is_(None),
                            notifications.c.claimed_at == head.claimed_at,
                        ),
                    )
                )
                .values(status=SENDING, claimed_at=now, attempts=head.attempts + 1)
            ).rowcount
            if taken != 1:
                return None
            reason = conn.execute(select(outbox.c.reason).where(outbox.c.id == head.outbox_id)).scalar()
            return Delivery(
                id=head.id,
                outbox_id=head.outbox_id,
                channel=channel,
                event=head.event,
                incident_id=head.incident_id,
                run_id=head.run_id,
                attempts=head.attempts + 1,
                reason=str(reason or ""),
                created_at=head.created_at,
            )

    def settle(
        self,
        delivery: Delivery,
        now: datetime,
        *,
        answer: str | None = None,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """Record the attempt: sent (`answer`), to be retried at `retry_at`, or given up; and put
        its outcome on the incident's timeline."""
        if error is None:
            values: dict[str, Any] = {"status": SENT, "sent_at": now, "answer": answer, "error": None}
            kind, message = "notified", f"{delivery.event} sent to {delivery.channel}: {answer}"
        else:
            status = PENDING if retry_at is not None else FAILED
            values = {"status": status, "answer": answer, "error": error, "next_attempt_at": retry_at or now}
            then = f"; next attempt {retry_at:%H:%M:%S}" if retry_at is not None else "; given up"
            kind = "notification_failed"
            message = (
                f"{delivery.event} to {delivery.channel} failed (attempt {delivery.attempts}): {error}{then}"
            )
        with self.db.write() as conn:
            conn.execute(
                update(notifications)
                .where(and_(notifications.c.id == delivery.id, notifications.c.status == SENDING))
                .values(**values)
            )
            if delivery.incident_id is not None:
                conn.execute(
                    insert(audit_log).values(
                        at=now,
                        actor="suture",
                        kind=kind,
                        incident_id=delivery.incident_id,
                        run_id=delivery.run_id,
                        message=message,
                        detail={
                            "channel": delivery.channel,
                            "event": delivery.event,
                            "notification": delivery.id,
                        },
                    )
                )

    def list(
        self, *, status: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[Notification]:
        """Deliveries, newest first; `before_id` is the API's cursor."""
        query = select(*[notifications.c[name] for name in NOTIFICATION_FIELDS])
        if status:
            query = query.where(notifications.c.status == status)
        if before_id:
            query = query.where(notifications.c.id < before_id)
        query = query.order_by(notifications.c.id.desc()).limit(limit)
        with self.db.read() as conn:
            return [
                Notification.trusted(dict(zip(NOTIFICATION_FIELDS, row, strict=True)))
                for row in conn.execute(query)
            ]

    def counts(self) -> dict[str, int]:
        """Deliveries by status, for metrics and `status`."""
        with self.db.read() as conn:
            rows = conn.execute(select(notifications.c.status, func.count()).group_by(notifications.c.status))
            return {status: int(count) for status, count in rows}


_HEAD_COLUMNS = (
    notifications.c.id,
    notifications.c.outbox_id,
    notifications.c.event,
    notifications.c.incident_id,
    notifications.c.run_id,
    notifications.c.attempts,
    notifications.c.status,
    notifications.c.next_attempt_at,
    notifications.c.claimed_at,
    notifications.c.created_at,
)


def _head(conn: Connection, channel: str) -> Any:
    """The channel's oldest delivery not yet sent or given up (deliveries go out in order): one
    index seek per status on (channel, status, id), however long the backlog."""
    heads = [
        conn.execute(
            select(*_HEAD_COLUMNS)
            .where(and_(notifications.c.channel == channel, notifications.c.status == status))
            .order_by(notifications.c.id)
            .limit(1)
        ).first()
        for status in (PENDING, SENDING)
    ]
    found = [head for head in heads if head is not None]
    return min(found, key=lambda head: head.id) if found else None


def _due(head: Any, now: datetime, stale_before: datetime) -> bool:
    if head is None:
        return False
    if head.status == PENDING:
        return bool(head.next_attempt_at <= now)
    return head.claimed_at is not None and head.claimed_at <= stale_before
