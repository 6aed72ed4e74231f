"""Every check of `suture doctor`, in the order a user fixes them: database, catalog, targets,
allowed hosts, channels."""

from __future__ import annotations

from engine.config import Config
from engine.execution.doctor.check import Check, skipped
from engine.execution.doctor.local import check_catalog, check_database, sudo_playbooks, uses_ssh
from engine.execution.doctor.network import check_allowed_hosts, check_channel
from engine.execution.doctor.targets import check_targets


def run_checks(config: Config, target: str | None = None) -> list[Check]:
    """`target`: check SSH to that host only (resolved through the inventory), not every entry."""
    database, db = check_database(config)
    try:
        catalog_checks, catalog = check_catalog(config, db)
    finally:
        if db is not None:
            db.dispose()
    checks = [database, *catalog_checks]
    ssh = check_targets(config, target, sudo_playbooks(catalog))
    if not ssh and uses_ssh(catalog):
        ssh = [
            skipped(
                "ssh",
                "inventory",
                "no inventory entries: targets come from the alerts; "
                "check one with `suture doctor --target HOST`",
            )
        ]
    checks += ssh
    checks += check_allowed_hosts(config)
    checks += [check_channel(config, entry) for entry in config.notifications]
    return checks
