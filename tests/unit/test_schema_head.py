"""Read commands trust `HEAD_REVISION` instead of asking alembic: it must name the newest migration."""

from alembic.config import Config
from alembic.script import ScriptDirectory

from engine.store.db import HEAD_REVISION, MIGRATIONS


def test_head_revision_is_the_newest_migration() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD_REVISION]
