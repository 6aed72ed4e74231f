"""The `suture` command: one module per command group, assembled here.

Command modules import the engine lazily inside each command, so `suture incidents list`
loads only what reading needs (no daemon, no alembic, no SSH or HTTP clients).
"""

from __future__ import annotations

from importlib import import_module

import click

#: Each command by name, and where it is defined: `suture incidents list` imports the incidents
#: module alone; `suture --help` imports them all to show each one's help.
COMMANDS = {
    "access": "access:access",
    "approve": "runs:approve",
    "breakers": "breakers:breakers",
    "codes": "codes:codes",
    "db": "db:db",
    "doctor": "doctor:doctor",
    "incidents": "incidents:incidents",
    "init": "init:init",
    "notify": "notify:notify",
    "pause": "automation:pause",
    "playbooks": "playbooks:playbooks",
    "reject": "runs:reject",
    "replay": "replay:replay",
    "report": "report:report",
    "resume": "automation:resume",
    "rollout": "rollout:rollout",
    "run": "run:run_playbook",
    "runs": "runs:runs",
    "serve": "serve:serve",
    "silence": "silence:silence",
    "stats": "stats:stats",
    "status": "status:status",
    "validate": "validate:validate",
}


class Commands(click.Group):
    """The command group whose commands are imported when they are asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, name = where.split(":")
        command: click.Command = getattr(import_module(f"engine.cli.{module}"), name)
        return command


@click.group(cls=Commands)
@click.version_option(package_name="suture")
def main() -> None:
    """Suture: monitoring alerts become coded incidents, fixed by versioned playbooks."""
    from engine.logging import configure_command_line

    # The engine's own log lines (warnings and worse) go to stderr, never into a command's --json
    # output on stdout; `serve` configures the daemon's logging from config.yaml.
    configure_command_line()
