"""Console pages for on-call: incidents, an incident, a run, approvals, silences, the status with
its pause switch and breakers; and the actions on them, each recorded under the signed-in name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from engine.analytics.past import teach
from engine.durations import parse_since
from engine.errors import Conflict, InvalidArgument, NotFound
from engine.models import Code, IncidentStatus, Severity
from engine.policy.maintenance import configured_windows, status_entries
from engine.policy.silences import SilenceTermError, silence_terms
from engine.records import Run, RunDetail, StepResult
from engine.store.catalog_history import CatalogHistory
from engine.web.console.context import ConsoleContext, Form

MAX_ID = 2**62
#: How often the incident list reloads itself (a meta refresh: no script needed).
REFRESH_SECONDS = 30
#: Silence matcher inputs of the form, in the order the form shows them.
MATCHER_FIELDS = ("code", "target", "severity", "source", "alertname")
T = TypeVar("T")

_STATUS_OF: dict[type[Exception], int] = {NotFound: 404, Conflict: 409, InvalidArgument: 400}


def router(context: ConsoleContext) -> APIRouter:
    pages = APIRouter(include_in_schema=False)
    services = context.services
    store = services.store
    history = CatalogHistory(store.db)
    windows = configured_windows(services.config.maintenance)

    def catalog_codes() -> dict[str, Code]:
        return {entry.code.code: entry.code for entry in services.intake.view.catalog.codes}

    def attempt(request: Request, action: Callable[[], T]) -> T | Response:
        """Run a store call; its NotFound/Conflict/InvalidArgument becomes a page saying so."""
        try:
            return action()
        except (NotFound, Conflict, InvalidArgument) as exc:
            return context.problem(request, _STATUS_OF[_kind(exc)], str(exc))

    # ------------------------------------------------------------ incidents

    @pages.get("/incidents")
    def incidents_page(
        request: Request,
        status: str = "open",
        severity: str = "",
        code: str = "",
        target: str = "",
        owner: str = "",
        since: str = "",
        done: str = "",
    ) -> Response:
        viewer = context.viewer(request)
        codes = catalog_codes()
        owners = sorted({c.knowledge.owner for c in codes.values() if c.knowledge.owner})
        try:
            start = parse_since(since or None)
        except InvalidArgument as exc:
            return context.problem(request, 400, str(exc))
        owned = {name for name, c in codes.items() if c.knowledge.owner == owner} if owner else None
        items = store.list_incidents(
            status=status if status in ("open", "resolved") else None,
            severity=severity or None,
            code=code.strip() or None,
            target=target.strip() or None,
            since=start,
            codes=owned,
            limit=200,
        )
        last = store.last_runs([item.id for item in items])
        return context.page(
            viewer,
            "incidents.html",
            items=items,
            last=last,
            codes=codes,
            owners=owners,
            severities=[s.value for s in Severity],
            filters={
                "status": status,
                "severity": severity,
                "code": code,
                "target": target,
                "owner": owner,
                "since": since,
            },
            refresh=REFRESH_SECONDS,
            done=done,
        )

    @pages.get("/incidents/{incident_id}")
    def incident_page(request: Request, incident_id: int = Path(ge=1, le=MAX_ID), done: str = "") -> Response:
        viewer = context.viewer(request)
        found = attempt(request, lambda: store.get_incident(incident_id))
        if isinstance(found, Response):
            return found
        code = services.intake.view.catalog.find_code(found.code)
        detail = teach(found, code.knowledge if code else None, history.previous_incidents(found))
        return context.page(
            viewer,
            "incident.html",
            incident=detail,
            code=code,
            is_open=detail.status == IncidentStatus.open.value,
            beside=companions(detail.runs),
            done=done,
        )

    @pages.post("/incidents/{incident_id}/ack")
    async def acknowledge(request: Request, incident_id: int = Path(ge=1, le=MAX_ID)) -> Response:
        form = await context.form(request)
        return await _act(
            context,
            request,
            lambda: store.acknowledge(incident_id, form.actor.name),
            f"/incidents/{incident_id}",
            "acknowledged",
        )

    @pages.post("/incidents/{incident_id}/notes")
    async def note(request: Request, incident_id: int = Path(ge=1, le=MAX_ID)) -> Response:
        form = await context.form(request)
        text = form.get("text")
        if not text:
            return context.problem(request, 422, "text: a note needs some text")
        return await _act(
            context,
            request,
            lambda: store.add_note(incident_id, form.actor.name, text[:10_000]),
            f"/incidents/{incident_id}",
            "note added",
        )

    @pages.post("/incidents/{incident_id}/resolve")
    async def resolve(request: Request, incident_id: int = Path(ge=1, le=MAX_ID)) -> Response:
        form = await context.form(request)
        text = form.get("note")[:10_000] or None
        return await _act(
            context,
            request,
            lambda: store.resolve_by_hand(incident_id, form.actor.name, text),
            f"/incidents/{incident_id}",
            "resolved",
        )

    # ----------------------------------------------------------------- runs

    @pages.get("/runs/{run_id}")
    def run_page(request: Request, run_id: int = Path(ge=1, le=MAX_ID), done: str = "") -> Response:
        viewer = context.viewer(request)
        run = attempt(request, lambda: store.get_run(run_id))
        if isinstance(run, Response):
            return run
        decided = ("approved", "rejected", "expired")
        decisions = []
        other = None
        if run.incident_id is not None:
            incident = store.get_incident(run.incident_id)
            decisions = [e for e in incident.timeline if e.run_id == run.id and e.kind in decided]
            if (paired := companions(incident.runs).get(run.id)) is not None:
                other = store.get_run(paired)
        live, shadow = (other, run) if run.shadow else (run, other)
        pairs = side_by_side(live, shadow) if live is not None and shadow is not None else []
        return context.page(
            viewer, "run.html", run=run, decisions=decisions, live=live, shadow=shadow, pairs=pairs, done=done
        )

    @pages.get("/approvals")
    def approvals_page(request: Request, done: str = "") -> Response:
        viewer = context.viewer(request)
        return context.page(viewer, "approvals.html", waiting=store.awaiting_approval(), done=done)

    @pages.post("/runs/{run_id}/approve")
    async def approve(request: Request, run_id: int = Path(ge=1, le=MAX_ID)) -> Response:
        form = await context.form(request)

        def decide() -> object:
            decided = store.decide_run(run_id, approve=True, by=form.actor.name)
            services.wake_workers()
            return decided

        return await _act(context, request, decide, f"/runs/{run_id}", "approved")

    @pages.post("/runs/{run_id}/reject")
    async def reject(request: Request, run_id: int = Path(ge=1, le=MAX_ID)) -> Response:
        form = await context.form(request)
        reason = form.get("reason")[:2000] or None
        return await _act(
            context,
            request,
            lambda: store.decide_run(run_id, approve=False, by=form.actor.name, reason=reason),
            f"/runs/{run_id}",
            "rejected",
        )

    # ------------------------------------------------------------- silences

    @pages.get("/silences")
    def silences_page(request: Request, done: str = "", ended: bool = False) -> Response:
        viewer = context.viewer(request)
        return context.page(
            viewer,
            "silences.html",
            silences=store.silences.list(include_ended=ended),
            ended=ended,
            fields=MATCHER_FIELDS,
            done=done,
        )

    @pages.post("/silences")
    async def add_silence(request: Request) -> Response:
        form = await context.form(request)
        try:
            match = _matchers(form)
            ends_at = form.get("ends_at") or None
            duration = form.get("duration") or (None if ends_at else "2h")
            matchers, start, end = silence_terms(match, None, ends_at, duration, context.now())
        except SilenceTermError as exc:
            return context.problem(request, 422, f"{exc.field}: {exc}")
        comment = form.get("comment")[:10_000]
        if not comment:
            return context.problem(
                request, 422, "comment: say why (a silence without a reason is lost at handover)"
            )
        return await _act(
            context,
            request,
            lambda: store.silences.add(matchers, start, end, form.actor.name, comment),
            "/silences",
            "silence added",
        )

    @pages.post("/silences/{silence_id}/expire")
    async def expire_silence(request: Request, silence_id: int = Path(ge=1, le=MAX_ID)) -> Response:
        form = await context.form(request)
        return await _act(
            context,
            request,
            lambda: store.silences.expire(silence_id, form.actor.name),
            "/silences",
            "silence expired",
        )

    # --------------------------------------------------- status, pause, breakers

    @pages.get("/status")
    def status_page(request: Request, done: str = "") -> Response:
        viewer = context.viewer(request)
        now = context.now()
        return context.page(
            viewer,
            "status.html",
            state=history.status(now, status_entries(windows, now)),
            breakers=store.breakers.list(),
            done=done,
        )

    @pages.post("/pause")
    async def pause(request: Request) -> Response:
        form = await context.form(request)
        reason = form.get("reason")[:10_000] or None
        return await _act(
            context, request, lambda: store.set_paused(True, form.actor.name, reason), "/status", "paused"
        )

    @pages.post("/resume")
    async def resume(request: Request) -> Response:
        form = await context.form(request)

        def go_on() -> bool:
            changed = store.set_paused(False, form.actor.name)
            services.wake_workers()
            return changed

        return await _act(context, request, go_on, "/status", "resumed")

    @pages.post("/breakers/{playbook}/{version}/reset")
    async def reset_breaker(
        request: Request,
        playbook: str = Path(max_length=128, pattern=r"^[a-z0-9][a-z0-9_.-]*$"),
        version: int = Path(ge=1, le=MAX_ID),
    ) -> Response:
        form = await context.form(request)
        return await _act(
            context,
            request,
            lambda: store.breakers.reset(playbook, version, form.actor.name),
            "/status",
            "breaker reset",
        )

    return pages


async def _act(
    context: ConsoleContext, request: Request, action: Callable[[], object], back: str, done: str
) -> Response:
    """Do a state change off the event loop (the store blocks), then show the page it changed."""
    try:
        await run_in_threadpool(action)
    except (NotFound, Conflict, InvalidArgument) as exc:
        return context.problem(request, _STATUS_OF[_kind(exc)], str(exc))
    return context.back(back, done)


def _kind(exc: Exception) -> type[Exception]:
    return next(kind for kind in _STATUS_OF if isinstance(exc, kind))


def _matchers(form: Form) -> dict[str, str]:
    """The form's matchers: one input per key, `labels` as `name=regex` lines; empty inputs are absent."""
    match = {key: form.get(key) for key in MATCHER_FIELDS if form.get(key)}
    for line in form.get("labels").splitlines():
        name, equals, value = line.partition("=")
        if not equals or not name.strip():
            raise SilenceTermError("labels", f"labels: expected name=regex per line, got {line.strip()!r}")
        match[f"labels.{name.strip()}"] = value.strip()
    if not match:
        raise SilenceTermError("match", "match: give at least one matcher (code, target, ...)")
    return match


def companions(runs: Sequence[Run]) -> dict[int, int]:
    """Each live run and the shadow run queued beside it (the same incident, the same moment),
    both ways: what the incident and run pages show side by side."""
    shadows = {run.queued_at: run.id for run in runs if run.shadow}
    pairs: dict[int, int] = {}
    for run in runs:
        if not run.shadow and (shadow := shadows.get(run.queued_at)) is not None:
            pairs[run.id], pairs[shadow] = shadow, run.id
    return pairs


def side_by_side(live: RunDetail, shadow: RunDetail) -> list[tuple[StepResult | None, StepResult | None]]:
    """The steps of the live run and of its shadow, paired by phase and place in it (a new version
    often renames its steps); a step only one of them has stands beside nothing."""
    pairs: list[tuple[StepResult | None, StepResult | None]] = []
    for phase in ("steps", "verify", "rollback"):
        left = [step for step in live.steps if step.phase == phase]
        right = [step for step in shadow.steps if step.phase == phase]
        for index in range(max(len(left), len(right))):
            pairs.append(
                (left[index] if index < len(left) else None, right[index] if index < len(right) else None)
            )
    return pairs
