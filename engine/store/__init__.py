"""The only package that speaks SQL. It returns plain dicts and domain values, never ORM rows."""

from engine.store.db import Database, open_database
from engine.store.store import Store

__all__ = ["Database", "Store", "open_database"]
