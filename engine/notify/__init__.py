"""Notifications and escalation: channels, routing, a stored outbox and its sender, deadlines."""
