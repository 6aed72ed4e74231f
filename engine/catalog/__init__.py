"""Codes and playbooks: load, classify alerts against them, check them statically."""
