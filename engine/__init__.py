"""Suture: event-driven auto-remediation engine."""

__version__ = "0.1.0"
