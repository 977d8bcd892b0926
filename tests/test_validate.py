"""pg2edge validate end to end: real PostgreSQL, a replica made by the sync daemon, real SQLite corruption."""

from __future__ import annotations

import json
import threading
from typing import Any

import apsw
import psycopg
import pytest

from pg2edge import sample
from pg2edge.pipeline import state
from pg2edge.pipeline.daemon import run_sync
from pg2edge.validators import render, validate
from tests.support.writeload import WriteLoad


def _quiet(_: str) -> None:
    pass


@pytest.fixture
def shop_replica(pg_dsn: str, sqlite_path: Any) -> tuple[str, Any]:
    sample.install(pg_dsn, reset=False)
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    return pg_dsn, sqlite_path


def _corrupt(path: Any) -> dict[tuple[str, str], tuple[str, Any]]:
    """Delete 3 rows, change 2 values (numeric, jsonb), insert 1 extra row; returns (table, key) -> (kind, detail)."""
    db = apsw.Connection(str(path))
    orders = [r[0] for r in db.execute("SELECT id FROM orders ORDER BY id LIMIT 3")]
    products = [r[0] for r in db.execute("SELECT id FROM products ORDER BY id LIMIT 2")]
    cats = [r[0] for r in db.execute("SELECT id FROM categories ORDER BY id DESC LIMIT 1")]
    (price,) = db.execute("SELECT price FROM products WHERE id = ?", (products[0],)).fetchone()
    (attrs,) = db.execute("SELECT attributes FROM products WHERE id = ?", (products[1],)).fetchone()
    new_attrs = json.dumps({**json.loads(attrs), "color": "mauve"})
    extra = db.execute("SELECT max(id) + 1000 FROM orders").fetchone()[0]
    with db:
        db.execute("DELETE FROM orders WHERE id IN (?, ?)", orders[:2])
        db.execute("DELETE FROM categories WHERE id = ?", cats)
        db.execute("UPDATE products SET price = ? WHERE id = ?", ("123456.78", products[0]))
        db.execute("UPDATE products SET attributes = ? WHERE id = ?", (new_attrs, products[1]))
        db.execute("INSERT INTO orders SELECT ?, user_id, product_id, quantity, total, status, created_at "
                   "FROM orders WHERE id = ?", (extra, orders[2]))
    db.close()
    return {("public.orders", str(orders[0])): ("missing", None), ("public.orders", str(orders[1])): ("missing", None),
            ("public.categories", str(cats[0])): ("missing", None),
            ("public.products", products[0]): ("changed", {"root['price']": {"source": price, "replica": "123456.78"}}),
            ("public.products", products[1]): ("changed", {"root['attributes']": {"source": attrs,
                                                                                   "replica": new_attrs}}),
            ("public.orders", str(extra)): ("extra", None)}


def _found(report: dict[str, Any]) -> dict[tuple[str, str], tuple[str, Any]]:
    out = {}
    for table in report["tables"]:
        for m in table["mismatches"]:
            (key,) = m["key"].values()
            out[(table["table"], str(key))] = (m["kind"], m["diff"] or None)
    return out


def test_full_mode_finds_exactly_the_corrupted_keys_and_repair_fixes_them(shop_replica: Any, run_cli: Any) -> None:
    dsn, path = shop_replica
    expected = _corrupt(path)
    proc = run_cli("validate", "--source", dsn, "--target", str(path), "--mode", "full", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["mode"] == "full" and report["clean"] is False and report["lsn"].count("/") == 1
    assert _found(report) == expected
    by_table = {t["table"]: t for t in report["tables"]}
    assert by_table["public.orders"]["replica_rows"] == by_table["public.orders"]["source_rows"] - 1
    assert by_table["public.products"]["checked"] == by_table["public.products"]["source_rows"] > 0

    proc = run_cli("validate", "--source", dsn, "--target", str(path), "--repair", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    repaired = {t["table"]: t["repaired"] for t in json.loads(proc.stdout)["tables"] if t["repaired"]}
    assert repaired == {"public.orders": 3, "public.categories": 1, "public.products": 2}

    proc = run_cli("validate", "--source", dsn, "--target", str(path), "--format", "markdown")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "clean" in proc.stdout and "| public.orders |" in proc.stdout
    db = apsw.Connection(str(path))
    last = state.read_record(db, "validation", "last")
    assert last["clean"] is True and last["mode"] == "full" and last["lsn"].count("/") == 1
    applied = state.read_position(db)
    db.close()
    assert applied is not None


def test_sample_and_count_modes(shop_replica: Any) -> None:
    dsn, path = shop_replica
    report = validate(dsn, path, mode="sample", sample_size=50)
    assert report.clean, render(report, "json")
    products = next(t for t in report.tables if t.table == "public.products")
    assert 0 < products.checked <= 50
    db = apsw.Connection(str(path))
    key = db.execute("SELECT id FROM products LIMIT 1").fetchone()[0]
    with db:
        db.execute("UPDATE products SET price = '0.01' WHERE id = ?", (key,))
    db.close()
    report = validate(dsn, path, mode="sample", sample_size=100000, tables="products")
    (table,) = report.tables
    assert [m.kind for m in table.mismatches] == ["changed"]
    assert list(table.mismatches[0].diff) == ["root['price']"]
    assert "root['price']: " in render(report, "table")
    counted = validate(dsn, path, mode="count")
    assert counted.clean and all(t.source_rows == t.replica_rows for t in counted.tables)


def test_correct_replica_under_concurrent_writes_is_clean(pg_dsn: str, sqlite_path: Any) -> None:
    # no pause between commits: the replica is read at or after the source's LSN, so its count is
    # usually ahead of the source snapshot's, and every mode must still settle to clean
    load = WriteLoad(pg_dsn, pause=0)
    load.create_table()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO load (id, val) SELECT g, 'v' || g FROM generate_series(1, 3000) g")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    stop = threading.Event()
    daemon = threading.Thread(target=run_sync, kwargs=dict(dsn=pg_dsn, target=sqlite_path, stop=stop, say=_quiet))
    daemon.start()
    load.start()
    try:
        reports = [validate(pg_dsn, sqlite_path, mode=mode, timeout=30)
                   for mode in ("full", "sample", "count", "full", "sample", "count")]
    finally:
        commits = load.stop()
        stop.set()
        daemon.join(timeout=30)
    assert commits > 0
    for report in reports:
        assert report.clean, render(report, "json")
        assert all(t.checked > 0 for t in report.tables if report.mode != "count")


def test_replica_behind_without_sync_is_an_error_naming_both_lsns(pg_dsn: str, sqlite_path: Any, run_cli: Any) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t VALUES (1, 'a')")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    idle = validate(pg_dsn, sqlite_path, timeout=5)  # no daemon, nothing pending: the idle slot proves it
    assert idle.clean and idle.replica_reached in ("applied", "idle")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (2, 'b')")
    proc = run_cli("validate", "--source", pg_dsn, "--target", str(sqlite_path), "--timeout", "1")
    assert proc.returncode == 2
    assert "not the validation LSN" in proc.stderr and "1 published row change(s)" in proc.stderr
    assert proc.stderr.count("/") >= 2
