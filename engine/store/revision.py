"""The schema revision this version of Suture reads and writes, known without alembic."""

#: The newest migration in engine/migrations/versions (a unit test keeps the two in step).
HEAD_REVISION = "0009"
