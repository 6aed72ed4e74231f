"""A dry run by hand publishes nothing: after `suture run --dry-run`, the playbook can be edited
under the same version and rehearsed again, and a real run then stores the version as it is."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from engine.cli.manual import run_by_hand
from engine.config import load_config
from engine.errors import CatalogError
from engine.models import RunStatus
from engine.store import open_database
from engine.store.tables import playbook_versions
from tests.conftest import write_config
from tests.payloads import am_alert, am_body


def _stored(url: str) -> list[tuple[str, int]]:
    db = open_database(url, upgrade=True)
    try:
        with db.read() as conn:
            return [
                tuple(row)
                for row in conn.execute(select(playbook_versions.c.name, playbook_versions.c.version))
            ]
    finally:
        db.dispose()


def test_a_rehearsal_leaves_the_version_free_to_edit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'manual.db'}"
    config_path = write_config(tmp_path / "site", url)
    config = load_config(str(config_path))
    alert = tmp_path / "alert.json"
    alert.write_bytes(orjson.dumps(am_body(am_alert(fingerprint="hand1"))))
    noop = config_path.parent / "playbooks" / "noop.yaml"

    assert run_by_hand(config, "noop", alert, dry_run=True, echo=lambda _: None) is RunStatus.succeeded
    assert ("noop", 1) not in _stored(url)
    noop.write_text(noop.read_text().replace("Does nothing, quickly.", "Does nothing, edited."))
    assert run_by_hand(config, "noop", alert, dry_run=True, echo=lambda _: None) is RunStatus.succeeded
    assert run_by_hand(config, "noop", alert, dry_run=False, echo=lambda _: None) is RunStatus.succeeded
    assert ("noop", 1) in _stored(url)
    # Published now: changing it again under the same version is the mistake it always was.
    noop.write_text(noop.read_text().replace("edited.", "edited twice."))
    with pytest.raises(CatalogError, match="noop"):
        run_by_hand(config, "noop", alert, dry_run=False, echo=lambda _: None)
