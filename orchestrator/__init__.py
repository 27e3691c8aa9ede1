"""Endpoint recovery orchestrator: bring a fleet back after ransomware, host by host, wave after wave."""

__version__ = "0.1.0"
