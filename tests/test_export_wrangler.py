"""The D1 script loads with the real ``wrangler d1 execute --local`` (wrangler 4.86.0 pinned in tests/node,
its bundled workerd, offline)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import apsw
import pytest

from pg2edge.pipeline.exports import export_d1
from tests.support.d1 import wrangler_binary, wrangler_env
from tests.test_export import USER_TABLES, build_replica

pytestmark = pytest.mark.slow

WRANGLER_TOML = """name = "pg2edge-export-test"
compatibility_date = "2024-01-01"

[[d1_databases]]
binding = "DB"
database_name = "pg2edge-export-test"
database_id = "00000000-0000-0000-0000-000000000000"
"""


def wrangler() -> Path:
    """The pinned wrangler 4.86.0 of tests/node (``npm ci`` in .ci/run); nothing is installed at test time."""
    binary = wrangler_binary()
    if binary is None:
        pytest.skip("wrangler is not installed: cd tests/node && npm ci")
    return binary


def run_wrangler(binary: Path, cwd: Path, *args: str) -> str:
    proc = subprocess.run([str(binary), "d1", "execute", "DB", "--local", "--persist-to", str(cwd / "state"), *args],
                          cwd=cwd, env=wrangler_env(cwd), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def query(binary: Path, cwd: Path, sql: str) -> list[dict[str, object]]:
    out = run_wrangler(binary, cwd, "--command", sql, "--json")
    return json.loads(out[out.index("["):])[0]["results"]


def test_wrangler_loads_the_d1_export(tmp_path: Path) -> None:
    binary = wrangler()
    replica = tmp_path / "replica.db"
    build_replica(replica)
    db = apsw.Connection(str(replica))
    with db:  # a self-referencing table: its rows need deferred foreign-key checks
        db.execute("CREATE TABLE staff (id INTEGER PRIMARY KEY, boss INTEGER REFERENCES staff(id))")
        db.executemany("INSERT INTO staff VALUES (?, ?)", [(1, 3), (2, 1), (3, None)])
    expected = {}
    for table in USER_TABLES + ["staff"]:
        expected[table] = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    sums = db.execute("SELECT sum(length(name)), sum(length(image)), total(price) FROM products "
                      "WHERE price IS NULL OR abs(price) < 1e308").fetchone()
    db.close()

    project = tmp_path / "worker"
    project.mkdir()
    (project / "wrangler.toml").write_text(WRANGLER_TOML)
    export_d1(replica, project / "out.sql")
    run_wrangler(binary, project, "--file", "out.sql")

    for table, count in expected.items():
        assert query(binary, project, f'SELECT count(*) AS n FROM "{table}"') == [{"n": count}], table
    got = query(binary, project, "SELECT sum(length(name)) AS a, sum(length(image)) AS b, total(price) AS c "
                                 "FROM products WHERE price IS NULL OR abs(price) < 1e308")
    assert got == [{"a": sums[0], "b": sums[1], "c": sums[2]}]
    internal = query(binary, project, "SELECT count(*) AS n FROM sqlite_schema WHERE substr(name, 1, 9) = '_pg2edge_'")
    assert internal == [{"n": 0}]
    text = query(binary, project, "SELECT \"weird \"\"name\"\" col\" AS n FROM categories WHERE id IN (1, 4, 5) ORDER BY id")
    assert [r["n"] for r in text] == ["Bücher 📚", "line\nbreak\r\nand\ttab", "nul\x00inside"]
