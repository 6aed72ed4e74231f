"""One finding of `suture doctor`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    #: What was checked: database, catalog, ssh, sudo, allowed_host, channel.
    check: str
    #: Which one: the database URL (no password), a file:line, a target, a host, a channel name.
    subject: str
    ok: bool
    detail: str
    #: What to run or change; None when ok.
    fix: str | None = None
    #: Not checked (a pattern names no single host); still ok, shown as `skip`.
    skipped: bool = False

    def fields(self) -> dict[str, object]:
        """The JSON shape of DESIGN.md: check, subject, ok, detail, fix."""
        return {
            "check": self.check,
            "subject": self.subject,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
        }


def ok(check: str, subject: str, detail: str) -> Check:
    return Check(check, subject, True, detail)


def problem(check: str, subject: str, detail: str, fix: str) -> Check:
    return Check(check, subject, False, detail, fix)


def skipped(check: str, subject: str, detail: str) -> Check:
    return Check(check, subject, True, detail, skipped=True)
