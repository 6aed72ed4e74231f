"""The keys every step record the runner hands to its `record` callback must carry (the columns
of `step_results`), checked by the runner tests of both tiers."""

RECORD_KEYS = {
    "seq",
    "name",
    "phase",
    "action",
    "status",
    "params",
    "exit_code",
    "http_status",
    "stdout",
    "stderr",
    "error",
    "started_at",
    "duration_ms",
    "attempt",
}
