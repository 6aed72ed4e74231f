"""The rollout verdict and its interval (engine.analytics.rollout), pure and fast."""

from __future__ import annotations

from engine.analytics.rollout import Version, shadow_report, verdict, wilson
from engine.models import Code
from engine.store.history import ShadowTally

CODE_FIELDS = {
    "code": "DISK-001",
    "title": "Filesystem almost full",
    "severity": "high",
    "match": {"alertname": "NodeFilesystemAlmostOutOfSpace"},
    "playbook": "disk-cleanup@3",
    "mode": "auto",
}


def version(role: str, number: int, runs: int, effective: int) -> Version:
    return Version("disk-cleanup", number, role, runs, runs, effective, ())


def test_the_wilson_interval_is_narrow_with_many_tries_and_wide_with_few() -> None:
    assert wilson(0, 0) is None
    low, high = wilson(18, 20) or (0, 0)
    assert 0.698 < low < 0.700 and 0.971 < high < 0.973
    low, high = wilson(900, 1000) or (0, 0)
    assert 0.879 < low < 0.881 and 0.916 < high < 0.918


def test_a_canary_is_better_or_worse_only_when_the_intervals_part() -> None:
    assert verdict([version("live", 3, 40, 31), version("canary", 4, 20, 18)]) == (
        "v4 fixed 18 of 20, v3 fixed 31 of 40: not enough evidence yet"
    )
    assert verdict([version("live", 3, 400, 200), version("canary", 4, 200, 190)]) == (
        "v4 is better: promote by setting playbook: disk-cleanup@4"
    )
    assert verdict([version("live", 3, 400, 390), version("canary", 4, 200, 100)]) == (
        "v4 is worse: remove the canary and keep playbook: disk-cleanup@3"
    )
    assert verdict([version("live", 3, 10, 9), version("canary", 4, 0, 0)]) == (
        "v4 fixed 0 of 0, v3 fixed 9 of 10: not enough evidence yet"
    )
    assert verdict([version("live", 3, 10, 9)]) == "no canary: every incident runs disk-cleanup@3"


def test_the_shadow_report_says_how_often_the_shadow_version_failed_to_render() -> None:
    """A shadow that failed to render is what must be fixed before promoting; one never rendered
    says so; a code without a shadow that rendered none has no report."""
    code = Code.model_validate({**CODE_FIELDS, "shadow": "disk-cleanup@4"})
    failing = [ShadowTally("disk-cleanup", 4, 10, 3, "step 'x': undefined name 'labels.dev'")]
    report = shadow_report(code, failing)
    assert report is not None and (report["rendered"], report["failed"], report["in_force"]) == (10, 3, True)
    assert report["said"] == "disk-cleanup@4 failed to render 3 of 10 times: fix it before promoting"
    assert report["last_error"] == "step 'x': undefined name 'labels.dev'"
    never = shadow_report(code, [])
    assert never is not None and never["said"].startswith("disk-cleanup@4 has not been rendered yet")
    assert shadow_report(Code.model_validate(CODE_FIELDS), []) is None
