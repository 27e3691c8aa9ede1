"""Data files the orchestrator ships with (defaults an operator can copy and override)."""
