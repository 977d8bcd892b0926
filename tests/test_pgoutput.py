"""The pgoutput decoder and assembler on payloads captured from a real PostgreSQL 15.

tests/data/pgoutput_v1.json is written by bench/capture_pgoutput.py: table
t (id int PK, name text, big text) with DEFAULT identity and table f (a int,
b text) with REPLICA IDENTITY FULL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pg2edge.pipeline.errors import ProtocolError
from pg2edge.pipeline.events import TOAST_JSON, UNCHANGED_TOAST, ChangeEvent, Op, Transaction
from pg2edge.pipeline.lsn import format_lsn, parse_lsn
from pg2edge.pipeline.sources import pgoutput as pg
from pg2edge.pipeline.sources.assembler import Assembler, Heartbeat

CAPTURE = json.loads((Path(__file__).parent / "data" / "pgoutput_v1.json").read_text())


def msgs(name: str) -> list[pg.Message]:
    return [pg.decode(bytes.fromhex(h)) for h in CAPTURE[name]]


def test_lsn_round_trip() -> None:
    for text, value in [("0/0", 0), ("0/16B3748", 0x16B3748), ("1/0", 1 << 32), ("FFFFFFFF/FFFFFFFF", 2**64 - 1)]:
        assert parse_lsn(text) == value
        assert format_lsn(value) == text
    assert parse_lsn("0/16b3748") == 0x16B3748
    with pytest.raises(ValueError, match="not a PostgreSQL LSN"):
        parse_lsn("16B3748")


def test_begin_relation_insert_commit() -> None:
    begin, rel, ins, commit = msgs("insert")
    assert isinstance(begin, pg.Begin) and isinstance(commit, pg.Commit)
    assert begin.final_lsn == commit.commit_lsn and commit.end_lsn > commit.commit_lsn
    assert begin.commit_ts == commit.commit_ts and begin.xid > 0
    assert isinstance(rel, pg.Relation)
    assert (rel.schema, rel.name, rel.replica_identity) == ("public", "t", pg.ReplicaIdentity.DEFAULT)
    assert [(c.name, c.type_oid, c.is_key) for c in rel.columns] == [
        ("id", 23, True), ("name", 25, False), ("big", 25, False)]
    assert rel.key_columns == ("id",)
    assert ins == pg.Insert(relid=rel.relid, new=("1", "a", None))


def test_unchanged_toast_is_a_sentinel_not_null() -> None:
    (_, ins, _), (_, upd, _) = msgs("insert_toast"), msgs("update_toast_unchanged")
    assert isinstance(ins, pg.Insert) and isinstance(ins.new[2], str) and len(ins.new[2]) == 12800
    assert isinstance(upd, pg.Update)
    assert upd.old is None and upd.new == ("2", "bb", pg.UNCHANGED_TOAST)
    assert upd.new[2] is not None


def test_update_with_old_key_and_delete_by_key() -> None:
    (_, upd, _), (_, dele, _) = msgs("update_key_change"), msgs("delete_key")
    assert upd == pg.Update(relid=upd.relid, old_kind="K", old=("1", None, None), new=("3", "a", None))
    assert dele == pg.Delete(relid=dele.relid, old_kind="K", old=("3", None, None))


def test_replica_identity_full_sends_old_tuple() -> None:
    rel = msgs("insert_full")[1]
    assert isinstance(rel, pg.Relation) and rel.replica_identity is pg.ReplicaIdentity.FULL
    (_, ins, _), (_, upd, _), (_, dele, _) = msgs("insert_full")[1:], msgs("update_full"), msgs("delete_full")
    assert ins.new == ("1", "x'y")  # type: ignore[union-attr]
    assert upd == pg.Update(relid=rel.relid, old_kind="O", old=("1", "x'y"), new=("1", None))
    assert dele == pg.Delete(relid=rel.relid, old_kind="O", old=("1", None))


def test_truncate_and_heartbeat_message() -> None:
    trunc = msgs("truncate")[3]
    assert isinstance(trunc, pg.Truncate) and len(trunc.relids) == 2
    assert trunc.restart_identity and not trunc.cascade
    (hb,) = msgs("message")
    assert hb == pg.LogicalMessage(transactional=False, lsn=hb.lsn, prefix="pg2edge", content=b"hb")


def test_malformed_and_unknown_messages_are_named() -> None:
    with pytest.raises(ProtocolError, match="unknown pgoutput message type 'Z'"):
        pg.decode(b"Z\0\0")
    with pytest.raises(ProtocolError, match="malformed pgoutput 'I'"):
        pg.decode(bytes.fromhex(CAPTURE["insert"][2])[:-3])
    with pytest.raises(ProtocolError, match="empty"):
        pg.decode(b"")


def _assemble() -> list[Transaction | Heartbeat]:
    asm = Assembler()
    out: list[Transaction | Heartbeat] = []
    for name in CAPTURE:
        for m in msgs(name):
            item = asm.feed(m)
            if item is not None:
                out.append(item)
    return out


def test_assembler_builds_transactions_with_envelopes() -> None:
    items = _assemble()
    txns = [i for i in items if isinstance(i, Transaction)]
    assert isinstance(items[-1], Heartbeat) and items[-1].prefix == "pg2edge"
    assert [t.commit_lsn for t in txns] == sorted(t.commit_lsn for t in txns)
    ops = [(e.op, e.source.table) for t in txns for e in t.events]
    assert ops == [(Op.CREATE, "t"), (Op.CREATE, "t"), (Op.UPDATE, "t"), (Op.UPDATE, "t"), (Op.DELETE, "t"),
                   (Op.CREATE, "f"), (Op.UPDATE, "f"), (Op.DELETE, "f"), (Op.TRUNCATE, "t"), (Op.TRUNCATE, "f")]
    toast = txns[2].events[0]
    assert toast.after == {"id": "2", "name": "bb", "big": UNCHANGED_TOAST} and toast.before is None
    key_change = txns[3].events[0]
    assert key_change.before == {"id": "1"} and key_change.key == {"id": "3"}
    assert key_change.after == {"id": "3", "name": "a", "big": None}
    delete = txns[4].events[0]
    assert delete.before == {"id": "3"} and delete.after is None and delete.key == {"id": "3"}
    full_upd = txns[6].events[0]
    assert full_upd.before == {"a": "1", "b": "x'y"} and full_upd.after == {"a": "1", "b": None}
    src = toast.source
    assert src.commit_lsn == txns[2].commit_lsn and src.tx_id == txns[2].xid
    assert src.ts_ms == txns[2].commit_ts and src.ts_ms > 1_600_000_000_000
    assert txns[0].relations[0].name == "t" and txns[2].relations == ()


def test_event_json_round_trip_marks_toast() -> None:
    txns = [i for i in _assemble() if isinstance(i, Transaction)]
    for ev in (e for t in txns for e in t.events):
        assert ChangeEvent.from_json(ev.to_json()) == ev
    doc = json.loads(txns[2].events[0].to_json())
    assert doc["op"] == "u" and doc["after"]["big"] == TOAST_JSON == {"__toast__": "unchanged"}
    assert set(doc["source"]) == {"lsn", "commit_lsn", "txId", "ts_ms", "schema", "table", "snapshot"}
    assert doc["key"] == {"id": "2"}


def test_assembler_reset_drops_partial_transaction_and_rejects_unknown_relation() -> None:
    asm = Assembler()
    begin, rel, ins, commit = msgs("insert")
    asm.feed(begin)
    asm.feed(rel)
    asm.feed(ins)
    asm.reset()
    asm.feed(begin)
    asm.feed(ins)
    txn = asm.feed(commit)
    assert isinstance(txn, Transaction) and len(txn.events) == 1  # not 2
    with pytest.raises(ProtocolError, match="relation id 99"):
        fresh = Assembler()
        fresh.feed(begin)
        fresh.feed(pg.Insert(relid=99, new=("1",)))
