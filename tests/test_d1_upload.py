"""Snapshot into D1: a finished staging replica loaded into workerd's D1, checked first, resumable after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apsw
import pytest

from pg2edge.pipeline import state
from pg2edge.pipeline.d1.client import D1Client, D1Connection
from pg2edge.pipeline.d1.errors import D1LimitError
from pg2edge.pipeline.d1.upload import upload_snapshot
from pg2edge.pipeline.remote.http import RetryPolicy
from pg2edge.pipeline.remote.url import parse_target
from tests.support.d1 import LocalD1
from tests.test_export import build_replica

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
TABLES = {"categories": "id", "products": "id", "tags": "product_id, tag", "notes": "rowid"}


def staging(path: Path) -> Path:
    build_replica(path)
    db = apsw.Connection(str(path))
    with db:
        state.write_position(db, state.Position(commit_lsn=0x16B3748, end_lsn=0x16B3750))
        state.write_source(db, state.SourceIdentity(system_identifier="7", database="shop"))
        db.execute('DROP TABLE "_pg2edge_dlq"')
    db.close()
    return path


def client(d1: LocalD1) -> D1Client:
    return D1Client(parse_target(d1.url, token=d1.token), policy=RetryPolicy(retry_for=10))


def rows(path: Path, table: str, order: str) -> list[tuple[object, ...]]:
    db = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        cols = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
        return db.execute(f'SELECT {", ".join(chr(34) + c.replace(chr(34), 2 * chr(34)) + chr(34) for c in cols)} '
                          f'FROM "{table}" ORDER BY {order}').fetchall()
    finally:
        db.close()


def assert_same(local: Path, d1: LocalD1) -> None:
    for table, order in TABLES.items():
        assert rows(d1.sqlite_file(), table, order) == rows(local, table, order), table


def test_upload_loads_every_row_and_the_position_last(d1: LocalD1, tmp_path: Path) -> None:
    local = staging(tmp_path / "staging.db")
    report = upload_snapshot(local, client(d1))
    assert report.rows == sum(len(rows(local, t, o)) for t, o in TABLES.items())
    assert_same(local, d1)
    assert state.read_position(D1Connection(client(d1))) == state.Position(commit_lsn=0x16B3748, end_lsn=0x16B3750)
    assert d1.read("SELECT count(*) FROM sqlite_schema WHERE name IN ('products_name', 'cheap', 'notes_upper')") == [(3,)]
    assert upload_snapshot(local, client(d1)).skipped  # D1 streams from here: never loaded twice


def test_an_upload_killed_mid_way_resumes_without_loading_a_row_twice(d1: LocalD1, tmp_path: Path) -> None:
    local = staging(tmp_path / "staging.db")
    code = ("import sys; from pg2edge.pipeline.d1.upload import upload_snapshot; "
            "from pg2edge.pipeline.d1.client import D1Client; from pg2edge.pipeline.d1.limits import D1Limits; "
            "from pg2edge.pipeline.remote.url import parse_target; "
            "upload_snapshot(sys.argv[1], D1Client(parse_target(sys.argv[2])), limits=D1Limits(batch_statements=4))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PG2EDGE_TARGET_AUTH_TOKEN": d1.token}
    proc = subprocess.Popen([sys.executable, "-c", code, str(local), d1.url], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it once part of products is in D1
        try:
            n = d1.read("SELECT count(*) FROM products")[0][0]
        except (AssertionError, apsw.Error):
            n = 0
        if n > 50:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = d1.read("SELECT count(*) FROM products")[0][0]
    assert 0 < partial < len(rows(local, "products", "id"))
    assert state.read_position(D1Connection(client(d1))) is None  # nothing streams from a half-loaded D1
    upload_snapshot(local, client(d1))
    assert_same(local, d1)


def test_what_d1_cannot_hold_is_refused_by_name_before_anything_is_sent(d1: LocalD1, tmp_path: Path) -> None:
    wide = tmp_path / "wide.db"
    db = apsw.Connection(str(wide))
    cols = ", ".join(f"c{i} TEXT" for i in range(101))
    with db:
        db.execute(f"CREATE TABLE wide (id INTEGER PRIMARY KEY, {cols})")
        db.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("INSERT INTO big VALUES (1, 'x'), (7, ?)", ("y" * 2_000_001,))
        state.ensure_state_table(db)
        state.write_position(db, state.Position(commit_lsn=1, end_lsn=1))
    with pytest.raises(D1LimitError, match=r"table wide: 102 columns, over D1's limit of 100"):
        upload_snapshot(wide, client(d1))
    with db:
        db.execute("DROP TABLE wide")
    db.close()
    with pytest.raises(D1LimitError, match=r"table big: the row with id=7 is 2000002 bytes, over D1's 2000000-byte"):
        upload_snapshot(wide, client(d1))
    assert d1.read("SELECT name FROM sqlite_schema WHERE name IN ('wide', 'big')") == []


def test_a_d1_database_pg2edge_did_not_write_is_refused(d1: LocalD1, tmp_path: Path) -> None:
    from pg2edge.pipeline.d1.errors import D1Error

    local = staging(tmp_path / "staging.db")
    client(d1).batch([("CREATE TABLE app_users (id INTEGER PRIMARY KEY)", [])])
    with pytest.raises(D1Error, match=r"is not empty and is not a pg2edge replica \(it has table\(s\) app_users\)"):
        upload_snapshot(local, client(d1))
    assert d1.read("SELECT count(*) FROM sqlite_schema WHERE name = 'products'") == [(0,)]
