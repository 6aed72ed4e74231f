"""`suture doctor`: before the first real alert, is everything the daemon will reach in order?"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from engine.cli.common import config_option, dump, handle_errors, json_option
from engine.config import load_config

if TYPE_CHECKING:
    from engine.execution.doctor.check import Check


@click.command()
@config_option
@click.option(
    "--target", "target", metavar="HOST", help="Check SSH to this host only, as the inventory resolves it."
)
@json_option
@handle_errors
def doctor(config_path: str, target: str | None, as_json: bool) -> None:
    """Check the database, catalog, SSH to each inventory target (host key, login, `sudo -n`),
    http.allowed_hosts and notification channels; exit 1 if anything needs fixing."""
    from engine.execution.doctor.run import run_checks
    from engine.logging import configure_logging

    # The SSH action and paramiko log what doctor's own lines already say: keep stdout one document.
    configure_logging("critical", "console")
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False
    config = load_config(config_path)
    checks = run_checks(config, target.strip() if target else None)
    healthy = all(check.ok for check in checks)
    if as_json:
        dump({"ok": healthy, "checks": [check.fields() for check in checks]})
    else:
        for line in lines(checks):
            click.echo(line)
    if not healthy:
        sys.exit(1)


def lines(checks: Sequence[Check]) -> list[str]:
    """`ok   database: sqlite:///... at revision 0006`, `FAIL ssh web-1: ... — run: ...`."""
    shown = []
    for check in checks:
        mark = "skip" if check.skipped else "ok" if check.ok else "FAIL"
        head = (
            f"{check.check}: {check.subject}"
            if check.check == "database"
            else f"{check.check} {check.subject}:"
        )
        text = f"{mark:4} {head} {check.detail}"
        shown.append(text + (f" — {check.fix}" if check.fix else ""))
    problems = sum(not check.ok for check in checks)
    shown.append(f"{problems} problem{'s' if problems != 1 else ''}" if problems else "all checks passed")
    return shown
