"""The only package that speaks SQL. Its reads return the frozen records of engine.records, never ORM rows."""

from engine.store.db import Database, open_database
from engine.store.store import Store

__all__ = ["Database", "Store", "open_database"]
