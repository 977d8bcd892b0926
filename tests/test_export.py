"""Edge exports: the Turso file and the D1 script reproduce the replica's user tables exactly."""

from __future__ import annotations

import math
from pathlib import Path

import apsw
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pg2edge.pipeline import state
from pg2edge.pipeline.exports import D1_STATEMENT_LIMIT, ExportError, RowTooLargeError, export_d1, export_turso
from pg2edge.pipeline.exports.literals import sql_literal

USER_TABLES = ["categories", "products", "tags", "notes"]


def build_replica(path: Path, *, big_row: bool = False) -> None:
    db = apsw.Connection(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    # children created before parents in the schema so FK order must come from foreign_key_list
    db.execute("""
        CREATE TABLE tags (product_id INTEGER NOT NULL REFERENCES products(id), tag TEXT NOT NULL,
                           PRIMARY KEY (product_id, tag)) WITHOUT ROWID;
        CREATE TABLE products (id INTEGER PRIMARY KEY, category_id INTEGER REFERENCES categories(id),
                               name TEXT NOT NULL, price REAL, image BLOB, total REAL GENERATED ALWAYS AS (price * 2));
        CREATE TABLE categories (id INTEGER PRIMARY KEY, "weird ""name"" col" TEXT, parent_id INTEGER);
        CREATE TABLE notes (body TEXT);
        CREATE INDEX products_name ON products(name);
        CREATE VIEW cheap AS SELECT id FROM products WHERE price < 10;
        CREATE TRIGGER notes_upper AFTER INSERT ON notes BEGIN UPDATE notes SET body = upper(body) WHERE rowid = new.rowid; END;
    """)
    with db:
        db.executemany("INSERT INTO categories VALUES (?, ?, ?)",
                       [(1, "Bücher 📚", None), (2, "it's \"quoted\"; -- not a comment", 1), (3, None, 2),
                        (4, "line\nbreak\r\nand\ttab", None), (5, "nul\x00inside", None)])
        rows = [(i, 1 + i % 4, f"product {i} ' ;", [1.5, 0.1, 1e300, -0.0, math.inf, 3.0][i % 6],
                 bytes(range(i % 256)) if i % 3 else None) for i in range(1, 400)]
        # bulk rows: a few ~30 KB texts so several INSERT statements are needed (one batch over the limit)
        rows += [(1000 + i, 2, "x" * 30_000 + str(i), None, b"\x00\xff" * 10) for i in range(8)]
        if big_row:
            rows.append((5000, 2, "y" * (D1_STATEMENT_LIMIT + 10), None, None))
        else:  # just under the limit on its own
            rows.append((5000, 2, "y" * (D1_STATEMENT_LIMIT - 200), None, None))
        db.executemany("INSERT INTO products (id, category_id, name, price, image) VALUES (?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO tags VALUES (?, ?)", [(i, t) for i in range(1, 50) for t in ("a", "é")])
        db.executemany("INSERT INTO notes VALUES (?)", [("x",), (None,), ("-- y",)])
        state.ensure_state_table(db)
        state.write_record(db, "position", "applied", {"commit_lsn": 1})
        db.execute('CREATE TABLE "_pg2edge_dlq" (id INTEGER PRIMARY KEY, payload TEXT)')
    db.close()


def dump(path: Path, tables: list[str]) -> dict[str, list[tuple]]:
    db = apsw.Connection(str(path))
    try:
        out = {}
        for t in tables:
            rows = db.execute(f'SELECT * FROM "{t}"').fetchall()
            out[t] = sorted(rows, key=lambda r: repr(r))
        return out
    finally:
        db.close()


def names(path: Path) -> set[str]:
    db = apsw.Connection(str(path))
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_schema")}
    finally:
        db.close()


@pytest.fixture
def replica(tmp_path: Path) -> Path:
    path = tmp_path / "replica.db"
    build_replica(path)
    return path


def test_turso_export_is_clean_copy(replica: Path, tmp_path: Path) -> None:
    out = tmp_path / "turso.db"
    result = export_turso(replica, out)
    assert dump(out, USER_TABLES) == dump(replica, USER_TABLES)
    assert not any(n.startswith("_pg2edge_") for n in names(out))
    assert {"products_name", "cheap", "notes_upper"} <= names(out)
    assert result.excluded == ["_pg2edge_dlq", "_pg2edge_state"]
    db = apsw.Connection(str(out))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert not list(tmp_path.glob(".turso.db*"))  # no temp file left
    with pytest.raises(ExportError, match="already exists"):
        export_turso(replica, out)
    export_turso(replica, out, overwrite=True)


def split_statements(script: str) -> list[str]:
    """Split with SQLite's own tokenizer (apsw.complete), the way wrangler's splitter treats quotes."""
    statements, current = [], ""
    for line in script.split("\n"):
        line += "\n"
        current += line
        if apsw.complete(current):
            statements.append(current.strip())
            current = ""
    assert not current.strip(), current[:200]
    return statements


def test_d1_export_reproduces_data(replica: Path, tmp_path: Path) -> None:
    out = tmp_path / "d1.sql"
    result = export_d1(replica, out)
    script = out.read_bytes().decode("utf-8")
    statements = split_statements(script)
    assert len(statements) == result.statements
    fresh = apsw.Connection(str(tmp_path / "fresh.db"))
    fresh.execute("PRAGMA foreign_keys=ON")  # parents-first order: every statement passes the FK check
    inserts = 0
    for stmt in statements:
        body = "\n".join(line for line in stmt.splitlines() if not line.startswith("-- pg2edge"))
        assert len(stmt.encode()) < D1_STATEMENT_LIMIT
        head = body.lstrip().upper()
        assert not head.startswith(("BEGIN", "COMMIT", "END", "ROLLBACK", "PRAGMA FOREIGN_KEYS"))
        inserts += head.startswith("INSERT INTO \"PRODUCTS\"")
        fresh.execute(body)
    fresh.close()
    assert inserts >= 2  # the 30 KB rows forced a split
    assert dump(tmp_path / "fresh.db", USER_TABLES) == dump(replica, USER_TABLES)
    assert not any(n.startswith("_pg2edge_") for n in names(tmp_path / "fresh.db"))
    assert {"products_name", "cheap", "notes_upper"} <= names(tmp_path / "fresh.db")
    assert "_pg2edge_" not in script
    assert result.largest_statement < D1_STATEMENT_LIMIT
    order = [t for t in result.tables]
    assert order.index("categories") < order.index("products") < order.index("tags")


def test_d1_export_refuses_a_row_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    build_replica(path, big_row=True)
    with pytest.raises(RowTooLargeError, match=r"table products: the row with id=5000"):
        export_d1(path, tmp_path / "d1.sql")
    assert not (tmp_path / "d1.sql").exists()
    assert not list(tmp_path.glob(".d1.sql*"))


@pytest.mark.parametrize("value", [None, 0, -1, 2**63 - 1, 1.5, 0.1, 1e-300, 1e300, -0.0, math.inf, -math.inf,
                                   "", "'", "a''b", "cr\r\nlf", "é📚", "nul\x00x", b"", b"\x00\x01\xff"])
def test_literals_round_trip(value: object) -> None:
    db = apsw.Connection(":memory:")
    got, kind = db.execute(f"SELECT {sql_literal(value)}, typeof({sql_literal(value)})").fetchone()
    expected_kind = {type(None): "null", int: "integer", float: "real", str: "text", bytes: "blob"}[type(value)]
    assert (got, kind) == (value, expected_kind)
    if isinstance(value, float):
        assert math.copysign(1, got) == math.copysign(1, value)


def test_export_of_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="nope.db does not exist"):
        export_d1(tmp_path / "nope.db", tmp_path / "x.sql")


def test_export_cli_writes_both_formats(replica: Path, tmp_path: Path, run_cli) -> None:
    done = run_cli("export", "--target", str(replica), "--format", "turso", "--output", str(tmp_path / "t.db"))
    assert done.returncode == 0, done.stderr
    assert "4 tables" in done.stdout and "_pg2edge_state" in done.stdout
    assert dump(tmp_path / "t.db", USER_TABLES) == dump(replica, USER_TABLES)
    done = run_cli("export", "--target", str(replica), "--format", "d1", "--output", str(tmp_path / "d.sql"))
    assert done.returncode == 0, done.stderr
    assert "statements" in done.stdout and (tmp_path / "d.sql").stat().st_size > 100_000
    again = run_cli("export", "--target", str(replica), "--format", "d1", "--output", str(tmp_path / "d.sql"))
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                 st.floats(allow_nan=False), st.text(), st.binary()))
def test_literals_round_trip_any_value(value: object) -> None:
    db = apsw.Connection(":memory:")
    assert db.execute(f"SELECT {sql_literal(value)}").fetchone()[0] == value


def test_d1_refuses_names_d1_reserves(tmp_path: Path) -> None:
    path = tmp_path / "cf.db"
    db = apsw.Connection(str(path))
    db.execute("CREATE TABLE _cf_things (id INTEGER PRIMARY KEY)")
    db.close()
    with pytest.raises(ExportError, match="_cf_things"):
        export_d1(path, tmp_path / "x.sql")
