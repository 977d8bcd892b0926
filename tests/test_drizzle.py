"""The generated drizzle-orm schema with the npm packages: tsc --strict, typed reads equal PostgreSQL, push plans nothing.

drizzle-orm, drizzle-kit, @libsql/client, typescript and tsx are the pinned
versions of tests/node (installed with `npm ci`).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import apsw
import psycopg
import pytest
from psycopg.rows import dict_row

from pg2edge.config import TranslateConfig
from pg2edge.pipeline.sources.snapshot import run_snapshot
from pg2edge.translators.introspect import introspect
from pg2edge.translators.render import translate_schema
from tests.support import node
from tests.support.corpus import normalize

pytestmark = pytest.mark.slow

READ_TS = """
import { drizzle } from "drizzle-orm/libsql";
import { createClient } from "@libsql/client";
import { asc } from "drizzle-orm";
import * as schema from "./schema.ts";

const db = drizzle(createClient({ url: "file:" + process.argv[2] }), { schema });
const customers = await db.select().from(schema.customers).orderBy(asc(schema.customers.id));
const films = await db.select().from(schema.films).orderBy(asc(schema.films.id));
const rentals = await db.query.rentals.findMany({
  with: { customer: true }, orderBy: (r, { asc }) => [asc(r.id)], limit: 20 });
const details = await db.select().from(schema.rentalDetails).orderBy(asc(schema.rentalDetails.id)).limit(20);
// compile-time proof of the typed modes (tsc --strict fails if a mode is missing)
const active: boolean = customers[0].active;
const tags: string[] = films[0].tags;
const rating: "G" | "PG" | "PG-13" | "R" | "NC-17" | null = films[0].rating;
const status: "reserved" | "out" | "returned" | "lost" = rentals[0].status;
const first: string = rentals[0].customer.firstName;
console.log(JSON.stringify({ customers, films, rentals, details, checked: [active, tags, rating, status, first] }));
"""

READ_MS_TS = """
import { drizzle } from "drizzle-orm/libsql";
import { createClient } from "@libsql/client";
import { asc } from "drizzle-orm";
import * as schema from "./schema.ts";

const db = drizzle(createClient({ url: "file:" + process.argv[2] }), { schema });
const rows = await db.select().from(schema.customers).orderBy(asc(schema.customers.id));
const created: Date = rows[0].createdAt;
console.log(JSON.stringify(rows.map((r) => [r.id, r.createdAt instanceof Date, r.createdAt.getTime()]), null, 0));
"""

CONFIG_TS = """
import { defineConfig } from "drizzle-kit";
export default defineConfig({
  dialect: "sqlite",
  schema: "./schema.ts",
  dbCredentials: { url: "file:./replica.db" },
  tablesFilter: ["!_pg2edge_*"],
});
"""


def _pg_rows(dsn: str, sql: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return conn.execute(sql).fetchall()


def _js(value: Any) -> Any:
    """PostgreSQL's value as the JS value drizzle should give for pg2edge's storage."""
    if isinstance(value, Decimal):
        return str(value)  # numeric is exact text
    if isinstance(value, (dt.datetime, dt.date, dt.timedelta)):
        return normalize(value)
    return value


@pytest.fixture(scope="module")
def rental_app(rental_dsn: str, tmp_path_factory: pytest.TempPathFactory, run_cli_module: Any) -> Path:
    """A replica made by the snapshot and the schema.ts made by `translate schema --format drizzle`."""
    work = node.workdir(tmp_path_factory.mktemp("drizzle"))
    run_snapshot(dsn=rental_dsn, target=work / "replica.db", say=lambda _: None)
    out = run_cli_module("translate", "schema", "--source", rental_dsn, "--format", "drizzle",
                         "--output", str(work / "schema.ts"))
    assert out.returncode == 0, out.stderr
    (work / "read.ts").write_text(READ_TS)
    return work


@pytest.fixture(scope="module")
def run_cli_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import subprocess
    import sys

    from tests.conftest import _cli_env

    cwd = tmp_path_factory.mktemp("cli")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pg2edge", *args], capture_output=True, text=True,
                              timeout=300, env=_cli_env(), cwd=cwd, stdin=subprocess.DEVNULL)

    return run


def test_schema_has_the_typed_modes(rental_app: Path) -> None:
    text = (rental_app / "schema.ts").read_text()
    assert 'active: integer("active", { mode: "boolean" }).notNull()' in text
    assert 'tags: text("tags", { mode: "json" }).$type<(string)[]>().notNull()' in text
    assert 'details: text("details", { mode: "json" }).$type<Json>(),' in text
    assert 'rating: text("rating", { enum: ["G", "PG", "PG-13", "R", "NC-17"] }),' in text
    assert 'rentedAt: text("rented_at").notNull(),' in text  # timestamps = "iso": text
    assert "export const rentalsRelations = relations(rentals" in text
    assert 'customer: one(customers, { fields: [rentals.customerId], references: [customers.id]' in text
    assert 'foreignKey({ columns: [t.inventoryId], foreignColumns: [inventory.id] }).onDelete("cascade")' in text
    assert 'export const rentalDetails = sqliteView("rental_details", {' in text


def test_schema_type_checks_strict(rental_app: Path) -> None:
    out = node.typecheck(rental_app, "schema.ts", "read.ts")
    assert out.returncode == 0, out.stdout + out.stderr


def test_drizzle_reads_postgres_values(rental_app: Path, rental_dsn: str) -> None:
    out = node.run([node.tool("tsx"), "read.ts", rental_app / "replica.db"], rental_app)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["checked"][0] in (True, False)
    customers = _pg_rows(rental_dsn, "SELECT * FROM customers ORDER BY id")
    assert len(got["customers"]) == len(customers)
    for pg, js in zip(customers, got["customers"]):
        assert js["active"] is pg["active"]  # true/false, not 1/0
        assert js["firstName"] == pg["first_name"] and js["country"] == pg["country"]  # char(2) keeps padding
        assert js["createdAt"] == _js(pg["created_at"])
    films = _pg_rows(rental_dsn, "SELECT * FROM films ORDER BY id")
    for pg, js in zip(films, got["films"], strict=True):
        assert js["tags"] == pg["tags"] and isinstance(js["tags"], list)  # arrays as arrays
        assert js["details"] == pg["details"]  # jsonb as objects (or null)
        assert js["rating"] == pg["rating"] and js["rentalRate"] == _js(pg["rental_rate"])
        assert js["releaseDate"] == _js(pg["release_date"])
    rentals = _pg_rows(rental_dsn, """SELECT r.id, r.status, r.returned_at, c.first_name, c.active
                                      FROM rentals r JOIN customers c ON c.id = r.customer_id ORDER BY r.id LIMIT 20""")
    for pg, js in zip(rentals, got["rentals"], strict=True):
        assert (js["id"], js["status"], js["returnedAt"]) == (pg["id"], pg["status"], _js(pg["returned_at"]))
        assert js["customer"]["firstName"] == pg["first_name"] and js["customer"]["active"] is pg["active"]
    details = _pg_rows(rental_dsn, "SELECT id, kept, store_code FROM rental_details ORDER BY id LIMIT 20")
    for pg, js in zip(details, got["details"], strict=True):
        assert (js["id"], js["kept"], js["storeCode"]) == (pg["id"], _js(pg["kept"]), pg["store_code"])


def test_timestamp_mode_unix_ms_reads_dates(rental_dsn: str, tmp_path: Path) -> None:
    work = node.workdir(tmp_path / "ms")
    options = TranslateConfig(timestamps="unix_ms")
    run_snapshot(dsn=rental_dsn, target=work / "replica.db", tables=["stores", "customers"], options=options,
                 say=lambda _: None)
    with psycopg.connect(rental_dsn) as conn:
        schema = introspect(conn, tables=["stores", "customers"])
    from pg2edge.translators.drizzle import render_drizzle

    text = render_drizzle(schema, options=options)
    assert 'createdAt: integer("created_at", { mode: "timestamp_ms" }).notNull(),' in text
    (work / "schema.ts").write_text(text)
    (work / "read.ts").write_text(READ_MS_TS)
    checked = node.typecheck(work, "schema.ts", "read.ts")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    out = node.run([node.tool("tsx"), "read.ts", work / "replica.db"], work)
    assert out.returncode == 0, out.stderr
    pg = _pg_rows(rental_dsn, "SELECT id, created_at FROM customers ORDER BY id")
    got = json.loads(out.stdout)
    assert got == [[r["id"], True, int(r["created_at"].timestamp() * 1000)] for r in pg]


@pytest.mark.parametrize("which", ["rental", "shop"])
def test_drizzle_kit_push_plans_no_change(which: str, rental_dsn: str, shop_dsn: str, tmp_path: Path) -> None:
    dsn = rental_dsn if which == "rental" else shop_dsn
    work = node.workdir(tmp_path / which)
    made = translate_schema(dsn, target=work / "replica.db", output_format="drizzle")
    (work / "schema.ts").write_text(made.text)
    (work / "drizzle.config.ts").write_text(CONFIG_TS)
    checked = node.typecheck(work, "schema.ts")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    before = apsw.Connection(str(work / "replica.db")).execute(
        "SELECT type, name, sql FROM sqlite_schema ORDER BY name").fetchall()
    assert sum(1 for kind, _, _ in before if kind == "table") >= 6
    shutil.copy(work / "replica.db", work / "before.db")
    out = node.run([node.tool("drizzle-kit"), "push", "--verbose", "--strict=false"], work)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No changes detected" in out.stdout, out.stdout
    after = apsw.Connection(str(work / "replica.db")).execute(
        "SELECT type, name, sql FROM sqlite_schema ORDER BY name").fetchall()
    assert after == before
