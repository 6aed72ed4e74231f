"""Step actions, looked up by name. Each module registers one class here."""

from __future__ import annotations

from functools import cache

from engine.execution.actions.base import Action, ActionContext, RunResources, cap_output

__all__ = ["Action", "ActionContext", "RunResources", "cap_output", "get_action"]


def get_action(name: str) -> Action:
    """The action registered under `name` (ssh, http, wait)."""
    return _registry()[name]


@cache
def _registry() -> dict[str, Action]:
    """Imported on first use: paramiko and requests stay out of CLI start-up."""
    from engine.execution.actions import http, ssh, wait

    registry: dict[str, Action] = {
        ssh.SshAction.name: ssh.SshAction(),
        http.HttpAction.name: http.HttpAction(),
        wait.WaitAction.name: wait.WaitAction(),
    }
    return registry
