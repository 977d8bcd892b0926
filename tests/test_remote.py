"""pipeline.remote against real sqld and tursodb: URLs, token, Hrana values, atomic batches, errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pg2edge.pipeline.remote import (
    HranaClient,
    RemoteAuthError,
    RemoteConnection,
    RemoteNotReplica,
    RemoteProtocolError,
    RemoteSQLError,
    RemoteTooLarge,
    RemoteUnavailable,
    RemoteURLError,
    RetryPolicy,
    is_remote,
    parse_target,
    require_replica,
    resolve_token,
)
from pg2edge.pipeline.remote.hrana import decode_value, encode_value
from tests.support.edge import JwtKey, SqldServer, TursoServer

# -- URLs and token (pure) ------------------------------------------------------------------
URLS = [
    ("libsql://db-org.turso.io", "libsql", "https://db-org.turso.io", "libsql://db-org.turso.io"),
    ("https://db.example.com/", "libsql", "https://db.example.com", "https://db.example.com"),
    ("http://127.0.0.1:8080", "libsql", "http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("HTTP://LocalHost:9/base/", "libsql", "http://localhost:9/base", "http://localhost:9/base"),
    ("d1+https://sync.example.workers.dev", "d1", "https://sync.example.workers.dev",
     "d1+https://sync.example.workers.dev"),
    ("d1+http://127.0.0.1:8787", "d1", "http://127.0.0.1:8787", "d1+http://127.0.0.1:8787"),
    ("http://[::1]:8080", "libsql", "http://[::1]:8080", "http://[::1]:8080"),
]


@pytest.mark.parametrize(("text", "kind", "base", "label"), URLS)
def test_parse_target(text: str, kind: str, base: str, label: str) -> None:
    t = parse_target(text, env={})
    assert (t.kind, t.base_url, t.label, t.token) == (kind, base, label, None)
    assert is_remote(text)


@pytest.mark.parametrize("text", ["shop.db", "/tmp/x.db", "file:x.db", "data/edge.sqlite"])
def test_paths_are_not_remote(text: str) -> None:
    assert not is_remote(text)


@pytest.mark.parametrize(("text", "fragment"), [
    ("ftp://host", "unknown target scheme ftp://"),
    ("libsql://", "no host"),
    ("http://host:99999", "malformed"),
    ("http://host/?mode=x", "query string"),
])
def test_bad_urls(text: str, fragment: str) -> None:
    with pytest.raises(RemoteURLError, match=fragment):
        parse_target(text, env={})


@pytest.mark.parametrize("text", ["libsql://db.turso.io?authToken=SECRET123", "https://u:SECRET123@db.turso.io",
                                  "http://h:1/?token=SECRET123"])
def test_credentials_in_url_are_refused_without_echo(text: str) -> None:
    with pytest.raises(RemoteURLError) as err:
        parse_target(text, env={})
    assert "SECRET123" not in str(err.value)
    assert "PG2EDGE_TARGET_AUTH_TOKEN" in str(err.value)


def test_token_order_and_never_in_repr() -> None:
    assert resolve_token(env={}, config_token=None) is None
    assert resolve_token(env={}, config_token=" cfg ") == "cfg"
    assert resolve_token(env={"TURSO_AUTH_TOKEN": "turso"}, config_token="cfg") == "turso"
    assert resolve_token(env={"TURSO_AUTH_TOKEN": "turso", "PG2EDGE_TARGET_AUTH_TOKEN": "mine"}) == "mine"
    t = parse_target("libsql://x.turso.io", env={"PG2EDGE_TARGET_AUTH_TOKEN": "SECRET123"})
    assert t.token == "SECRET123"
    assert "SECRET123" not in repr(t) and "SECRET123" not in str(t)


@pytest.mark.parametrize("value", [None, 0, -1, 2**63 - 1, -(2**63), 1.5, -0.25, "", "héllo ✓ \x00 end", b"",
                                   b"\x00\xff" * 10])
def test_value_round_trip(value: object) -> None:
    assert decode_value(encode_value(value)) == value


def test_values_hrana_cannot_carry() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        encode_value(2**63)
    with pytest.raises(ValueError, match="JSON"):
        encode_value(float("nan"))


# -- real servers ------------------------------------------------------------------------------
def _client(server: SqldServer | TursoServer, **kw: object) -> HranaClient:
    return HranaClient(parse_target(server.url, env={}), **kw)  # type: ignore[arg-type]


def test_negotiation(sqld: SqldServer, tursodb: TursoServer) -> None:
    with _client(sqld) as a, _client(tursodb) as b:
        assert a.version == "v3" and a._server.close
        assert b.version == "v2" and not b._server.close  # tursodb: only POST /v2/pipeline, no close


def test_values_and_atomic_batch(edge_server: SqldServer | TursoServer) -> None:
    with _client(edge_server) as c:
        c.execute('CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "i" INTEGER, "r" REAL, "s" TEXT, "b" BLOB)')
        row = (1, -(2**63), 2.5, "ünï ✓", b"\x00\x01\xff")
        c.batch([('INSERT INTO "t" VALUES (?, ?, ?, ?, ?)', row), ('INSERT INTO "t" ("id") VALUES (?)', (2,))])
        got = c.execute('SELECT "id", "i", "r", "s", "b" FROM "t" ORDER BY "id"')
        assert got.rows == [row, (2, None, None, None, None)]
        assert got.columns == ["id", "i", "r", "s", "b"]
        # a failing statement in the middle: nothing of the batch is applied
        with pytest.raises(RemoteSQLError) as err:
            c.batch([('INSERT INTO "t" ("id", "s") VALUES (?, ?)', (3, "x")),
                     ('UPDATE "t" SET "s" = ? WHERE "id" = ?', ("changed", 1)),
                     ('INSERT INTO "t" ("id") VALUES (?)', (1,)),  # duplicate key
                     ('INSERT INTO "t" ("id") VALUES (?)', (4,))])
        assert err.value.step == 2 and "UNIQUE" in str(err.value)
        assert c.execute('SELECT count(*), max("s") FROM "t"').rows == [(2, "ünï ✓")]
        # the stream is usable afterwards (no transaction left open)
        c.batch([('INSERT INTO "t" ("id") VALUES (?)', (5,))])
        assert c.execute('SELECT count(*) FROM "t"').rows == [(3,)]


def test_connection_reads_and_buffered_transaction(edge_server: SqldServer | TursoServer) -> None:
    conn = RemoteConnection(parse_target(edge_server.url, env={}))
    try:
        with pytest.raises(RemoteNotReplica, match=edge_server.url):
            require_replica(conn)
        conn.execute('CREATE TABLE "kv" ("k" TEXT PRIMARY KEY, "v" TEXT)')
        with conn:
            assert conn.in_transaction
            conn.execute('INSERT INTO "kv" VALUES (?, ?)', ("a", "1"))
            # writes are buffered until COMMIT: a read inside sees the committed state
            assert conn.execute('SELECT count(*) FROM "kv"').fetchone() == (0,)
        assert conn.execute('SELECT "k", "v" FROM "kv"').fetchall() == [("a", "1")]
        with pytest.raises(RuntimeError), conn:
            conn.execute('INSERT INTO "kv" VALUES (?, ?)', ("b", "2"))
            raise RuntimeError("rolled back")
        assert [r for r in conn.execute('SELECT "k" FROM "kv"')] == [("a",)]
        with pytest.raises(RemoteSQLError, match="no such table"):
            conn.execute('SELECT * FROM "missing"')
    finally:
        conn.close()


def test_state_readers_work_on_a_remote_connection(sqld: SqldServer) -> None:
    from pg2edge.pipeline import state

    conn = RemoteConnection(parse_target(sqld.url, env={}))
    try:
        assert state.read_position(conn) is None  # type: ignore[arg-type]  (no state table yet)
        conn.execute(state.DDL)
        with conn:
            state.write_position(conn, state.Position(commit_lsn=10, end_lsn=11))  # type: ignore[arg-type]
        assert state.read_position(conn) == state.Position(commit_lsn=10, end_lsn=11)  # type: ignore[arg-type]
        require_replica(conn)
    finally:
        conn.close()


def test_wrong_token_fails_at_once_naming_the_url_not_the_token(sqld_jwt: tuple[SqldServer, JwtKey],
                                                                  tmp_path: Path) -> None:
    server, key = sqld_jwt
    good = key.token()
    with HranaClient(parse_target(server.url, env={"PG2EDGE_TARGET_AUTH_TOKEN": good})) as c:
        assert c.execute("SELECT 1").rows == [(1,)]
    other = JwtKey.create(tmp_path).token()  # signed by another key
    for token in (other, None):
        env = {"PG2EDGE_TARGET_AUTH_TOKEN": token} if token else {}
        started = time.monotonic()
        with HranaClient(parse_target(server.url, env=env)) as c, pytest.raises(RemoteAuthError) as err:
            c.execute("SELECT 1")
        assert time.monotonic() - started < 5  # not retried
        message = str(err.value)
        assert server.url in message and "\n" not in message
        assert good not in message and (token is None or token not in message)


def test_server_down_is_one_line_naming_the_url() -> None:
    from pg2edge.pgcluster import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with HranaClient(parse_target(url, env={}), policy=RetryPolicy(retry_for=0.5)) as c, \
            pytest.raises(RemoteUnavailable) as err:
        c.execute("SELECT 1")
    assert url in str(err.value) and "refused" in str(err.value) and "\n" not in str(err.value)


def test_not_a_hrana_server(sqld: SqldServer) -> None:
    # a real HTTP server that is not Hrana at this path
    with HranaClient(parse_target(sqld.url + "/not/here", env={})) as c, pytest.raises(RemoteProtocolError) as err:
        c.execute("SELECT 1")
    assert "does not speak Hrana" in str(err.value) and sqld.url in str(err.value)


def test_retries_in_place_across_a_server_restart(sqld: SqldServer) -> None:
    with _client(sqld, policy=RetryPolicy(retry_for=60)) as c:
        c.execute('CREATE TABLE "seq" ("n" INTEGER PRIMARY KEY)')
        c.batch([('INSERT INTO "seq" VALUES (?)', (1,))])
        sqld.stop()
        restarter = threading.Timer(1.5, sqld.start)
        restarter.start()
        try:
            c.batch([('INSERT INTO "seq" VALUES (?)', (2,))])  # waits for the server, then applies
            c.batch([('INSERT INTO "seq" VALUES (?)', (3,))])
        finally:
            restarter.join()
        assert c.session.retries > 0
        assert c.execute('SELECT "n" FROM "seq" ORDER BY "n"').rows == [(1,), (2,), (3,)]


def test_request_over_the_size_limit(sqld: SqldServer) -> None:
    with _client(sqld, max_request_bytes=64 * 1024) as c:
        c.execute('CREATE TABLE "big" ("v" TEXT)')
        with pytest.raises(RemoteTooLarge, match="over the 65536-byte limit"):
            c.batch([('INSERT INTO "big" VALUES (?)', ("x" * 70_000,))])
        assert c.execute('SELECT count(*) FROM "big"').rows == [(0,)]
    with _client(sqld, max_request_bytes=64 * 1024 * 1024) as c, pytest.raises(RemoteSQLError, match="too big"):
        c.batch([('INSERT INTO "big" VALUES (?)', ("x" * (12 * 1024 * 1024),))])  # sqld's own value limit


def test_config_token_is_secret(tmp_path: Path) -> None:
    from pg2edge.config import load_config

    cfg = tmp_path / "pg2edge.toml"
    cfg.write_text('[target]\npath = "libsql://db.turso.io"\nauth_token = "SECRET123"\n')
    config = load_config(cfg, env={})
    assert config.target.token() == "SECRET123"
    assert "SECRET123" not in repr(config) and "SECRET123" not in str(config.model_dump())
    t = parse_target(config.require_target(), env={}, config_token=config.target.token())
    assert t.token == "SECRET123"
    assert parse_target(config.require_target(), env={"TURSO_AUTH_TOKEN": "env"},
                        config_token=config.target.token()).token == "env"


def test_localhost_names_reach_loopback_with_their_host_header(sqld_namespaces: SqldServer) -> None:
    """RFC 6761: NAME.localhost is loopback whatever the resolver says; sqld picks namespace NAME from Host,
    and sessions sharing one bounded pool keep their own Host (and token) per request."""
    import httpx

    from pg2edge.pipeline.remote.http import RemoteSession, shared_pool

    url = sqld_namespaces.tenant_pattern()
    target = parse_target(url.replace("{tenant}", "acme"), env={})
    assert target.base_url.startswith("http://127.0.0.1:") and target.host_header == f"acme.localhost:{sqld_namespaces.port}"
    assert target.label == url.replace("{tenant}", "acme")
    for name in ("acme", "globex"):
        assert httpx.post(f"{sqld_namespaces.admin_url}/v1/namespaces/{name}/create", json={}).status_code == 200
    pool = shared_pool(max_connections=1)
    clients = {n: HranaClient(parse_target(url.replace("{tenant}", n), env={}),
                              session=RemoteSession(parse_target(url.replace("{tenant}", n), env={}), pool=pool))
               for n in ("acme", "globex")}
    try:
        for name, client in clients.items():
            client.execute("CREATE TABLE who (name TEXT)")
            client.execute("INSERT INTO who VALUES (?)", (name,))
        for name, client in clients.items():
            assert client.execute("SELECT name FROM who").rows == [(name,)]
    finally:
        for client in clients.values():
            client.close()
        pool.close()
