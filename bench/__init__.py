"""Suture's benchmark: `python -m bench [ingest|latency|storm|footprint|all] [--json] [--quick]`.

Starts the real `suture serve` on SQLite in a temporary directory, drives it from a separate
client process over loopback, reads the outcome back from the database and reports each
figure against its target. Nothing here is imported by the engine or by the tests.
"""
