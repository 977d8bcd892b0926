"""Top queries per table from pg_stat_statements, when the extension is installed.

A query is attributed to every table whose name appears after FROM, JOIN,
UPDATE, INTO or DELETE FROM in its normalized text (optionally schema
qualified and quoted). This heuristic ignores views and functions.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import psycopg

from pg2edge.analyzers.model import TopQuery

TOP_PER_TABLE = 3
MAX_STATEMENTS = 2000
_REF = re.compile(r'\b(?:from|join|update|into)\s+((?:"[^"]+"|[\w$]+)(?:\s*\.\s*(?:"[^"]+"|[\w$]+))?)',
                  re.IGNORECASE)


def _names(query: str) -> set[str]:
    out = set()
    for match in _REF.finditer(query):
        parts = [p.strip().strip('"') for p in match.group(1).split(".")]
        out.add(parts[-1] if len(parts) == 1 else f"{parts[0]}.{parts[1]}")
        out.add(parts[-1])
    return out


def top_queries(conn: psycopg.Connection[Any], tables: list[tuple[str, str]]) -> tuple[dict[str, list[TopQuery]], str | None]:
    """(qualified table -> top queries, note). The note explains an absence; never raises for it."""
    installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
    if not installed:
        return {}, "pg_stat_statements is not installed in this database: top queries per table are not shown"
    try:
        with conn.transaction():
            rows = conn.execute(
                "SELECT query, calls, mean_exec_time FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "ORDER BY calls DESC LIMIT %s", (MAX_STATEMENTS,)).fetchall()
    except (psycopg.errors.ObjectNotInPrerequisiteState, psycopg.errors.InsufficientPrivilege) as exc:
        return {}, f"pg_stat_statements is installed but unreadable ({type(exc).__name__}): top queries not shown"
    wanted = {name: f"{schema}.{name}" for schema, name in tables}
    wanted.update({f"{schema}.{name}": f"{schema}.{name}" for schema, name in tables})
    found: dict[str, list[TopQuery]] = defaultdict(list)
    for query, calls, mean in rows:
        if query is None or query.startswith("<insufficient privilege>"):
            continue
        for name in _names(query):
            qualified = wanted.get(name)
            if qualified and len(found[qualified]) < TOP_PER_TABLE and \
                    all(q.query != query for q in found[qualified]):
                found[qualified].append(TopQuery(" ".join(query.split())[:300], int(calls), float(mean)))
    return dict(found), None
