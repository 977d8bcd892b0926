"""Read-your-writes waits on a D1 replica, with the D1 Sessions API bookmark.

(``pg2edge status`` needs nothing D1-specific: ``pipeline.status`` reads the
state records through the connection ``pipeline.remote.connect`` gives for a
``d1+`` URL, a :class:`D1Connection`.)

Read-your-writes across D1's read replicas: after a commit on PostgreSQL take
``pg_current_wal_lsn()`` and call :func:`wait_for_lsn` (``pg2edge wait``). It
reads the position on D1's primary (Sessions API constraint ``first-primary``)
and returns, once the LSN is applied, the D1 *bookmark* of that read. An
application that opens ``env.DB.withSession(bookmark)`` then reads a D1
replica at least as fresh as that LSN: the PostgreSQL LSN is the token across
the two databases, the bookmark is the same token inside D1.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pg2edge.pipeline import state
from pg2edge.pipeline.d1.client import connect
from pg2edge.pipeline.lsn import format_lsn, parse_lsn
from pg2edge.pipeline.remote.url import RemoteTarget
from pg2edge.pipeline.status import WaitTimeout


@dataclass(frozen=True, slots=True)
class D1Reached:
    position: state.Position
    bookmark: str | None  # D1 Sessions API: env.DB.withSession(bookmark) reads at least this fresh


def wait_for_lsn(target: str | RemoteTarget, lsn: str | int, *, timeout: float = 30.0, poll: float = 0.05,
                 config_token: str | None = None) -> D1Reached:
    """Block until D1 (its primary) has applied everything up to ``lsn``; returns the position and bookmark."""
    wanted = parse_lsn(lsn) if isinstance(lsn, str) else lsn
    deadline = time.monotonic() + timeout
    conn = connect(target, config_token=config_token)
    try:
        while True:
            rows = conn.client.query(f"SELECT value FROM {state.STATE_TABLE} WHERE scope = 'position' "
                                     "AND name = 'applied'", bookmark="first-primary")
            pos = state.Position(**json.loads(rows.rows[0][0])) if rows.rows else None
            if pos is not None and pos.visible_lsn >= wanted:
                return D1Reached(position=pos, bookmark=rows.bookmark)
            if time.monotonic() >= deadline:
                seen = format_lsn(pos.visible_lsn) if pos else "nothing"
                raise WaitTimeout(f"replica {conn.label} reached {seen}, not {format_lsn(wanted)}, within "
                                  f"{timeout:g} s (is `pg2edge sync` running?)")
            time.sleep(poll)
    finally:
        conn.close()
