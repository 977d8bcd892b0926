"""`pg2edge translate schema|query` as a real process."""

from __future__ import annotations

import json
from typing import Any

import apsw


def test_schema_sql_target_and_dry_run(shop_dsn: str, run_cli: Any, tmp_path: Any) -> None:
    out = run_cli("translate", "schema", "--source", shop_dsn, "--tables", "categories,products")
    assert out.returncode == 0, out.stderr
    assert out.stdout.index('CREATE TABLE "categories"') < out.stdout.index('CREATE TABLE "products"')
    assert "orders" not in out.stdout
    target = tmp_path / "r.db"
    dry = run_cli("translate", "schema", "--source", shop_dsn, "--target", str(target), "--dry-run")
    assert dry.returncode == 0 and not target.exists()
    done = run_cli("translate", "schema", "--source", shop_dsn, "--target", str(target))
    assert done.returncode == 0, done.stderr
    names = {r[0] for r in apsw.Connection(str(target)).execute("SELECT name FROM sqlite_schema WHERE type='table'")}
    assert {"orders", "products", "audit_logs"} <= names


def test_schema_drizzle_and_json(shop_dsn: str, run_cli: Any) -> None:
    ts = run_cli("translate", "schema", "--source", shop_dsn, "--format", "drizzle")
    assert ts.returncode == 0, ts.stderr
    assert 'from "drizzle-orm/sqlite-core"' in ts.stdout
    assert 'export const products = sqliteTable("products"' in ts.stdout
    assert 'categoryId: integer("category_id").notNull(),' in ts.stdout
    assert "foreignKey({ columns: [t.categoryId], foreignColumns: [categories.id] })" in ts.stdout
    doc = json.loads(run_cli("translate", "schema", "--source", shop_dsn, "--format", "json").stdout)
    assert {t["name"] for t in doc["tables"]} >= {"orders"} and doc["statements"]


def test_schema_errors_and_query(pg_dsn: str, run_cli: Any) -> None:
    bad = run_cli("translate", "schema", "--source", "postgresql://nobody:secret@127.0.0.1:1/x")
    assert bad.returncode == 2 and "secret" not in bad.stderr
    query = run_cli("translate", "query", "SELECT now()")
    assert query.returncode == 0 and "CURRENT_TIMESTAMP" in query.stdout
    strict = run_cli("translate", "query", "--strict", "SELECT * FROM t WHERE a ~* 'x'")
    assert strict.returncode == 1


def test_translate_query_reads_column_types_from_the_source(pg_dsn: str, run_cli) -> None:
    from pg2edge import sample

    sample.install(pg_dsn)
    sql = "SELECT name FROM products ORDER BY price DESC LIMIT 3"
    plain = run_cli("translate", "query", sql)
    typed = run_cli("translate", "query", "--source", pg_dsn, sql)
    assert plain.returncode == 0 and typed.returncode == 0, plain.stderr + typed.stderr
    assert "CAST(price AS REAL)" not in plain.stdout
    assert "CAST(price AS REAL)" in typed.stdout
