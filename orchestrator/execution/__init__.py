"""Execution: the approved plan through ansible-runner, containment first, then the waves' stage runs
(overlapping across waves within the capacity)."""

# The command line shows this default without importing the engine (and the database layer under it).
DEFAULT_EVIDENCE_PATH = "/srv/evidence"
