"""The corpus: real queries on PostgreSQL vs. their translation on an SQLite copy of the same data.

The column types come from what the replica recorded (``_pg2edge_state``), as at the edge.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pg2edge.pipeline.sources.snapshot import run_snapshot
from pg2edge.translators.recorded import SourceTypes, read_replica_types
from tests.query_corpus import CORPUS
from tests.support.corpus import run_corpus


@pytest.fixture(scope="module")
def shop_copy(shop_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SourceTypes]:
    """The SQLite copy made by the real snapshot path (value codec included) and the types it recorded."""
    path = tmp_path_factory.mktemp("corpus") / "shop.db"
    run_snapshot(dsn=shop_dsn, target=path, say=lambda _: None)
    return path, read_replica_types(str(path))


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 40
    assert len({q.name for q in CORPUS}) == len(CORPUS)


def test_corpus_matches_postgres(shop_dsn: str, shop_copy: tuple[Path, SourceTypes]) -> None:
    path, types = shop_copy
    assert types.enums["order_status"] == ["pending", "paid", "shipped", "delivered", "cancelled"]
    run_corpus(CORPUS, shop_dsn, str(path), types)
