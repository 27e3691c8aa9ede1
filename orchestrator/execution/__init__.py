"""Execution: the approved plan, wave by wave and stage by stage, through ansible-runner."""
