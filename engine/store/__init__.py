"""The only package that speaks SQL. Its reads return the frozen records of engine.records, never ORM rows.

`Database`, `Store` and `open_database` are loaded on first use: engine.store.direct, which a
read command uses without SQLAlchemy, lives in this package too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.store.db import Database, open_database
    from engine.store.store import Store

__all__ = ["Database", "Store", "open_database"]


def __getattr__(name: str) -> Any:
    if name in ("Database", "open_database"):
        from engine.store import db

        return getattr(db, name)
    if name == "Store":
        from engine.store.store import Store

        return Store
    raise AttributeError(f"module 'engine.store' has no attribute {name!r}")
