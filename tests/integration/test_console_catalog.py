"""The console's catalog and handover pages over the real app and a real SQLite store: the codes in
force with their numbers, a playbook version's stored YAML, the diff between two stored versions,
the handover report inside the console's layout, and 404 for what does not exist."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.access import hash_password
from engine.catalog.loader import Catalog, load_catalog
from engine.catalog.versions import stored_versions
from engine.config import Config, load_config
from engine.intake.classify import CatalogView, Intake
from engine.models import Alert, AlertStatus
from engine.records import Receipt
from engine.store import Store, open_database
from engine.web.api import Services, create_app
from tests.conftest import write_config

NOOP_2 = """name: noop
version: 2
description: Does nothing, a little later.
steps:
  - name: pause
    wait: 5s
"""


def catalog_of(config: Config) -> Catalog:
    return load_catalog(config.codes_dir, config.playbooks_dir)


def alert(name: str, instance: str, fingerprint: str) -> Alert:
    return Alert.model_validate(
        {
            "source": "alertmanager",
            "name": name,
            "fingerprint": fingerprint,
            "status": AlertStatus.firing,
            "labels": {"alertname": name, "instance": f"{instance}:9100", "mountpoint": "/"},
        }
    )


def build(folder: Path, **sections: Any) -> tuple[TestClient, Store]:
    """The daemon's app over a store that holds noop@1 and noop@2 (the catalog in force has noop@2
    only: @1 is kept as stored), one incident of DISK-001 resolved by hand and one still open."""
    config_path = write_config(folder, f"sqlite:///{folder / 'suture.db'}", **sections)
    config = load_config(str(config_path))
    db = open_database(config.database_url, upgrade=True)
    store = Store(db, config.heard_events())
    store.sync_catalog(*stored_versions(catalog_of(config)))  # noop@1 stored
    (folder / "playbooks" / "noop.yaml").unlink()
    (folder / "playbooks" / "noop-2.yaml").write_text(NOOP_2)
    catalog = catalog_of(config)
    store.sync_catalog(*stored_versions(catalog))  # noop@2 stored
    intake = Intake(store, CatalogView.of(catalog, config.escalation))
    [receipt] = intake.commit(
        [
            intake.prepare(
                "alertmanager",
                "{}",
                [alert("NodeFilesystemAlmostOutOfSpace", host, f"fp-{host}") for host in ("db-1", "db-2")],
            )
        ]
    )
    assert isinstance(receipt, Receipt) and len(receipt.opened) == 2, receipt
    store.resolve_by_hand(receipt.opened[0], "alice", "freed /var/log")
    services = Services(config, store, intake, ready=lambda: True)
    return TestClient(create_app(services)), store


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app, store = build(tmp_path)
    with app:
        yield app
    store.db.dispose()


def element(page: str, tag: str, element_id: str) -> str:
    """The markup inside `<tag id=element_id ...>` (tables and pre blocks do not nest here)."""
    found = re.search(rf'<{tag}\b[^>]*\bid="{element_id}"[^>]*>(.*?)</{tag}>', page, re.S)
    assert found, f"no <{tag} id={element_id}> in the page"
    return found.group(1)


def text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def row(table: str, key: str) -> list[str]:
    """The cells of the first row of `table` that names `key`, as text."""
    for tr in re.findall(r"<tr\b[^>]*>(.*?)</tr>", table, re.S):
        cells = [" ".join(text(c).split()) for c in re.findall(r"<t[hd]\b[^>]*>(.*?)</t[hd]>", tr, re.S)]
        if key in cells:
            return cells
    raise AssertionError(f"no row for {key} in the table")


def test_catalog_lists_every_code_with_its_playbook_and_numbers(client: TestClient) -> None:
    """Each code shows title, severity, owner and the playbook version it runs; DISK-001 counts the
    two incidents of the last 30 days: one resolved by hand, one open, none by automation."""
    page = client.get("/catalog")
    assert page.status_code == 200
    codes = element(page.text, "table", "codes")
    for code in ("DISK-001", "SLOW-001", "APPR-001", "MAN-001"):
        assert f'href="/catalog/codes/{code}"' in codes
    disk = row(codes, "DISK-001")
    assert disk[:6] == ["DISK-001", "Filesystem almost full", "high", "auto", "infra", "noop@2"]
    opened, resolved, still_open, _median, auto, breaches = disk[6:]
    assert (opened, resolved, still_open, auto, breaches) == ("2", "1", "1", "0", "0")
    assert row(codes, "MAN-001")[6:9] == ["0", "0", "0"]


def test_catalog_lists_every_stored_playbook_version(client: TestClient) -> None:
    """noop@1 is no longer in the catalog but stays listed as stored; noop@2 links its diff."""
    playbooks = element(client.get("/catalog").text, "table", "playbooks")
    first, second = row(playbooks, "noop@1"), row(playbooks, "noop@2")
    assert first[4] == "no" and second[4] == "yes"
    assert "UTC" in first[3] and "UTC" in second[3]  # first-loaded times
    assert "DISK-001" in second[5] and first[5] == "—"
    assert 'href="/catalog/playbooks/noop/diff?from=1&amp;to=2"' in playbooks
    assert "slow-ssh@1" in playbooks


def test_catalog_shows_the_change_record_with_the_replay_run_for_it(tmp_path: Path) -> None:
    """The versions loaded this week, each with the replay a review recorded for it before it
    loaded, or the hint to run one."""
    app, store = build(tmp_path / "site")
    config = load_config(str(tmp_path / "site" / "config.yaml"))
    (tmp_path / "site" / "playbooks" / "noop-3.yaml").write_text(NOOP_2.replace("version: 2", "version: 3"))
    playbooks, code_versions = stored_versions(catalog_of(config))
    [noop_3] = [p for p in playbooks if (p.name, p.version) == ("noop", 3)]
    summary = {
        "command": "suture validate --replay 7d",
        "at": "2026-12-02T09:00:00+00:00",
        "since": "2026-11-25T09:00:00+00:00",
        "until": "2026-12-02T09:00:00+00:00",
        "alerts": 412,
        "reclassified": 3,
        "decisions_changed": 2,
    }
    assert store.record_replay({noop_3.sha256}, summary) == 1
    store.sync_catalog(playbooks, code_versions)
    with app:
        changes = element(app.get("/catalog").text, "table", "changes")
    store.db.dispose()
    third, second = row(changes, "3"), row(changes, "2")
    assert third[:3] == ["playbook noop", "3", "changed"] and second[:3] == ["playbook noop", "2", "changed"]
    assert third[4].startswith("replayed before it loaded (suture validate --replay 7d")
    assert "412 alerts" in third[4] and "3 changing code, 2 decisions changing" in third[4]
    assert second[4] == "no replay was run for it (suture validate --replay 7d in review records one)"
    assert row(changes, "code DISK-001")[:3] == ["code DISK-001", "1", "added"]


def test_code_page_shows_knowledge_policy_versions_and_recent_incidents(client: TestClient) -> None:
    page = client.get("/catalog/codes/DISK-001")
    assert page.status_code == 200
    assert "Disk filling up" in element(page.text, "section", "knowledge")
    assert text(element(page.text, "span", "owner")) == "infra"
    assert "mountpoint" in text(page.text)  # the match rules
    versions = element(page.text, "table", "code-versions")
    assert row(versions, "1")[2].endswith("UTC")
    recent = text(element(page.text, "table", "recent"))
    assert "db-1" in recent and "db-2" in recent
    assert "resolved by hand by alice" in recent and "still open" in recent


def test_playbook_page_shows_the_yaml_exactly_as_stored(client: TestClient, tmp_path: Path) -> None:
    """Version 1's file is gone from the catalog; its page still shows the YAML as first loaded."""
    stored = (Path(__file__).resolve().parent.parent / "catalog" / "playbooks" / "noop.yaml").read_text()
    page = client.get("/catalog/playbooks/noop/1")
    assert page.status_code == 200
    assert html.unescape(element(page.text, "pre", "playbook-yaml")) == stored
    assert re.fullmatch(r"[0-9a-f]{64}", text(element(page.text, "code", "playbook-sha256")))
    assert 'id="diff-next" href="/catalog/playbooks/noop/diff?from=1&amp;to=2"' in page.text
    newer = client.get("/catalog/playbooks/noop/2")
    assert html.unescape(element(newer.text, "pre", "playbook-yaml")) == NOOP_2
    assert 'id="diff-previous" href="/catalog/playbooks/noop/diff?from=1&amp;to=2"' in newer.text


def test_diff_marks_removed_and_added_lines(client: TestClient) -> None:
    page = client.get("/catalog/playbooks/noop/diff", params={"from": "1", "to": "2"})
    assert page.status_code == 200
    diff = element(page.text, "pre", "diff")
    assert '<span class="file">--- noop@1' in diff and '<span class="file">+++ noop@2' in diff
    assert '<span class="del">-version: 1</span>' in diff
    assert '<span class="ins">+version: 2</span>' in diff
    assert '<span class="del">-    wait: 0s</span>' in diff
    assert '<span class="ins">+    wait: 5s</span>' in diff
    assert '<span class="ctx">   - name: pause</span>' in diff
    # Without versions: the newest against the one before it.
    assert element(client.get("/catalog/playbooks/noop/diff").text, "pre", "diff") == diff
    same = client.get("/catalog/playbooks/noop/diff", params={"from": "2", "to": "2"})
    assert same.status_code == 200 and 'id="diff-same"' in same.text


def test_unknown_code_version_or_playbook_is_a_404_page(client: TestClient) -> None:
    for path in (
        "/catalog/codes/NOPE-404",
        "/catalog/playbooks/noop/3",
        "/catalog/playbooks/nothing/1",
        "/catalog/playbooks/noop/diff?from=1&to=7",
        "/catalog/playbooks/nothing/diff",
    ):
        page = client.get(path)
        assert page.status_code == 404, path
        assert 'id="problem"' in page.text and "text/html" in page.headers["content-type"], path
    bad = client.get("/catalog/playbooks/noop/diff", params={"from": "one", "to": "2"})
    assert bad.status_code == 400 and "expected a playbook version" in text(bad.text)


def test_handover_is_the_reports_sections_inside_the_console(client: TestClient) -> None:
    """The report of `suture report handover --format html`, in the console's layout (navigation,
    stylesheet), with the open incident and what to do, and the catalog change with its diff."""
    page = client.get("/handover", params={"since": "7d"})
    assert page.status_code == 200
    assert (
        page.text.count("<html") == 1
        and '<link rel="stylesheet" href="/console/static/console.css">' in page.text
    )
    report = element(page.text, "article", "handover")
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", report)
    assert headings == [
        "Open incidents",
        "Waiting for approval",
        "Recurring",
        "Automation",
        "Catalog changes",
        "Notes from the shift",
        "Numbers",
    ]
    assert re.search(r"<h3>#\d+ DISK-001: Filesystem almost full</h3>", report)
    assert "<strong>Owner:</strong> infra" in report
    assert "playbook noop version 2 changed" in text(report)
    assert "+    wait: 5s" in text(report)
    bad = client.get("/handover", params={"since": "soon"})
    assert bad.status_code == 400 and "since" in text(element(bad.text, "p", "problem"))


def test_pages_need_a_sign_in_when_reads_are_not_open(tmp_path: Path) -> None:
    users = [{"name": "alice", "password_hash": hash_password("s3cret", n=2**4), "role": "operate"}]
    app, store = build(tmp_path, access={"users": users})
    with app:
        for path in ("/catalog", "/catalog/codes/DISK-001", "/catalog/playbooks/noop/1", "/handover"):
            answer = app.get(path, follow_redirects=False)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next="), path
        signed_in = app.post("/login", data={"name": "alice", "password": "s3cret", "next": "/catalog"})
        assert signed_in.status_code == 200 and 'id="signed-in-as">alice<' in signed_in.text
        assert 'id="codes"' in signed_in.text
    store.db.dispose()
