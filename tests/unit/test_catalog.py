"""Pure catalog logic: match order, full-match regexes, version pins, quoting of placeholders."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalog import classify
from engine.catalog.classify import Classifier
from engine.catalog.loader import load_catalog, placeholder_inside_quotes
from engine.models import Alert, AlertStatus


def _alert(name: str, source: str = "alertmanager", **labels: str) -> Alert:
    return Alert(source=source, name=name, fingerprint="f", status=AlertStatus.firing, labels=labels)


def _catalog(tmp_path: Path, codes: dict[str, str], playbooks: dict[str, str] | None = None) -> Path:
    (tmp_path / "codes").mkdir()
    (tmp_path / "playbooks").mkdir()
    for name, text in codes.items():
        (tmp_path / "codes" / name).write_text(text)
    for name, text in (playbooks or {}).items():
        (tmp_path / "playbooks" / name).write_text(text)
    return tmp_path


def test_first_matching_code_wins_in_file_then_list_order(tmp_path: Path) -> None:
    """Files are read by name and codes in order, so an earlier, narrower code shadows a later one."""
    root = _catalog(
        tmp_path,
        {
            "b.yaml": "- {code: B-001, title: b, severity: low, match: {alertname: 'Disk.*'}}\n",
            "a.yaml": "- {code: A-001, title: a, severity: high,"
            " match: {alertname: DiskFull, labels: {mp: /}}}\n"
            "- {code: A-002, title: a2, severity: low, match: {alertname: DiskFull}}\n",
        },
    )
    classifier = Classifier(load_catalog(root / "codes", root / "playbooks"))
    assert classifier.classify(_alert("DiskFull", mp="/")).code == "A-001"  # type: ignore[union-attr]
    assert classifier.classify(_alert("DiskFull", mp="/var")).code == "A-002"  # type: ignore[union-attr]
    assert classifier.classify(_alert("DiskSlow")).code == "B-001"  # type: ignore[union-attr]
    assert classifier.classify(_alert("Other")) is None


def test_classifying_many_alert_names_keeps_a_bounded_memory_and_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate rules of each (source, alert name) are kept, at most NAMES_KEPT of them: an
    alert of a name met before, with other labels, is still decided by its labels, in catalog
    order, and one past the limit as well."""
    root = _catalog(
        tmp_path,
        {
            "a.yaml": "- {code: A-001, title: a, severity: high,"
            " match: {alertname: 'Disk.*', labels: {mp: /}}}\n"
            "- {code: A-002, title: a2, severity: low, match: {alertname: 'Disk.*'}}\n"
        },
    )
    monkeypatch.setattr(classify, "NAMES_KEPT", 3)
    classifier = Classifier(load_catalog(root / "codes", root / "playbooks"))
    for n in range(10):
        found = classifier.classify(_alert(f"Disk{n}", mp="/"))
        again = classifier.classify(_alert(f"Disk{n}", mp="/var"))
        assert (found and found.code, again and again.code) == ("A-001", "A-002")
        assert classifier.classify(_alert(f"Cpu{n}")) is None
        assert len(classifier._by_name) <= 3


def test_regexes_match_in_full_and_missing_label_never_matches(tmp_path: Path) -> None:
    """`/|/var` does not match `/var/lib`; a condition on an absent label does not match."""
    root = _catalog(
        tmp_path,
        {"c.yaml": "- {code: C-001, title: c, severity: low, source: x, match: {labels: {mp: '/|/var'}}}\n"},
    )
    with pytest.raises(Exception, match="c.yaml:1: 0.source: unknown key"):
        load_catalog(root / "codes", root / "playbooks")
    (root / "codes" / "c.yaml").write_text(
        "- {code: C-001, title: c, severity: low, match: {source: grafana, labels: {mp: '/|/var'}}}\n"
    )
    classifier = Classifier(load_catalog(root / "codes", root / "playbooks"))
    assert classifier.classify(_alert("A", source="grafana", mp="/var")) is not None
    assert classifier.classify(_alert("A", source="grafana", mp="/var/lib")) is None
    assert classifier.classify(_alert("A", source="grafana")) is None
    assert classifier.classify(_alert("A", source="alertmanager", mp="/")) is None


def test_unpinned_code_runs_newest_version_and_pin_holds(tmp_path: Path) -> None:
    """`playbook: p` follows the newest version in the catalog; `p@1` stays on version 1."""
    step = "steps: [{wait: 0s}]\n"
    root = _catalog(
        tmp_path,
        {
            "c.yaml": "- {code: N-001, title: n, severity: low, match: {alertname: N}, playbook: p}\n"
            "- {code: P-001, title: p, severity: low, match: {alertname: P}, playbook: p@1}\n"
        },
        {"p1.yaml": "name: p\nversion: 1\n" + step, "p2.yaml": "name: p\nversion: 2\n" + step},
    )
    catalog = load_catalog(root / "codes", root / "playbooks")
    newest, pinned = (catalog.playbook_for(entry.code) for entry in catalog.codes)
    assert newest is not None and newest.playbook.version == 2
    assert pinned is not None and pinned.playbook.version == 1


@pytest.mark.parametrize(
    ("command", "inside"),
    [
        ("printf '%s' {{ labels.x }}", False),
        ("df {{ labels.mountpoint }} | tail -1", False),
        ('test "$(df {{ labels.mp }} | tr -dc 0-9)" -lt 90', False),
        ("awk '{print $1}' {{ annotations.file }}", False),
        ("echo '{{ labels.x }}'", True),
        ('echo "value: {{ labels.x }}"', True),
        ('echo "$(cat f) {{ labels.x }}"', True),
    ],
)
def test_placeholder_inside_author_quotes_is_detected(command: str, inside: bool) -> None:
    """Quotes around a placeholder would undo automatic shell quoting; `$( )` starts fresh quoting."""
    assert placeholder_inside_quotes(command) is inside


def test_quoted_placeholder_in_playbook_is_a_validation_error(tmp_path: Path) -> None:
    """A playbook quoting a placeholder itself is refused with file:line."""
    root = _catalog(
        tmp_path,
        {},
        {"q.yaml": "name: q\nversion: 1\nsteps:\n  - ssh: {command: \"echo '{{ labels.x }}'\"}\n"},
    )
    with pytest.raises(Exception, match=r"q.yaml:4: ssh.command: do not put quotes around"):
        load_catalog(root / "codes", root / "playbooks")
