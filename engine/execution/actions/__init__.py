"""Step actions by name: each owns its kind (render, default timeout, shown params, execute).

The runner takes a registry, so a test can hand it a StubAction instead of a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from engine.execution.actions.base import Action, ActionContext, Rendering, RunResources, cap_output

__all__ = [
    "Action",
    "ActionContext",
    "Registry",
    "Rendering",
    "RunResources",
    "cap_output",
    "default_registry",
]

#: Actions by the step key they serve (`ssh`, `http`, `wait`).
Registry = Mapping[str, Action]


@cache
def default_registry() -> Registry:
    """The built-in actions; imported on first use so paramiko and httpx stay out of CLI start-up."""
    from engine.execution.actions import http, ssh, wait

    registry: dict[str, Action] = {
        ssh.SshAction.name: ssh.SshAction(),
        http.HttpAction.name: http.HttpAction(),
        wait.WaitAction.name: wait.WaitAction(),
    }
    return registry
