"""A real `suture serve` with a seeded history and one headless Chromium, shared by the console's
browser tests: alerts sent through the webhook opened the incidents, the daemon ran the playbooks
(HTTP steps against a loopback server whose answers are the runs' output), two runs wait for
approval and one failed run opened a breaker. Each test gets a fresh browser context (no cookie
of the last test) that records every URL it requests.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

# Not skipped when missing: `bash .ci/test` installs both, and a console nobody looked at must not pass.
import playwright.sync_api as pw  # noqa: E402
import pytest

from engine.access import hash_password
from tests.conftest import DaemonProcess, free_port, wait_for, write_config
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer, respond, running_http_server

CHROMIUM = "/usr/bin/chromium"
#: Without the background-networking flags Chromium calls hosts outside the machine on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Every wait in these tests is bounded by this (milliseconds).
TIMEOUT_MS = 5000
SCREENSHOTS = Path(os.environ.get("SUTURE_SCREENSHOTS", "/tmp/suture-console-screenshots"))


@dataclass(frozen=True)
class User:
    name: str
    password: str
    role: str


OPERATOR = User("olga", "olga-console-pass-1", "operate")
READER = User("rita", "rita-console-pass-1", "read")

#: What the runs' HTTP steps get back, so what their output block must show.
CLEAN_OUTPUT = "journal vacuumed: freed 4.2 GiB on the root filesystem"
RESTART_OUTPUT = "nginx restarted, 4 workers up"

CODES = """
- code: DISK-001
  title: Filesystem almost full
  severity: high
  match: {alertname: DiskFull}
  target: "{{ labels.instance.split(':')[0] }}"
  playbook: clean-disk
  mode: auto
  knowledge:
    summary: The root filesystem fills up with old journal files.
    diagnosis: ["Run df -h / on the host", "Look for large files under /var/log"]
    manual_steps: ["journalctl --vacuum-size=500M", "Delete rotated logs older than a week"]
    owner: team-storage
- code: APPR-001
  title: Web server down, restart needs approval
  severity: medium
  match: {alertname: ServiceDown}
  target: "{{ labels.instance.split(':')[0] }}"
  playbook: restart-service
  mode: approval
  knowledge: {summary: nginx stopped answering on the host., owner: team-web}
- code: NET-001
  title: Packet loss on an uplink
  severity: low
  match: {alertname: PacketLoss}
  target: "{{ labels.instance.split(':')[0] }}"
  playbook: clean-disk
  mode: manual
  knowledge: {summary: Packet loss above 2% on the uplink., owner: team-network}
- code: DRY-001
  title: Rehearsal of the disk clean-up
  severity: low
  match: {alertname: RehearseClean}
  target: "{{ labels.instance.split(':')[0] }}"
  playbook: clean-disk
  mode: auto
  dry_run: true
- code: FAIL-001
  title: A fix that always fails
  severity: critical
  match: {alertname: AlwaysBroken}
  target: "{{ labels.instance.split(':')[0] }}"
  playbook: broken-fix
  mode: auto
  policy: {breaker: {failures: 1}}
"""


def _playbooks(hook: TestHttpServer) -> dict[str, str]:
    return {
        "clean-disk": f"""
            name: clean-disk
            version: 1
            description: Vacuum the journal through the host agent.
            steps:
              - name: vacuum journal
                http: {{method: POST, url: "{hook.url_for("/clean")}", json: {{host: "{{{{ target }}}}"}}}}
        """,
        "restart-service": f"""
            name: restart-service
            version: 1
            description: Restart nginx through the host agent.
            steps:
              - name: restart nginx
                http: {{method: POST, url: "{hook.url_for("/restart")}", json: {{host: "{{{{ target }}}}"}}}}
        """,
        # Version 2 of the same playbook: what the approval code runs, and a diff in the catalog.
        "restart-service-2": f"""
            name: restart-service
            version: 2
            description: Restart nginx through the host agent, gracefully.
            steps:
              - name: restart nginx
                http:
                  method: POST
                  url: "{hook.url_for("/restart")}"
                  json: {{host: "{{{{ target }}}}", graceful: true}}
        """,
        "broken-fix": f"""
            name: broken-fix
            version: 1
            steps:
              - name: call a broken agent
                http: {{method: POST, url: "{hook.url_for("/broken")}", expect_status: [200]}}
        """,
    }


@dataclass
class Console:
    """The seeded daemon and what the tests look for in it."""

    daemon: DaemonProcess
    hook: TestHttpServer
    incidents: dict[str, int] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.daemon.url

    def open_incident(self, alertname: str, fingerprint: str, instance: str) -> int:
        """A new incident for one test alone, opened through the webhook like the seeded ones."""
        _fire(self.daemon, alertname, fingerprint, instance, starts_at=_ago(1))
        [found] = [i for i in _items(self, "/api/v1/incidents?status=open") if i["target"] == instance]
        return int(found["id"])

    def api(self, path: str, user: User = READER) -> Any:
        """A read of the API as `user` (HTTP Basic): what the console shows, checked at the source."""
        response = httpx.get(f"{self.url}{path}", auth=(user.name, user.password), timeout=10)
        response.raise_for_status()
        return response.json()


def _ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fire(daemon: DaemonProcess, alertname: str, fingerprint: str, instance: str, **kwargs: Any) -> Any:
    alert = am_alert(alertname, fingerprint=fingerprint, instance=f"{instance}:9100", **kwargs)
    response = daemon.post("alertmanager", am_body(alert))
    assert response.status_code == 202, response.text
    return response.json()


def _seed(console: Console) -> None:
    daemon = console.daemon
    # A resolved DISK-001 incident on web-1 before the open one: the "previous incidents" of web-1.
    _fire(daemon, "DiskFull", "disk-web1", "web-1", starts_at=_ago(180))
    [first] = _items(console, "/api/v1/incidents")
    wait_for(lambda: _run_of(console, first["id"], "succeeded"), timeout=15)
    _fire(daemon, "DiskFull", "disk-web1", "web-1", starts_at=_ago(180), status="resolved")
    _fire(daemon, "DiskFull", "disk-web1", "web-1", starts_at=_ago(30))
    _fire(daemon, "DiskFull", "disk-web2", "web-2", starts_at=_ago(20))
    _fire(daemon, "ServiceDown", "svc-app1", "app-1", starts_at=_ago(15))
    _fire(daemon, "ServiceDown", "svc-app2", "app-2", starts_at=_ago(14))
    _fire(daemon, "PacketLoss", "net-sw1", "sw-1", starts_at=_ago(60))
    _fire(daemon, "PacketLoss", "net-sw2", "sw-2", starts_at=_ago(50))
    _fire(daemon, "RehearseClean", "dry-db1", "db-1", starts_at=_ago(10))
    _fire(daemon, "AlwaysBroken", "broken-lb1", "lb-1", starts_at=_ago(5))

    opened = {(i["code"], i["target"]): i["id"] for i in _items(console, "/api/v1/incidents?status=open")}
    console.incidents = {f"{code}/{target}": int(number) for (code, target), number in opened.items()}
    console.incidents["DISK-001/web-1/resolved"] = int(first["id"])
    for name, incident, status in [
        ("finished", "DISK-001/web-2", "succeeded"),
        ("approve", "APPR-001/app-1", "awaiting_approval"),
        ("reject", "APPR-001/app-2", "awaiting_approval"),
        ("dry", "DRY-001/db-1", "succeeded"),
        ("failed", "FAIL-001/lb-1", "failed"),
    ]:
        number = console.incidents[incident]
        console.runs[name] = wait_for(lambda n=number, s=status: _run_of(console, n, s), timeout=15)
    wait_for(lambda: _items(console, "/api/v1/breakers"), timeout=15)


def _items(console: Console, path: str) -> list[dict[str, Any]]:
    return list(console.api(path)["items"])


def _run_of(console: Console, incident: int, status: str) -> int | None:
    """The incident's run in `status` (finished, unless it waits for approval)."""
    for run in console.api(f"/api/v1/incidents/{incident}")["runs"]:
        if run["status"] == status and (status == "awaiting_approval" or run["finished_at"]):
            return int(run["id"])
    return None


@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One SQLite daemon with access.users (an operator, a reader) and the seeded history."""
    folder = tmp_path_factory.mktemp("console")
    with running_http_server() as hook:
        hook.default = respond(200, body="ok\n")
        hook.script("/clean", [respond(200, body=CLEAN_OUTPUT + "\n") for _ in range(50)])
        hook.script("/restart", [respond(200, body=RESTART_OUTPUT + "\n") for _ in range(50)])
        hook.script("/broken", [respond(500, body="agent crashed\n") for _ in range(50)])
        port = free_port()
        users = [
            {"name": user.name, "password_hash": hash_password(user.password, n=2**10), "role": user.role}
            for user in (OPERATOR, READER)
        ]
        catalog = folder / "catalog"
        (catalog / "codes").mkdir(parents=True)
        (catalog / "playbooks").mkdir()
        (catalog / "codes" / "console.yaml").write_text(CODES)
        for name, body in _playbooks(hook).items():
            (catalog / "playbooks" / f"{name}.yaml").write_text(textwrap.dedent(body))
        config = write_config(
            folder / "site",
            f"sqlite:///{folder / 'console.db'}",
            port=port,
            catalog=catalog,
            access={"users": users},
            http={"allowed_hosts": ["127.0.0.1"]},
        )
        daemon = DaemonProcess(config, port).start()
        try:
            seeded = Console(daemon, hook)
            _seed(seeded)
            yield seeded
        finally:
            daemon.stop()


# Package scope, not session: Playwright's sync API keeps an event loop running on the main thread
# while it is open, and every later test that calls asyncio.run() (TestClient, anyio) would fail.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (bash .ci/test does)")
    with pw.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Visit:
    """A browser tab on the console, with every URL it asked for."""

    page: Any
    base: str
    requested: list[str]

    def go(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None
        return response

    def sign_in(self, user: User) -> None:
        """Through the sign-in form, as a person would; lands back on the incidents list."""
        self.go("/login")
        self.page.fill("#name", user.name)
        self.page.fill("#password", user.password)
        with self.page.expect_navigation():
            self.page.click("form[action='/login'] button[type=submit]")
        pw.expect(self.page.locator("#signed-in-as")).to_have_text(user.name)

    def shoot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def outside(self) -> list[str]:
        """What this tab requested from anywhere but the daemon."""
        return [
            url for url in self.requested if not (url.startswith(self.base + "/") or url.startswith("data:"))
        ]


def _tab(browser: Any, console: Console, state: dict[str, Any] | None = None) -> tuple[Any, Visit]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, storage_state=state)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    pw.expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    return context, Visit(page, console.url, requested)


@contextmanager
def _visiting(browser: Any, console: Console, state: dict[str, Any] | None = None) -> Iterator[Visit]:
    context, tab = _tab(browser, console, state)
    try:
        yield tab
        assert tab.outside() == [], "the console asked for something outside the daemon"
    finally:
        context.close()


@pytest.fixture(scope="package")
def signed_in(browser: Any, console: Console) -> dict[str, dict[str, Any]]:
    """Each user signed in once through the form; tests start from that session's cookie."""
    states = {}
    for user in (OPERATOR, READER):
        with _visiting(browser, console) as tab:
            tab.sign_in(user)
            states[user.name] = tab.page.context.storage_state()
    return states


@pytest.fixture
def visit(browser: Any, console: Console) -> Iterator[Visit]:
    """A fresh context (no session cookie); none may request anything outside the daemon."""
    with _visiting(browser, console) as tab:
        yield tab


@pytest.fixture
def operator(browser: Any, console: Console, signed_in: dict[str, dict[str, Any]]) -> Iterator[Visit]:
    """A tab signed in as the operate user."""
    with _visiting(browser, console, signed_in[OPERATOR.name]) as tab:
        yield tab


@pytest.fixture
def reader(browser: Any, console: Console, signed_in: dict[str, dict[str, Any]]) -> Iterator[Visit]:
    """A tab signed in as the read-only user."""
    with _visiting(browser, console, signed_in[READER.name]) as tab:
        yield tab
