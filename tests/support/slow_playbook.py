"""A code whose playbook sleeps in an idempotent SSH step: runs to kill a daemon in the middle of."""

SLOW_CODES = """
- code: SLOW-002
  title: Slow and safe to repeat
  severity: low
  match: {alertname: SlowIdempotent}
  target: "{{ labels.instance }}"
  playbook: slow-idempotent
  mode: auto
"""
SLOW_IDEMPOTENT = """
name: slow-idempotent
version: 1
idempotent: true
timeout: 120s
steps:
  - name: long sleep
    ssh: {command: "sleep 60"}
    timeout: 90s
"""
