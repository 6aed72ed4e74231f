"""Table definitions (SQLAlchemy Core). Migrations in engine/migrations follow these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from engine.models import ALERT_FIELDS
from engine.store.sqltime import sqlite_utc_text


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend.

    SQLite keeps them as text in SQLAlchemy's own DATETIME format (sorted and compared as
    text), formatted here directly by `sqlite_utc_text`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if dialect.name != "sqlite":
            return value.astimezone(UTC)
        return sqlite_utc_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Json(TypeDecorator[Any]):
    """A JSON document: JSONB on PostgreSQL, whose dialect is imported only when a PostgreSQL
    database is opened (a read command on SQLite never loads it)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Retention empties the raw body of old events (alerts keep referring to the row): the bodies
#: not emptied yet, by arrival, are what it reads; emptied ones leave this partial index.
EVENTS_UNPRUNED_INDEX = "ix_events_unpruned"
EVENTS_UNPRUNED_WHERE = "body <> ''"

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(64), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("body", Text, nullable=False),
    Column("alert_count", Integer, nullable=False),
    Index(
        EVENTS_UNPRUNED_INDEX,
        "received_at",
        sqlite_where=text(EVENTS_UNPRUNED_WHERE),
    ),
)

ENDED_INDEX = "ix_alerts_resolved_without_incident"
ENDED_WHERE = "status = 'resolved' AND incident_id IS NULL"

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", Integer, ForeignKey("events.id"), nullable=False),
    Column("source", String(64), nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("labels", Json, nullable=False),
    Column("annotations", Json, nullable=False),
    Column("starts_at", UtcDateTime),
    Column("ends_at", UtcDateTime),
    Column("received_at", UtcDateTime, nullable=False),
    Column("code", String(64), nullable=False),
    Column("incident_id", Integer, ForeignKey("incidents.id")),
    # Each index costs every intake commit (migration 0002 dropped three nothing read):
    # incident_id serves an incident's alerts, received_at the time ranges `replay --since` reads.
    Index(None, "received_at"),
    Index(None, "incident_id"),
    # Resolved alerts that found no incident (resolved before they were seen firing) are how a
    # late firing of that instance learns it is over. Partial: other alerts write nothing to it.
    Index(
        ENDED_INDEX,
        "fingerprint",
        "starts_at",
        sqlite_where=text(ENDED_WHERE),
    ),
)

#: The alert's fields this table stores, in ALERT_FIELDS order (`generator_url` is not one).
ALERT_COLUMNS: tuple[str, ...] = tuple(name for name in ALERT_FIELDS if name in alerts.c)

codes = Table(
    "codes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("body", Json, nullable=False),
    Column("loaded_at", UtcDateTime, nullable=False),
    Index(None, "code", "version", unique=True),
)

playbook_versions = Table(
    "playbook_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("loaded_at", UtcDateTime, nullable=False),
    Index(None, "name", "version", unique=True),
)

OPEN_FINGERPRINT_INDEX = "uq_incidents_open_fingerprint"

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("target", Text, nullable=False),
    Column("source", String(64), nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("alertname", Text, nullable=False),
    Column("starts_at", UtcDateTime),
    Column("labels", Json, nullable=False),
    Column("annotations", Json, nullable=False),
    Column("occurrences", Integer, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("due_at", UtcDateTime),
    Column("resolved_at", UtcDateTime),
    Column("resolution", String(32)),
    Column("remediated_at", UtcDateTime),
    Column("respond_by", UtcDateTime),
    Column("acknowledged_at", UtcDateTime),
    Column("acknowledged_by", String(128)),
    Column("escalated_at", UtcDateTime),
    #: Which deadline the last escalation was for: `respond` or `resolve`.
    Column("escalated_for", String(16)),
    #: The silence (`silence <id>`) or maintenance window (`maintenance <name>`) that held its automation.
    Column("silenced_by", Text),
    Column("flapping", Boolean, nullable=False, server_default=false()),
    Index(None, "status", "opened_at"),
    Index(None, "code", "opened_at"),
    Index(None, "code", "target", "opened_at"),
    Index(None, "opened_at"),
    Index(None, "fingerprint", "starts_at"),
    # At most one open incident per fingerprint, also with several daemons on one database.
    Index(
        OPEN_FINGERPRINT_INDEX,
        "fingerprint",
        unique=True,
        sqlite_where=text("status = 'open'"),
    ),
)

UNDECIDED_INDEX = "ix_runs_undecided"
UNDECIDED_WHERE = "status = 'succeeded' AND effective IS NULL AND dry_run = false"
QUEUED_INDEX = "ix_runs_queued"
QUEUED_WHERE = "status = 'queued'"

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("incident_id", Integer, ForeignKey("incidents.id")),
    Column("playbook", String(128), nullable=False),
    Column("playbook_version", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("queued_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("heartbeat_at", UtcDateTime),
    Column("worker", String(128)),
    Column("error", Text),
    Column("effective", Boolean),
    Column("context", Json, nullable=False),
    #: Why it was skipped, expired or cancelled: the gate's message.
    Column("reason", Text),
    #: A run queued under `policy.delay` is not claimed before this.
    Column("not_before", UtcDateTime),
    #: Rendered beside the live run for the code's `shadow` version, never executed (a dry run).
    Column("shadow", Boolean, nullable=False, server_default=false()),
    #: The claim that holds a running run: its worker writes only while `attempt` is still its own
    #: and renews `lease_until`; past it, any replica may take the run back (engine.execution.recovery).
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("lease_until", UtcDateTime),
    Index(None, "status", "queued_at"),
    # The queue in claim order: a claim reads the oldest due run, not the whole queue.
    Index(QUEUED_INDEX, "id", sqlite_where=text(QUEUED_WHERE)),
    # Succeeded runs still waiting for their verdict (engine.policy.verdicts): few at any time.
    Index(
        UNDECIDED_INDEX,
        "id",
        sqlite_where=text(UNDECIDED_WHERE),
    ),
    Index(None, "playbook", "queued_at"),
    Index(None, "incident_id"),
    Index(None, "queued_at"),
)

#: Step results whose output retention has not emptied yet, by start (the same idea as events).
STEP_OUTPUT_INDEX = "ix_step_results_with_output"
STEP_OUTPUT_WHERE = "stdout <> '' OR stderr <> ''"

step_results = Table(
    "step_results",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("phase", String(16), nullable=False),
    Column("action", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("params", Json, nullable=False),
    Column("exit_code", Integer),
    Column("http_status", Integer),
    Column("stdout", Text, nullable=False),
    Column("stderr", Text, nullable=False),
    Column("error", Text),
    Column("started_at", UtcDateTime, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Index(None, "run_id", "seq"),
    Index(
        STEP_OUTPUT_INDEX,
        "started_at",
        sqlite_where=text(STEP_OUTPUT_WHERE),
    ),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("incident_id", Integer),
    Column("run_id", Integer),
    Column("message", Text, nullable=False),
    Column("detail", Json),
    Index(None, "incident_id", "at"),
    Index(None, "run_id"),
    Index(None, "at"),
)

OUTBOX_UNSENT_INDEX = "ix_outbox_undispatched"
OUTBOX_UNSENT_WHERE = "dispatched = false"

#: Events worth telling someone, written in the transaction of the change that caused them;
#: the notifier turns each into one delivery per channel that hears of it.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("event", String(32), nullable=False),
    Column("incident_id", Integer, ForeignKey("incidents.id")),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("reason", Text, nullable=False),
    Column("dispatched", Boolean, nullable=False),
    Index(
        OUTBOX_UNSENT_INDEX,
        "id",
        sqlite_where=text(OUTBOX_UNSENT_WHERE),
    ),
)

#: One message to one channel about one outbox event: stored before it is sent.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("outbox_id", Integer, ForeignKey("outbox.id"), nullable=False),
    Column("incident_id", Integer, ForeignKey("incidents.id")),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("event", String(32), nullable=False),
    Column("channel", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("claimed_at", UtcDateTime),
    Column("sent_at", UtcDateTime),
    Column("answer", Text),
    Column("error", Text),
    # One delivery per event and channel, whoever expands the event and however often.
    Index(None, "outbox_id", "channel", unique=True),
    Index(None, "channel", "status", "id"),
    Index(None, "status", "id"),
)

state = Table(
    "state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Json, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

#: People's "no automation here for a while" (`suture silence add`); expiring sets `ends_at` to now.
silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("matchers", Json, nullable=False),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expired_by", String(128)),
    Index(None, "ends_at"),
)

#: One row per playbook version that has failed: consecutive failures and whether it is open.
breakers = Table(
    "breakers",
    metadata,
    Column("playbook", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("opened_at", UtcDateTime),
    Column("reason", Text),
    Column("reset_at", UtcDateTime),
    Column("reset_by", String(128)),
)

#: Each past hour's settled incidents counted once for stats (engine.store.buckets), and each day's
#: made of its hours (`hours` 1 or 24), per set of effectiveness windows: `counts` is
#: engine.store.tallies.Part (engine.store.buckets.encode), `pending` the bucket's
#: incidents left out (counted at every read), `seen` the rows stamped near the count that it holds.
stats_buckets = Table(
    "stats_buckets",
    metadata,
    Column("starts", UtcDateTime, primary_key=True),
    Column("hours", Integer, primary_key=True),
    Column("windows", String(32), primary_key=True),
    Column("counted_at", UtcDateTime, nullable=False),
    Column("pending", Json, nullable=False),
    Column("seen", Json, nullable=False),
    Column("counts", LargeBinary, nullable=False),
)

#: When each scheduled job last ran, on whichever replica: a replica's tick runs the job only if
#: it moves `last_at` on (engine.store.replicas.take_turn), so each period runs it once in all.
job_turns = Table(
    "job_turns",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("last_at", UtcDateTime, nullable=False),
    Column("claimed_by", String(128), nullable=False),
)


def declare_for_postgresql() -> None:
    """Give each partial index its WHERE on PostgreSQL too: the same as on SQLite.

    The tables declare it for SQLite only, since naming a dialect's option loads that dialect:
    a read command on SQLite then never imports PostgreSQL's. Opening a PostgreSQL database
    calls this (idempotent) before anything compares or creates the schema.
    """
    for table in metadata.tables.values():
        for index in table.indexes:
            where = index.dialect_options["sqlite"]["where"]
            if where is not None:
                index.dialect_options["postgresql"]["where"] = where
