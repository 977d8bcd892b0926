"""Realistic schemas translate, execute in SQLite, and keep their data and FKs."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pg2edge.config import TranslateConfig
from pg2edge.translators.ddl import plan_ddl
from pg2edge.translators.introspect import introspect
from tests.support.copyloop import migrate

HOSTILE = r'''
CREATE SCHEMA "Sales Dept";
CREATE TABLE "order" ("group" int PRIMARY KEY, "Mixed Case" text, "with ""quote""" text, "ünï çødé" text,
                      "select" int CHECK ("select" >= 0));
CREATE TABLE "Sales Dept"."line items" ("id" bigserial PRIMARY KEY,
    "order" int REFERENCES "order"("group") ON DELETE CASCADE, "a b" numeric(8,2) CHECK ("a b" < 100));
CREATE INDEX "idx ""q""" ON "order" (lower("Mixed Case")) WHERE "select" > 0;
INSERT INTO "order" VALUES (1, 'x', 'y"z', 'é', 1), (2, NULL, NULL, NULL, 0);
INSERT INTO "Sales Dept"."line items" ("order", "a b") VALUES (1, 99.5), (2, 9.99), (1, 10);
'''

REALISTIC = r"""
CREATE TYPE status AS ENUM ('new', 'paid', 'void');
CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
CREATE DOMAIN money2 AS numeric(12,2) NOT NULL CHECK (VALUE >= 0);
CREATE SEQUENCE shared_ids;  -- not OWNED BY anything
CREATE TABLE customers (id bigint PRIMARY KEY DEFAULT nextval('shared_ids'), mail email UNIQUE,
                        created timestamptz NOT NULL DEFAULT now(), active boolean DEFAULT true);
CREATE TABLE events (id int GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, customer bigint
                       REFERENCES customers ON DELETE SET NULL ON UPDATE CASCADE, kind status NOT NULL DEFAULT 'new',
                     amount money2, body jsonb DEFAULT '{}'::jsonb, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE INDEX events_paid ON events (customer) WHERE kind = 'paid';
CREATE INDEX customers_mail_lower ON customers (lower(mail::text));
CREATE INDEX customers_body_gin ON events USING gin (body);
CREATE TABLE notes (id serial PRIMARY KEY, customer bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
                    parent int REFERENCES notes ON DELETE RESTRICT, text text CHECK (length(text) < 500));
INSERT INTO customers (mail) SELECT 'u' || g || '@x.io' FROM generate_series(1, 50) g;
INSERT INTO events (at, customer, kind, amount, body)
  SELECT '2023-06-01'::timestamptz + g * interval '5 days', (SELECT min(id) FROM customers) + g % 50,
         (ARRAY['new','paid','void'])[1 + g % 3]::status, g * 1.25, jsonb_build_object('g', g)
  FROM generate_series(1, 100) g;
INSERT INTO notes (customer, parent, text) VALUES (1, NULL, 'root'), (2, 1, 'child');
"""


def _run(dsn: str, ddl: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ddl)


def test_hostile_identifiers_ddl_runs_and_data_lands(pg_dsn: str, sqlite_path: Any) -> None:
    _run(pg_dsn, HOSTILE)
    schema, db, _ = migrate(pg_dsn, sqlite_path, schemas=("public", "Sales Dept"))
    assert db.execute('SELECT "group", "Mixed Case", "with ""quote""", "ünï çødé" FROM "order" ORDER BY 1'
                      ).fetchall() == [(1, "x", 'y"z', "é"), (2, None, None, None)]
    assert db.execute('SELECT "order", "a b" FROM "Sales Dept_line items" ORDER BY id').fetchall() == [
        (1, "99.50"), (2, "9.99"), (1, "10.00")]
    db.execute("PRAGMA foreign_keys = ON")
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    # the numeric CHECK compares as a number (text '99.50' < 100), the expression index exists
    with pytest.raises(Exception, match="CHECK"):
        db.execute('INSERT INTO "Sales Dept_line items" ("order", "a b") VALUES (1, \'100.00\')')
    assert db.execute("SELECT name FROM sqlite_schema WHERE type = 'index' AND name = 'idx \"q\"'").fetchall()
    db.execute('DELETE FROM "order" WHERE "group" = 1')
    assert db.execute('SELECT count(*) FROM "Sales Dept_line items"').fetchall() == [(1,)]


def test_realistic_schema(pg_dsn: str, sqlite_path: Any) -> None:
    _run(pg_dsn, REALISTIC)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        schema = introspect(conn)
    events = schema.table("events")
    assert events.partitioned and events.partitions == ("public.events_2023", "public.events_2024")
    assert [t.name for t in schema.tables] == ["customers", "events", "notes"]
    assert schema.table("customers").sequences == ("public.shared_ids",)
    assert schema.table("customers").column("mail").domain.name == "email"
    assert events.column("kind").enum_labels == ("new", "paid", "void")
    plan = plan_ddl(schema, options=TranslateConfig())
    sql = plan.sql
    assert 'CHECK /* pg2edge */ ("kind" IN (\'new\', \'paid\', \'void\'))' in sql
    assert "ON DELETE SET NULL ON UPDATE CASCADE" in sql and "ON DELETE RESTRICT" in sql
    assert 'CREATE INDEX "events_paid" ON "events" ("customer") WHERE (kind = \'paid\')' in sql
    assert 'CREATE INDEX "customers_mail_lower" ON "customers" ((LOWER(mail)))' in sql
    assert any(f.code == "index-method" and "customers_body_gin" in f.object for f in plan.findings)
    assert "GLOB '*@*'" in sql and '"amount" TEXT NOT NULL' in sql
    _, db, codecs = migrate(pg_dsn, sqlite_path)
    db.execute("PRAGMA foreign_keys = ON")
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert db.execute("SELECT count(*), sum(CAST(amount AS REAL)) FROM events").fetchall() == [(100, 6312.5)]
    assert not any(c.findings for c in codecs.values())
    # defaults and constraints work on the replica
    db.execute("INSERT INTO customers (id, mail) VALUES (1000, 'z@z')")
    assert db.execute("SELECT active, datetime(created) IS NOT NULL FROM customers WHERE id = 1000"
                      ).fetchall() == [(1, 1)]
    with pytest.raises(Exception, match="CHECK"):
        db.execute("INSERT INTO customers (id, mail) VALUES (1001, 'no-at')")


def test_sample_shop(shop_dsn: str, sqlite_path: Any) -> None:
    schema, db, codecs = migrate(shop_dsn, sqlite_path)
    assert {t.name for t in schema.tables} == {"categories", "products", "blog_posts", "user_preferences",
                                               "sessions", "orders", "inventory", "audit_logs"}
    assert not schema.views  # extension views (pg_stat_statements) are not ours
    db.execute("PRAGMA foreign_keys = ON")
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    with psycopg.connect(shop_dsn) as conn:
        for table in schema.tables:
            pg = conn.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
            assert db.execute(f'SELECT count(*) FROM "{table.name}"').fetchall() == [(pg,)]


def test_foreign_keys_drop_and_strict_tables(pg_dsn: str, sqlite_path: Any) -> None:
    _run(pg_dsn, REALISTIC)
    options = TranslateConfig(foreign_keys="drop", strict_tables=True)
    schema, db, _ = migrate(pg_dsn, sqlite_path, options=options)
    sql = plan_ddl(schema, options=options).sql
    assert "FOREIGN KEY" not in sql and sql.count(") STRICT") == 3
    assert db.execute("SELECT count(*) FROM notes").fetchall() == [(2,)]
