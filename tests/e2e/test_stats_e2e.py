"""Stats and the handover report through the real daemon: alerts in over HTTP, the run the daemon executes,
then `GET /api/v1/stats` answers what `suture stats --json` prints, and `suture report handover` holds
the contract's sections with the open incident and its manual steps."""

from __future__ import annotations

from typing import Any

from tests.conftest import DaemonProcess, run_cli, wait_for
from tests.payloads import am_alert, am_body

#: A manual code with the knowledge a newcomer needs, beside the test catalog.
HANDOVER_CODES = """\
- code: MEM-001
  title: Memory pressure
  severity: high
  match: {alertname: MemoryPressure}
  mode: manual
  knowledge:
    summary: The kernel is reclaiming hard; OOM kills follow.
    manual_steps:
      - "Find the biggest process: ps aux --sort=-rss | head"
      - Restart it through systemd, never kill -9
    owner: storage-team
"""


def test_stats_api_matches_the_cli_and_the_handover_lists_the_open_incident(
    daemon_factory: Any, db_url: str
) -> None:
    daemon: DaemonProcess = daemon_factory(db_url, files={"codes/zz-handover.yaml": HANDOVER_CODES})
    disk = am_alert(fingerprint="e2e0000000000001", instance="db-1:9100")
    [run_id] = daemon.post("alertmanager", am_body(disk)).json()["runs_queued"]
    wait_for(lambda: daemon.get(f"/api/v1/runs/{run_id}")["status"] == "succeeded", timeout=20)
    assert daemon.post("alertmanager", am_body({**disk, "status": "resolved"})).json()["incidents_resolved"]
    memory = am_alert("MemoryPressure", fingerprint="e2e0000000000002", instance="app-7:9100")
    [memory_id] = daemon.post("alertmanager", am_body(memory)).json()["incidents_opened"]
    strange = [
        am_alert("StrangeThing", fingerprint=f"e2e000000000001{n}", instance=f"web-{n}:9100", team="edge")
        for n in (1, 2)
    ]
    assert len(daemon.post("alertmanager", am_body(*strange)).json()["incidents_opened"]) == 2

    api = daemon.get("/api/v1/stats?since=7d")
    cli = daemon.cli("stats", "--since", "7d")

    def numbers(stats: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in stats.items() if key not in ("since", "until")}

    assert numbers(api) == numbers(cli)
    assert cli["incidents"] == {"opened": 4, "resolved": 1, "open": 3, "overdue": 0}
    assert cli["auto_resolution_rate"] == 1.0
    [noop] = cli["playbooks"]
    assert (noop["playbook"], noop["runs"], noop["succeeded"], noop["effective"], noop["effectiveness"]) == (
        "noop",
        1,
        1,
        1,
        1.0,
    )
    assert cli["unclassified"] == [
        {
            "alertname": "StrangeThing",
            "source": "alertmanager",
            "alerts": 2,
            "targets": 2,
            "suggested_match": {"job": "node", "mountpoint": "/", "team": "edge"},
        }
    ]

    report = run_cli("report", "handover", config=daemon.config_path).stdout
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Open incidents",
        "## Waiting for approval",
        "## Recurring",
        "## Automation",
        "## Catalog changes",
        "## Notes from the shift",
        "## Numbers",
    ]
    opened = report[report.index("## Open incidents") : report.index("## Waiting for approval")]
    assert f"### #{memory_id} MEM-001: Memory pressure" in opened
    for line in (
        "- Target: app-7",
        "- Severity: high",
        "- Owner: storage-team",
        "- Automation tried: nothing: no run for this incident",
        "  1. Find the biggest process: ps aux --sort=-rss | head",
        "  2. Restart it through systemd, never kill -9",
    ):
        assert line in opened.splitlines(), line
    assert "| noop@1 | 1 | 1 | 0 | 1 | 100% |" in report
    # The catalog the daemon stored on start is a change of this period.
    assert "- code MEM-001 version 1 added" in report
