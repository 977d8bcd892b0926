"""parse_dump reads a real pg_dump --schema-only of the sample shop close to what introspect reads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import apsw
import psycopg
import pytest

from pg2edge.translators.ddl import apply_ddl, plan_ddl
from pg2edge.translators.introspect import introspect, parse_dump


def _pg_dump() -> str | None:
    for cand in (shutil.which("pg_dump"), "/usr/lib/postgresql/15/bin/pg_dump"):
        if cand and Path(cand).exists():
            return cand
    return None


def test_dump_of_the_shop_matches_the_catalog(shop_dsn: str, tmp_path: Any) -> None:
    binary = _pg_dump()
    if binary is None:
        pytest.skip("pg_dump is not installed")
    text = subprocess.run([binary, "--schema-only", "--no-owner", shop_dsn], capture_output=True, text=True,
                          check=True).stdout
    dumped = parse_dump(text)
    with psycopg.connect(shop_dsn, autocommit=True) as conn:
        live = introspect(conn)
    assert {t.qualified for t in dumped.tables} == {t.qualified for t in live.tables}
    for table in live.tables:
        mine = dumped.table(table.qualified)
        assert [c.name for c in mine.columns] == [c.name for c in table.columns]
        assert [c.type_name for c in mine.columns] == [c.type_name for c in table.columns], table.name
        assert mine.primary_key == table.primary_key
        assert {fk.ref_table for fk in mine.foreign_keys} == {fk.ref_table for fk in table.foreign_keys}
        assert {i.name for i in mine.indexes} == {i.name for i in table.indexes}
    db = apsw.Connection(str(tmp_path / "dump.db"))
    apply_ddl(db, plan_ddl(dumped))
    names = [n for (n,) in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
    assert len([n for n in names if not n.startswith("_pg2edge_")]) == 8
    assert names.count("_pg2edge_state") == 1  # the source types, recorded with the tables
