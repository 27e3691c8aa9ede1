"""Execution: the approved plan, wave by wave and stage by stage, through ansible-runner."""

# The command line shows this default without importing the engine (and the database layer under it).
DEFAULT_EVIDENCE_PATH = "/srv/evidence"
