"""`suture validate` catches, from the files alone, what would otherwise fail (or mislead) at run time.

Each trap gets a tiny catalog in tmp_path and the exact `file:line: ...` line a user would read,
with the fix in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine.catalog.loader import Catalog, load_catalog
from engine.cli.validate import validate
from engine.errors import CatalogError
from engine.execution.actions.http import host_allowed
from engine.models import Playbook

CODE = "- {code: T-001, title: t, severity: low, match: {alertname: T}}\n"


def _write(tmp_path: Path, playbook: str | None = None, codes: str = CODE) -> Path:
    (tmp_path / "codes").mkdir()
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "codes" / "c.yaml").write_text(codes)
    if playbook is not None:
        (tmp_path / "playbooks" / "p.yaml").write_text(playbook)
    return tmp_path


def _load(root: Path, **checks: object) -> Catalog:
    return load_catalog(root / "codes", root / "playbooks", **checks)  # type: ignore[arg-type]


def _problems(root: Path, **checks: object) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        _load(root, **checks)
    return caught.value.problems


def test_reading_a_result_no_earlier_step_registers(tmp_path: Path) -> None:
    """`{{ before.stdout }}` with `register: before` only later (or nowhere) is named with its line."""
    root = _write(
        tmp_path,
        "name: p\nversion: 1\nsteps:\n"
        "  - ssh: {command: 'echo {{ before.stdout }}'}\n"  # 4
        "  - ssh: {command: df}\n"
        "    register: before\n"  # 6
        "  - ssh: {command: 'echo {{ aftr.stdout }}'}\n"  # 7
        "    when: before.exit_code == 0\n"  # 8
        "verify:\n"
        "  - ssh: {command: 'echo {{ before.stdout }}'}\n"  # 10: verify may read what steps registered
        "    register: after\n",
    )
    playbook = root / "playbooks" / "p.yaml"
    assert _problems(root) == [
        f"{playbook}:4: ssh.command: `before` is registered only by a later step ({playbook}:6); "
        "a step reads only what earlier steps registered",
        f"{playbook}:7: ssh.command: no earlier step has `register: aftr` (did you mean 'after'?)",
    ]


def test_ansible_rc_and_unknown_result_fields_name_the_suture_field(tmp_path: Path) -> None:
    """`.rc` is `.exit_code`; a misspelt field lists what the result has."""
    root = _write(
        tmp_path,
        "name: p\nversion: 1\nsteps:\n"
        "  - ssh: {command: df}\n"
        "    register: before\n"
        "  - ssh: {command: 'echo {{ before.stdot }}'}\n"  # 6
        "    when: before.rc == 0\n",  # 7
    )
    playbook = root / "playbooks" / "p.yaml"
    assert _problems(root) == [
        f"{playbook}:6: ssh.command: `before.stdot`: the result of a ssh step has exit_code, stderr, "
        "stdout (did you mean 'stdout'?)",
        f"{playbook}:7: when: `before.rc` is Ansible; use `.exit_code`",
    ]


def test_undeclared_secret_is_named(tmp_path: Path) -> None:
    """A secret config.yaml does not declare fails validate, with the declared ones listed."""
    root = _write(
        tmp_path,
        "name: p\nversion: 1\nsteps:\n"
        "  - http:\n"
        "      url: https://api.example/x\n"
        "      headers: {Authorization: 'Bearer {{ secrets.API_TOKN }}'}\n",  # 6
    )
    playbook = root / "playbooks" / "p.yaml"
    assert _problems(root, secrets={"API_TOKEN"}) == [
        f"{playbook}:6: http.headers.Authorization: secret 'API_TOKN' is not declared under secrets: "
        "in config.yaml (API_TOKEN) (did you mean 'API_TOKEN'?)"
    ]
    assert _load(root).playbooks  # without the config nothing is known about secrets


def test_literal_url_host_outside_allowed_hosts(tmp_path: Path) -> None:
    """A host written out in the URL is judged by the HTTP action's own matcher; a templated one is not."""
    root = _write(
        tmp_path,
        "name: p\nversion: 1\nsteps:\n"
        "  - http: {url: 'https://evil.example/hook?x={{ target }}'}\n"  # 4
        "  - http: {url: 'http://10.1.2.3:{{ labels.port }}/'}\n"  # 5
        "  - http: {url: 'https://{{ target }}/health'}\n"  # 6: decided at run time
        "  - http: {url: 'https://api.internal.example/v1'}\n",  # 7: allowed
    )
    playbook = root / "playbooks" / "p.yaml"
    allowed = ["*.internal.example", "127.0.0.1"]
    assert _problems(root, host_allowed=lambda host: host_allowed(host, allowed)) == [
        f"{playbook}:4: http.url: host 'evil.example' is not in http.allowed_hosts; "
        "add it there in config.yaml or correct the URL",
        f"{playbook}:5: http.url: host '10.1.2.3' is not in http.allowed_hosts; "
        "add it there in config.yaml or correct the URL",
    ]


def test_sandbox_escaping_expression(tmp_path: Path) -> None:
    """`__class__`, `mro`, `|attr('__globals__')` are refused at validate time, in templates and `when:`."""
    root = _write(
        tmp_path,
        "name: p\nversion: 1\nsteps:\n"
        "  - ssh: {command: \"echo {{ ''.__class__.mro()[1] }}\"}\n"  # 4
        "    when: \"(labels | attr('__globals__')) is defined\"\n",  # 5
    )
    playbook = root / "playbooks" / "p.yaml"
    internals = "reaches Python internals, which the template sandbox refuses; templates read only alert data"
    assert _problems(root) == [
        f"{playbook}:4: ssh.command: `mro` {internals}, step results and secrets",
        f"{playbook}:4: ssh.command: `__class__` {internals}, step results and secrets",
        f"{playbook}:5: when: `__globals__` {internals}, step results and secrets",
    ]


def test_target_label_typo_fails_validation(tmp_path: Path) -> None:
    """`labels.instnce` would fall back to another host at run time; validate names it with a guess."""
    root = _write(
        tmp_path,
        codes=(
            "- code: T-001\n"
            "  title: t\n"
            "  severity: low\n"
            "  match: {alertname: T, labels: {fqdn: '.+'}}\n"
            "  target: \"{{ labels.instnce.split(':')[0] }}\"\n"  # 5
            "- code: T-002\n"
            "  title: t\n"
            "  severity: low\n"
            "  match: {alertname: U, labels: {fqdn: '.+'}}\n"
            "  target: '{{ labels.fqdn }}{{ labels.hostname | default(labels.node) }}'\n"  # 10: fine
            "- code: T-003\n"
            "  title: t\n"
            "  severity: low\n"
            "  match: {alertname: V}\n"
            "  target: '{{ lables.instance }}'\n"  # 15
        ),
    )
    codes = root / "codes" / "c.yaml"
    assert _problems(root) == [
        f"{codes}:5: target: unknown label 'instnce' in target (did you mean 'instance'?); "
        "if alerts carry it, name it in the code's match labels (e.g. instnce: '.+')",
        f"{codes}:15: target: `lables` is not available to a target, which reads only labels, "
        "annotations, alert (did you mean 'labels'?)",
    ]


@pytest.mark.parametrize(
    ("step", "where", "message"),
    [
        ("  - ssh: {command: df, become: true}\n", "steps.0.ssh.become", "use `sudo: true` under `ssh:`"),
        ("  - ssh: {command: df}\n    become: true\n", "steps.0.become", "use `sudo: true` under `ssh:`"),
        (
            "  - ssh: {command: df}\n    ignore_errors: true\n",
            "steps.0.ignore_errors",
            "use `on_failure: continue`",
        ),
        ("  - shell: df -h\n", "steps.0.shell", "use `ssh: {command: ...}`"),
        ("  - command: df -h\n", "steps.0.command", "use `ssh: {command: ...}`"),
    ],
)
def test_ansible_keys_name_the_suture_spelling(tmp_path: Path, step: str, where: str, message: str) -> None:
    """An Ansible key is one line with file:line and the Suture spelling, not a bare "unknown key"."""
    root = _write(tmp_path, "name: p\nversion: 1\nsteps:\n" + step)
    playbook = root / "playbooks" / "p.yaml"
    key = where.rsplit(".", 1)[-1]
    line = 4 + step.count("\n") - 1
    assert f"{playbook}:{line}: {where}: `{key}` is Ansible; {message}" in _problems(root)


def test_quote_filter_says_values_are_quoted_already(tmp_path: Path) -> None:
    """`| quote` is Ansible; Suture quotes every value itself."""
    root = _write(tmp_path, "name: p\nversion: 1\nsteps:\n  - ssh: {command: 'df {{ labels.mp | quote }}'}\n")
    playbook = root / "playbooks" / "p.yaml"
    assert _problems(root) == [f"{playbook}:4: ssh.command: values are quoted already; drop `| quote`"]


def test_when_with_braces_is_accepted_as_the_bare_expression(tmp_path: Path) -> None:
    """`when: "{{ before.exit_code == 0 }}"` means `when: before.exit_code == 0`."""
    root = _write(
        tmp_path,
        "name: p\nversion: 1\nsteps:\n"
        "  - ssh: {command: df}\n    register: before\n"
        "  - ssh: {command: df}\n    when: '{{ before.exit_code == 0 }}'\n",
    )
    entry = _load(root).playbooks[("p", 1)]
    assert entry.playbook.steps[1].when == "before.exit_code == 0"
    reparsed = Playbook.model_validate(yaml.safe_load(entry.body))  # what a run reads back
    assert reparsed.steps[1].when == "before.exit_code == 0"


def test_validate_command_checks_against_config(tmp_path: Path) -> None:
    """`suture validate` itself passes config.yaml's secrets and allowed hosts to the checks."""
    root = _write(
        tmp_path,
        "name: p\nversion: 1\nsteps:\n"
        "  - http:\n"
        "      url: https://hooks.example/x\n"  # 5
        "      headers: {X-Key: '{{ secrets.KEY }}'}\n",  # 6
    )
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{root / 'absent.db'}"},
                "catalog": {"codes_dir": "codes", "playbooks_dir": "playbooks"},
                "http": {"allowed_hosts": ["api.example"]},
                "secrets": {"TOKEN": {"env": "SUTURE_TEST_TOKEN"}},
            }
        )
    )
    result = CliRunner().invoke(validate, ["--config", str(config), "--json"])
    assert result.exit_code == 1, result.output
    playbook = root / "playbooks" / "p.yaml"
    assert f"{playbook}:5: http.url: host 'hooks.example' is not in http.allowed_hosts" in result.output
    assert f"{playbook}:6: http.headers.X-Key: secret 'KEY' is not declared under secrets:" in result.output
