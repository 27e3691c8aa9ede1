"""Read-only views of the recovery for people: fleet status, one host's timeline, reports.

Everything here only reads the state database (through `Store.read()`, so it runs beside a wave
that is writing) and never holds a secret, because the database holds none.
"""
