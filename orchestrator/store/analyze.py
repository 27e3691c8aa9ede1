"""Fresh query-planner statistics after a bulk write on PostgreSQL.

PostgreSQL plans each query from its tables' statistics, which autovacuum refreshes up to a minute
after many rows change. In that minute the queries behind `status` were planned as if the tables
were nearly empty: right after `plan` on 50,003 hosts, `status` took 2.5 s instead of 0.85 s. The
writer that just added thousands of rows knows it, so it refreshes them in its own transaction (the
new figures commit with the rows, and count them). SQLite is left alone: its readers are written for
a database without statistics (`reporting/sqlite_read.py` steers its plans by hand).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlmodel import Session

# Fewer rows than this cannot mislead a plan much, and ANALYZE's own cost (about 0.1 s per table of
# 50,000 rows) would be felt on every small write.
BULK_ROWS = 1_000


def after_bulk_write(session: Session, tables: Iterable[str], rows: int) -> None:
    """ANALYZE `tables` (our own table names, never input) when `rows` were just written to them."""
    if rows < BULK_ROWS or session.get_bind().dialect.name != "postgresql":
        return
    for table in tables:
        session.execute(text(f'ANALYZE "{table}"'))
