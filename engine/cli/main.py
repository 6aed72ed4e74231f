"""The `suture` command: one module per command group, assembled here.

Command modules import the engine lazily inside each command, so `suture incidents list`
loads only what reading needs (no daemon, no alembic, no SSH or HTTP clients).
"""

from __future__ import annotations

import click

from engine.cli import (
    access,
    automation,
    breakers,
    codes,
    db,
    doctor,
    incidents,
    init,
    notify,
    playbooks,
    replay,
    report,
    rollout,
    run,
    runs,
    serve,
    silence,
    stats,
    status,
    validate,
)


@click.group()
@click.version_option(package_name="suture")
def main() -> None:
    """Suture: monitoring alerts become coded incidents, fixed by versioned playbooks."""
    from engine.logging import configure_logging

    # The engine's own log lines (warnings and worse) go to stderr, never into a command's --json
    # output on stdout; `serve` configures the daemon's logging from config.yaml.
    configure_logging("warning", "console")


for command in (
    serve.serve,
    init.init,
    validate.validate,
    db.db,
    incidents.incidents,
    runs.runs,
    runs.approve,
    runs.reject,
    automation.pause,
    automation.resume,
    run.run_playbook,
    access.access,
    notify.notify,
    codes.codes,
    playbooks.playbooks,
    status.status,
    doctor.doctor,
    stats.stats,
    report.report,
    replay.replay,
    rollout.rollout,
    silence.silence,
    breakers.breakers,
):
    main.add_command(command)
