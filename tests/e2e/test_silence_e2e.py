"""Silences as people meet them: made over the API with an operate token (recorded under the token's
name), seen in GET /api/v1/silences, `suture silence list` and `suture status`, ended with the CLI
or DELETE; a read-only token cannot make one. One daemon start; the CLI's own checks run in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
from click.testing import CliRunner

from engine.cli.main import main
from tests.conftest import run_cli, write_config

OPERATE = "chatops-token-0123456789abcdef"
READ = "viewer-token-0123456789abcdef"
ACCESS = {
    "tokens": [
        {"name": "chatops", "token_env": "T_SILENCE_OPS", "role": "operate"},
        {"name": "viewer", "token_env": "T_SILENCE_READ", "role": "read"},
    ]
}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_silence_made_over_the_api_is_seen_everywhere_and_ended_by_hand(
    daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'silence.db'}",
        env={"T_SILENCE_OPS": OPERATE, "T_SILENCE_READ": READ},
        access=ACCESS,
    )
    url = f"{daemon.url}/api/v1/silences"
    body = {"match": {"code": "DISK-.*", "labels.mountpoint": "/var"}, "for": "2h", "comment": "new disk"}

    refused = httpx.post(url, json=body, headers=_auth(READ), timeout=10)
    assert refused.status_code == 403, refused.text
    assert daemon.get("/api/v1/silences", _auth(READ)) == {"items": [], "next": None}

    bad = httpx.post(url, json={**body, "match": {"code": "DISK-("}}, headers=_auth(OPERATE), timeout=10)
    assert bad.status_code == 422 and bad.json()["field"] == "match"
    assert "match.code: not a regular expression" in bad.json()["error"]
    claimed = httpx.post(url, json={**body, "created_by": "mallory"}, headers=_auth(OPERATE), timeout=10)
    assert claimed.status_code == 422 and claimed.json()["field"] == "created_by"

    created = httpx.post(url, json=body, headers=_auth(OPERATE), timeout=10)
    assert created.status_code == 201, created.text
    made = created.json()
    assert made["created_by"] == "chatops" and made["active"] is True and made["expired_by"] is None
    assert made["matchers"] == {"code": "DISK-.*", "labels.mountpoint": "/var"}
    assert made["ends_at"].endswith("Z") and made["comment"] == "new disk"

    assert daemon.get("/api/v1/silences", _auth(READ)) == {"items": [made], "next": None}
    assert daemon.cli("silence", "list") == [made]
    assert daemon.get("/api/v1/status", _auth(READ))["active_silences"] == [made]
    assert daemon.cli("status")["active_silences"] == [made]

    # The CLI ends it under the name given; it stays listed among the ended ones only.
    ended = run_cli("silence", "expire", str(made["id"]), "--by", "carol", config=daemon.config_path)
    assert ended.stdout.strip() == f"silence {made['id']} expired by carol"
    assert daemon.get("/api/v1/silences", _auth(READ))["items"] == []
    [gone] = daemon.get("/api/v1/silences?all=true", _auth(READ))["items"]
    assert (gone["id"], gone["expired_by"], gone["active"]) == (made["id"], "carol", False)
    assert daemon.get("/api/v1/status", _auth(READ))["active_silences"] == []

    # One that starts later, ended over the API under the token's name; twice is a conflict.
    later = {
        "match": {"target": "web-1"},
        "starts_at": "2999-01-01T00:00:00",
        "for": "30m",
        "comment": "deploy",
    }
    other = httpx.post(url, json=later, headers=_auth(OPERATE), timeout=10).json()
    assert (other["starts_at"], other["ends_at"], other["active"]) == (
        "2999-01-01T00:00:00Z",
        "2999-01-01T00:30:00Z",
        False,
    )
    delete = f"{url}/{other['id']}"
    assert httpx.delete(delete, headers=_auth(READ), timeout=10).status_code == 403
    answer = httpx.delete(delete, headers=_auth(OPERATE), timeout=10)
    assert answer.status_code == 200 and answer.json()["expired_by"] == "chatops"
    again = httpx.delete(delete, headers=_auth(OPERATE), timeout=10)
    assert again.status_code == 409 and "already expired by chatops" in again.json()["error"]
    assert httpx.delete(f"{url}/999", headers=_auth(OPERATE), timeout=10).status_code == 404


def test_the_cli_adds_lists_and_refuses_mistakes_in_one_line(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, f"sqlite:///{tmp_path / 'cli.db'}"))
    runner = CliRunner()

    def suture(*args: str) -> Any:
        return runner.invoke(main, [*args, "--config", config])

    added = suture(
        "silence", "add", "--match", "target=db-1", "--match", "labels.team=db",
        "--until", "2999-01-01T00:00:00Z", "--by", "alice", "--comment", "rebuild", "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    made = orjson.loads(added.stdout)
    assert made["matchers"] == {"labels.team": "db", "target": "db-1"}
    assert made["ends_at"] == "2999-01-01T00:00:00Z" and made["created_by"] == "alice"

    listed = suture("silence", "list")
    assert listed.exit_code == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "STARTS_AT", "ENDS_AT", "BY", "MATCH", "COMMENT"]
    assert row.split()[:2] == [str(made["id"]), "active"] and "labels.team=db target=db-1" in row

    status = suture("status").stdout
    shown = next(line for line in status.splitlines() if line.startswith("active silences:"))
    assert shown.split(None, 2)[2] == (
        f"{made['id']} until 2999-01-01 00:00:00 UTC by alice (labels.team=db target=db-1)"
    )

    expired = suture("silence", "expire", str(made["id"]))
    assert expired.exit_code == 0 and "expired by" in expired.stdout
    assert suture("silence", "list").stdout.strip() == "(none)"
    assert "expired" in suture("silence", "list", "--all").stdout.splitlines()[1].split()[1]

    mistakes = [
        ("--match target --for 2h", "error: --match 'target': expected KEY=REGEX"),
        ("--match host=db-1 --for 2h", "error: --match: matcher key 'host' is not one of"),
        ("--match target=db-( --for 2h", "error: --match.target: not a regular expression"),
        ("--match target=db-1", "error: give the end as either --for DURATION or --until TIME"),
        ("--match target=db-1 --for 2h --until 2999-01-01", "error: give the end as either"),
        ("--match target=db-1 --for soon", "error: --for: expected a duration like 30s"),
        ("--match target=db-1 --until friday", "error: --until: expected an ISO 8601 time"),
        ("--match target=db-1 --until 2001-01-01", "error: ends_at 2001-01-01T00:00:00Z is in the past"),
    ]
    for args, message in mistakes:
        result = suture("silence", "add", *args.split(), "--comment", "why")
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, (args, result.stderr)
    assert "error: comment is empty" in suture("silence", "add", "--match", "target=x", "--for", "1h",
                                               "--comment", " ").stderr  # fmt: skip
    missing = suture("silence", "expire", "999")
    assert missing.exit_code == 1 and missing.stderr == "error: silence 999 not found\n"
