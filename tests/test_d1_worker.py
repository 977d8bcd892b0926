"""The pg2edge D1 Worker under real workerd (wrangler dev --local): export, auth, atomic batches, values."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pg2edge.pipeline.d1.client import D1Client
from pg2edge.pipeline.d1.errors import D1Refused
from pg2edge.pipeline.remote.errors import RemoteAuthError
from pg2edge.pipeline.remote.http import RetryPolicy
from pg2edge.pipeline.remote.url import parse_target
from tests.support.d1 import LocalD1, wrangler_binary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def d1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalD1]:
    if wrangler_binary() is None:
        pytest.skip("wrangler is not installed: cd tests/node && npm ci")
    local = LocalD1(tmp_path_factory.mktemp("d1")).start()
    try:
        yield local
    finally:
        local.stop()


def client(d1: LocalD1, token: str | None = None) -> D1Client:
    target = parse_target(d1.url, token=token if token is not None else d1.token)
    return D1Client(target, policy=RetryPolicy(retry_for=5))


def test_export_d1_worker_writes_the_project_and_keeps_the_secret_out_of_output(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "w"
    proc = run_cli("export", "d1-worker", str(out), "--database", "shop",
                   env={"PG2EDGE_TARGET_AUTH_TOKEN": "s3cret-value"})
    assert proc.returncode == 0, proc.stderr
    assert "s3cret-value" not in proc.stdout + proc.stderr
    assert {p.name for p in out.iterdir()} == {"index.js", "wrangler.toml", ".dev.vars", ".gitignore"}
    toml = (out / "wrangler.toml").read_text()
    assert 'binding = "DB"' in toml and 'database_name = "shop"' in toml and "s3cret" not in toml
    assert (out / ".dev.vars").read_text() == "PG2EDGE_TOKEN=s3cret-value\n"
    assert stat.S_IMODE((out / ".dev.vars").stat().st_mode) == 0o600
    assert ".dev.vars" in (out / ".gitignore").read_text()
    assert "env.DB.batch" in (out / "index.js").read_text() or "session.batch" in (out / "index.js").read_text()

    again = run_cli("export", "d1-worker", str(out))
    assert again.returncode == 2 and "index.js exists" in again.stderr and "--force" in again.stderr
    forced = run_cli("export", "d1-worker", str(out), "--force")  # no token in the environment: keep the old one
    assert forced.returncode == 0, forced.stderr
    assert (out / ".dev.vars").read_text() == "PG2EDGE_TOKEN=s3cret-value\n"

    fresh = tmp_path / "fresh"
    assert run_cli("export", "d1-worker", str(fresh)).returncode == 0
    secret = (fresh / ".dev.vars").read_text().strip().split("=", 1)[1]
    assert len(secret) >= 40
    assert run_cli("export", "d1-worker", str(tmp_path / "bad"), "--database", "Bad Name").returncode == 2


def test_no_or_wrong_secret_gets_401_and_changes_nothing(d1: LocalD1) -> None:
    d1.post("/v1/batch", {"statements": [{"sql": "CREATE TABLE IF NOT EXISTS guarded (id INTEGER PRIMARY KEY)"}]})
    before = d1.read("SELECT count(*) FROM guarded")
    write = {"statements": [{"sql": "INSERT INTO guarded (id) VALUES (?)", "params": [1]},
                            {"sql": "DROP TABLE guarded"}]}
    for token in (None, "wrong", "", d1.token + "x", d1.token[:-1]):
        status, body = d1.post("/v1/batch", write, token=token)
        assert (status, body) == (401, {"error": "unauthorized"}), token
        status, _ = d1.post("/v1/query", {"sql": "SELECT * FROM guarded"}, token=token)
        assert status == 401
    assert d1.read("SELECT count(*) FROM guarded") == before == [(0,)]
    with pytest.raises(RemoteAuthError) as err:
        client(d1, token="wrong").batch([("INSERT INTO guarded (id) VALUES (?)", [1])])
    assert "wrong" not in str(err.value) and d1.url.split("//")[1] in str(err.value)
    assert d1.read("SELECT count(*) FROM guarded") == [(0,)]
    status, _ = d1.post("/v1/batch", write)  # the right secret does run it
    assert status == 200
    assert d1.read("SELECT count(*) FROM sqlite_schema WHERE name = 'guarded'") == [(0,)]


def test_a_batch_is_one_transaction_and_a_refused_statement_is_located(d1: LocalD1) -> None:
    c = client(d1)
    c.batch([("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT CHECK (v <> 'bad'))", [])])
    res = c.batch([("INSERT INTO t VALUES (?, ?)", [1, "a"]), ("INSERT INTO t VALUES (?, ?)", [2, "b"])])
    assert res.changes == [1, 1]
    stmts = [("INSERT INTO t VALUES (?, ?)", [i, "bad" if i == 7 else "x"]) for i in range(3, 10)]
    with pytest.raises(D1Refused) as err:
        c.batch(stmts, locate=True)
    assert err.value.index == 4 and "CHECK constraint failed" in str(err.value)
    with pytest.raises(D1Refused) as err:
        c.batch(stmts)
    assert err.value.index is None
    assert d1.read("SELECT id FROM t ORDER BY id") == [(1,), (2,)]  # none of the refused batches
    assert d1.wrangler_query("SELECT id, v FROM t ORDER BY id") == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]


def test_values_round_trip_exactly(d1: LocalD1) -> None:
    c = client(d1)
    c.batch([("CREATE TABLE vals (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB)", [])])
    rows = [(1, 2**62 + 1, float("inf"), "Bücher 📚\nline", b"\x00\x01\xff"),
            (2, -(2**63), -0.0, "", b""),
            (3, None, 1e300, "nul\x00inside", None),
            (4, 2**53 - 1, 3.141592653589793, "'; DROP TABLE vals; --", bytes(range(256)))]
    c.batch([("INSERT INTO vals VALUES (?, ?, ?, ?, ?)", list(r)) for r in rows])
    got = d1.read("SELECT id, i, r, t, b FROM vals ORDER BY id")
    assert got == rows
    assert d1.read("SELECT typeof(i) FROM vals WHERE id IN (1, 2) ORDER BY id") == [("integer",), ("integer",)]
    back = c.query("SELECT id, t, b, CAST(i AS TEXT) AS it FROM vals WHERE id = ?", [1])
    assert back.columns == ["id", "t", "b", "it"]
    assert back.rows == [(1, "Bücher 📚\nline", b"\x00\x01\xff", str(2**62 + 1))]
    # D1 returns an infinite REAL as null (its results travel as JSON): read it as text when it matters
    assert c.query("SELECT r, CAST(r AS TEXT) FROM vals WHERE id = 1").rows == [(None, "Inf")]


def test_guards_refuse_a_stale_batch_and_an_update_that_changed_nothing(d1: LocalD1) -> None:
    from dataclasses import replace

    from pg2edge.pipeline import state
    from pg2edge.pipeline.d1.client import D1Connection
    from pg2edge.pipeline.d1.guards import changed_guard, is_guard_failure, position_guard, schema_statements

    c = client(d1)
    c.batch(schema_statements())
    c.batch(schema_statements())  # idempotent
    c.batch([("CREATE TABLE g (id INTEGER PRIMARY KEY, n INTEGER)", [])])
    conn = D1Connection(c)
    assert state.read_position(conn) is None

    def write(pos: state.Position, rows: list[int], expected: int | None) -> None:
        rec: list[tuple[str, list[object]]] = []
        with conn:
            for r in rows:
                conn.execute("INSERT INTO g (id, n) VALUES (?, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1", [r])
            state.write_position(conn, pos)
            assert conn._pending is not None
            rec = list(conn._pending)
            conn._pending = [position_guard(expected), *rec]

    first = state.Position(commit_lsn=100, end_lsn=108)
    write(first, [1, 2], None)
    assert state.read_position(conn) == first
    with pytest.raises(D1Refused) as err:  # the same batch again (its answer was lost): refused whole
        write(first, [1, 2], None)
    assert is_guard_failure(str(err.value))
    second = replace(first, commit_lsn=200, end_lsn=208)
    write(second, [2, 3], 100)
    assert d1.read("SELECT id, n FROM g ORDER BY id") == [(1, 1), (2, 2), (3, 1)]
    assert state.read_position(conn) == second

    with pytest.raises(D1Refused) as err:
        c.batch([("UPDATE g SET n = 9 WHERE id = ?", [1]), changed_guard(),
                 ("UPDATE g SET n = 9 WHERE id = ?", [42]), changed_guard()], locate=True)
    assert err.value.index == 3 and is_guard_failure(str(err.value))
    assert d1.read("SELECT n FROM g WHERE id = 1") == [(1,)]
    c.batch([("UPDATE g SET n = 9 WHERE id = ?", [1]), changed_guard()])
    assert d1.read("SELECT n FROM g WHERE id = 1") == [(9,)]
