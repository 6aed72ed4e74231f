"""Hostile alert values against templates, end to end: the real daemon, a real sshd as the target.

Issue 11, defects 3-5: a label must never become an option of the command that receives it;
a label the alert lacks must stop the run before its first step; and whatever an expression
touching a secret renders to must never be stored, logged or served.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jinja2 import Environment

from tests.conftest import DaemonProcess, free_port, wait_for, write_config
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer, respond
from tests.support.sshd import SshServer

TOKEN = "Tok/3n+Secret=9xY"
TOKEN_ENV = "SUTURE_FAULT_TEMPLATE_TOKEN"

CODES = """
- code: OPT-001
  title: A label before ssh's host
  severity: low
  match: {alertname: OptionInject}
  target: "{{ labels.instance }}"
  playbook: option-inject
  mode: auto
- code: OPT-002
  title: The same label after --
  severity: low
  match: {alertname: OptionAfterDashes}
  target: "{{ labels.instance }}"
  playbook: argv-after-dashes
  mode: auto
- code: HALF-001
  title: Step 2 reads a label the alert lacks
  severity: low
  match: {alertname: HalfWay}
  target: "{{ labels.instance }}"
  playbook: half-way
  mode: auto
- code: SEC-001
  title: Filtered secrets
  severity: low
  match: {alertname: FilteredSecret}
  target: "{{ labels.instance }}"
  playbook: filtered-secret
  mode: auto
"""

PLAYBOOKS = {
    "option-inject": """
        name: option-inject
        version: 1
        steps:
          - name: reach
            ssh:
              command: "touch {{ annotations.ran }} && ssh -o BatchMode=yes {{ labels.evil }} nohost true"
    """,
    "argv-after-dashes": """
        name: argv-after-dashes
        version: 1
        steps:
          - name: write argv
            ssh: {command: "sh {{ annotations.argv }} {{ annotations.out }} -- {{ labels.evil }}"}
    """,
    "half-way": """
        name: half-way
        version: 1
        steps:
          - name: first change
            ssh: {command: "touch {{ annotations.marker }}"}
          - name: second change
            ssh: {command: "df -- {{ labels.nolabel }}"}
    """,
    "filtered-secret": """
        name: filtered-secret
        version: 1
        steps:
          - name: shout it
            ssh:
              command: "echo {{ secrets.TOKEN | upper }} {{ 'k-' ~ secrets.TOKEN }} {{ secrets.TOKEN[::-1] }}"
          - name: send it
            http:
              method: POST
              url: "{{ annotations.hook }}?t={{ secrets.TOKEN | urlencode }}"
              headers: {X-Rev: "{{ secrets.TOKEN[::-1] }}"}
              json: {t: "{{ secrets.TOKEN | upper }}", c: "{{ 'k-' ~ secrets.TOKEN }}"}
              expect_status: [200]
    """,
}

#: Writes each argument after the first, NUL-terminated, to the file named by the first.
ARGV_SCRIPT = 'out=$1; shift; for a in "$@"; do printf \'%s\\0\' "$a"; done > "$out"\n'


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("template-faults")


@pytest.fixture(scope="module")
def daemon(sshd: SshServer, site: Path) -> Iterator[DaemonProcess]:
    """One SQLite daemon with this module's catalog, reaching the real sshd as `sshhost`."""
    port = free_port()
    config = write_config(
        site / "site",
        f"sqlite:///{site / 'faults.db'}",
        port=port,
        ssh={
            "user": sshd.user,
            "key_file": str(sshd.key_file),
            "known_hosts": str(sshd.known_hosts),
            "connect_timeout": "3s",
        },
        inventory=[{"match": "sshhost", "address": "127.0.0.1", "port": sshd.port}],
        http={"allowed_hosts": ["127.0.0.1"]},
        server={"max_label_bytes": 16384},
        secrets={"TOKEN": {"env": TOKEN_ENV}},
    )
    (config.parent / "codes" / "zz-faults.yaml").write_text(CODES)
    for name, body in PLAYBOOKS.items():
        (config.parent / "playbooks" / f"{name}.yaml").write_text(textwrap.dedent(body))
    process = DaemonProcess(config, port, env={TOKEN_ENV: TOKEN}).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def argv_script(tmp_path: Path) -> Path:
    script = tmp_path / "argv.sh"
    script.write_text(ARGV_SCRIPT)
    return script


def _fire(
    daemon: DaemonProcess, alertname: str, fingerprint: str, labels: dict[str, str], **notes: str
) -> int:
    alert = am_alert(alertname, fingerprint=fingerprint, instance="sshhost", **labels)
    alert["annotations"].update(notes)
    response = daemon.post("alertmanager", am_body(alert))
    assert response.status_code == 202, response.text
    [run_id] = response.json()["runs_queued"]
    return int(run_id)


def _finished(daemon: DaemonProcess, run_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = daemon.get(f"/api/v1/runs/{run_id}")
        return run if run["finished_at"] else None

    return wait_for(done, timeout=30, interval=0.2)  # type: ignore[no-any-return]


def _argv(path: Path) -> list[str]:
    return path.read_bytes().decode().split("\0")[:-1]


# ------------------------------------------------------------------ defect 3: options


def test_label_before_ssh_host_is_refused_and_the_target_runs_nothing(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """`-oProxyCommand=touch F` as a label: the step fails naming it; neither F nor its marker appear."""
    pwned, ran = tmp_path / "pwned", tmp_path / "ran"
    run_id = _fire(daemon, "OptionInject", "opt1", {"evil": f"-oProxyCommand=touch {pwned}"}, ran=str(ran))
    run = _finished(daemon, run_id)

    assert not pwned.exists(), "the label became an ssh option and ran a command on the target"
    assert not ran.exists(), "the step's command reached the target"
    assert run["status"] == "failed", run
    assert "labels.evil" in run["error"] and "option" in run["error"]
    [step] = run["steps"]
    assert step["status"] == "failed" and step["exit_code"] is None
    assert "labels.evil" in step["error"]


def test_label_after_double_dash_arrives_as_a_plain_argument(
    daemon: DaemonProcess, tmp_path: Path, argv_script: Path
) -> None:
    """After `--` the same value is one ordinary argument: the target's argv holds it verbatim."""
    pwned, out = tmp_path / "pwned", tmp_path / "argv.out"
    evil = f"-oProxyCommand=touch {pwned}"
    run_id = _fire(daemon, "OptionAfterDashes", "opt2", {"evil": evil}, argv=str(argv_script), out=str(out))
    run = _finished(daemon, run_id)

    assert run["status"] == "succeeded", run
    assert _argv(out) == ["--", evil]
    assert not pwned.exists()


HOSTILE = {
    "semicolon": "x; touch {pwned}",
    "pipe-and": "a | touch {pwned} && touch {pwned} || touch {pwned} & touch {pwned}",
    "dollar-paren": "$(touch {pwned}) ${{IFS}}touch${{IFS}}{pwned}",
    "backticks": "`touch {pwned}`",
    "quotes": "it's \"quoted\" '; touch {pwned}; '",
    "newlines": "line1\ntouch {pwned}\n",
    "leading-dash": "-oProxyCommand=touch {pwned}",
    "ten-kb": "-" + "é;$(x)`y`\n" * 1000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_label_reaches_the_target_as_one_literal_argument(
    daemon: DaemonProcess, tmp_path: Path, argv_script: Path, name: str
) -> None:
    """Metacharacters, newlines, a leading "-", 10 KB: each arrives as exactly one argument, runs nothing."""
    pwned, out = tmp_path / "pwned", tmp_path / "argv.out"
    value = HOSTILE[name].format(pwned=pwned)
    run_id = _fire(
        daemon, "OptionAfterDashes", f"hostile-{name}", {"evil": value}, argv=str(argv_script), out=str(out)
    )
    run = _finished(daemon, run_id)

    assert run["status"] == "succeeded", run
    assert _argv(out) == ["--", value]
    assert not pwned.exists()


def test_nul_in_a_label_is_refused_at_the_door(daemon: DaemonProcess) -> None:
    """A label with a NUL never reaches a command: the webhook refuses it (4xx) naming the label."""
    alert = am_alert("OptionAfterDashes", fingerprint="nul1", instance="sshhost", evil="a\x00b")
    response = daemon.post("alertmanager", am_body(alert))
    assert 400 <= response.status_code < 500
    assert "labels.evil" in response.text and "NUL" in response.text


# ------------------------------------------------------------------ defect 4: names up front


def test_missing_label_in_step_two_fails_the_run_before_step_one(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """Step 2 reads a label the alert lacks: the run fails naming it and step 1's file never appears."""
    marker = tmp_path / "step1-ran"
    run = _finished(daemon, _fire(daemon, "HalfWay", "half1", {}, marker=str(marker)))

    assert not marker.exists(), "step 1 ran before the missing label was noticed"
    assert run["status"] == "failed", run
    assert "labels.nolabel" in run["error"] and "second change" in run["error"]
    assert [(s["name"], s["status"], s["exit_code"]) for s in run["steps"]] == [
        ("second change", "failed", None)
    ]


# ------------------------------------------------------------------ defect 5: secrets


def _rendered_forms() -> list[str]:
    env = Environment()

    def render(template: str) -> str:
        return env.from_string(template).render(s=TOKEN)

    forms = [TOKEN, render("{{ s | upper }}"), render("{{ 'k-' ~ s }}"), render("{{ s[::-1] }}")]
    forms.append(render("{{ s | urlencode }}"))
    assert len(set(forms)) == len(forms)
    return forms


def test_filtered_secrets_are_never_stored_logged_or_served(
    daemon: DaemonProcess, hook: TestHttpServer, site: Path
) -> None:
    """upper, `~`, `[::-1]` and urlencode renderings of a secret: not in the DB files, log, CLI or API."""
    hook.script("/echo", [respond(500, body=f"got {TOKEN.upper()} {TOKEN[::-1]} k-{TOKEN}")])
    run_id = _fire(daemon, "FilteredSecret", "sec1", {}, hook=hook.url_for("/echo"))
    run = _finished(daemon, run_id)

    assert run["status"] == "failed", run
    sent = [r for r in hook.requests if r.path.startswith("/echo")]
    assert len(sent) == 1 and sent[0].header("X-Rev") == TOKEN[::-1]  # the real values went out

    command = ["runs", "show", str(run_id), "--json", "--config", str(daemon.config_path)]
    shown = subprocess.run(
        [sys.executable, "-m", "engine", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env=daemon.env,
        check=True,
    )
    served = httpx.get(f"{daemon.url}/api/v1/runs/{run_id}", timeout=10).text
    places = {
        "runs show --json": shown.stdout,
        "API": served,
        "daemon log": daemon.log(),
    }
    database = b"".join(
        (site / name).read_bytes() for name in ("faults.db", "faults.db-wal") if (site / name).exists()
    )
    for form in _rendered_forms():
        for where, text in places.items():
            assert form not in text, f"{form!r} leaked into {where}"
        assert form.encode() not in database, f"{form!r} leaked into the SQLite files"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["shout it"]["stdout"] == "*** *** ***\n"
    assert steps["send it"]["params"]["headers"] == {"X-Rev": "***"}


def test_validate_warns_about_a_placeholder_in_option_position(tmp_path: Path) -> None:
    """`suture validate` exits 0 but prints `file:line: warning` for an undeclared label where options go."""
    config = write_config(tmp_path / "site", f"sqlite:///{tmp_path / 'none.db'}")
    (config.parent / "codes" / "zz-warn.yaml").write_text(
        textwrap.dedent(
            """
            - code: WARN-001
              title: Option position
              severity: low
              match: {alertname: Warn}
              playbook: option-warn
              mode: auto
            - code: WARN-002
              title: Declared label
              severity: low
              match: {alertname: Declared, labels: {unit: "[a-z]+[.]service"}}
              playbook: declared-ok
              mode: auto
            """
        )
    )
    (config.parent / "playbooks" / "option-warn.yaml").write_text(
        "name: option-warn\nversion: 1\nsteps:\n"
        "  - name: safe\n    ssh: {command: 'df -h -- {{ labels.mountpoint }}'}\n"
        "  - name: risky\n    ssh: {command: 'ssh {{ labels.evil }} host true'}\n"
    )
    (config.parent / "playbooks" / "declared-ok.yaml").write_text(
        "name: declared-ok\nversion: 1\nsteps:\n  - ssh: {command: 'journalctl -u {{ labels.unit }}'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "engine", "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")
    warnings = [line for line in result.stderr.splitlines() if ": warning: " in line]
    assert warnings == [
        f"{config.parent / 'playbooks' / 'option-warn.yaml'}:7: warning: ssh.command: {{{{ labels.evil }}}} "
        'stands alone where the command reads options, so a value starting with "-" will be refused at '
        "run time; put it after \"--\", or declare labels.evil's pattern in the code's match"
    ], result.stderr
