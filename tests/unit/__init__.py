"""Unit tests: pure code and the CLI on SQLite files; no root, no lab, no network."""
