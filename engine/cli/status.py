"""`suture status`: what on-call checks first, read from the database without migrating."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from engine.cli.common import config_option, dump, handle_errors, json_option, open_store
from engine.config import load_config
from engine.records import Breaker, CatalogReload, MaintenanceEntry, PollState, Silence


@click.command()
@config_option
@json_option
@handle_errors
def status(config_path: str, as_json: bool) -> None:
    """Paused?, queue depth, running, awaiting approval, open and overdue incidents, notifications,
    open breakers, active silences, maintenance windows, the last catalog reload and the last poll
    per pull source."""
    from engine.policy.maintenance import configured_windows, status_entries
    from engine.store.catalog_history import CatalogHistory

    now = datetime.now(UTC)
    config = load_config(config_path)
    windows = status_entries(configured_windows(config.maintenance), now)
    current = CatalogHistory(open_store(config).db).status(now, windows)
    if as_json:
        dump(current)
        return
    lines = [
        ("paused", "YES: no automatic run starts (`suture resume`)" if current.paused else "no"),
        ("queue depth", f"{current.queued} queued"),
        ("running", str(current.running)),
        ("awaiting approval", str(current.awaiting_approval)),
        ("open incidents", f"{current.open_incidents} ({current.overdue_incidents} overdue)"),
        (
            "notifications",
            f"{current.notifications_pending} pending, {current.notifications_failed} failed",
        ),
        ("open breakers", _breakers(current.open_breakers)),
        ("active silences", _silences(current.active_silences)),
    ]
    lines.append(("maintenance", _maintenance(current.maintenance)))
    lines.append(("catalog reload", _reload(current.catalog_reload)))
    if not current.polls:
        lines.append(("polls", "none recorded (no pull source, or no poll yet)"))
    for poll in current.polls:
        lines.append((f"poll {poll.source}", _poll(poll)))
    for label, value in lines:
        click.echo(f"{label + ':':19} {value}")


def _breakers(found: list[Breaker]) -> str:
    """`disk-cleanup@3 (3 consecutive failed or ineffective runs)`; `suture breakers reset` closes one."""
    return "; ".join(f"{b.playbook}@{b.version} ({b.reason})" for b in found) or "none"


def _maintenance(found: list[MaintenanceEntry]) -> str:
    """Active windows with their end; the others with their next start."""
    parts = []
    for window in found:
        if window.active:
            parts.append(f"{window.name} ACTIVE until {_when(window.ends_at)}")
        elif window.next_start is not None:
            parts.append(f"{window.name} next at {_when(window.next_start)}")
        else:
            parts.append(f"{window.name} over")
    return "; ".join(parts) or "none configured"


def _silences(found: list[Silence]) -> str:
    """`4 until 14:00 UTC by alice (code=DISK-.*)`, one after the other."""
    from engine.cli.silence import matchers_text

    shown = [f"{s.id} until {_when(s.ends_at)} by {s.created_by} ({matchers_text(s)})" for s in found]
    return "; ".join(shown) or "none"


def _when(value: datetime | None) -> str:
    return "never" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _reload(reload: CatalogReload | None) -> str:
    if reload is None:
        return "none recorded yet"
    told = {
        "ok": "ok",
        "refused": f"REFUSED ({reload.problems} problem{'s' if reload.problems != 1 else ''}; "
        "the last good catalog stays in force)",
        "failed": "FAILED (the last good catalog stays in force)",
    }[reload.outcome]
    error = f": {reload.error}" if reload.error and reload.outcome != "ok" else ""
    return f"{told} at {_when(reload.at)}{error}"


def _poll(poll: PollState) -> str:
    """Failing when the last failure is newer than the last success; successes are recorded to
    the minute, so 'ok' means the last minute's polls went through."""
    failing = poll.last_failure is not None and (
        poll.last_success is None or poll.last_failure > poll.last_success
    )
    head = "FAILING" if failing else "ok"
    text = f"{head}; last success {_when(poll.last_success)}, last failure {_when(poll.last_failure)}"
    return text + (f": {poll.error}" if poll.error and poll.last_failure else "")
