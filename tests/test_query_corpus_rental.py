"""The rental-store corpus: each query on PostgreSQL and, translated, on the replica made by the real snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from pg2edge.pipeline.sources.snapshot import run_snapshot
from pg2edge.translators.recorded import SourceTypes, read_replica_types
from tests.rental_corpus import RENTAL_CORPUS
from tests.support.corpus import run_corpus


@pytest.fixture(scope="module")
def rental_copy(rental_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SourceTypes]:
    path = tmp_path_factory.mktemp("rental-corpus") / "rental.db"
    run_snapshot(dsn=rental_dsn, target=path, say=lambda _: None)
    return path, read_replica_types(str(path))


def test_rental_corpus_covers_the_constructs() -> None:
    names = {q.name for q in RENTAL_CORPUS}
    assert len(names) == len(RENTAL_CORPUS) >= 50
    assert sum(1 for q in RENTAL_CORPUS if q.untranslatable) >= 5


def test_rental_corpus_matches_postgres(rental_dsn: str, rental_copy: tuple[Path, SourceTypes]) -> None:
    path, types = rental_copy
    assert types.tables["stores"]["code"] == "character(6)"
    outcomes = run_corpus(RENTAL_CORPUS, rental_dsn, str(path), types)
    assert len(outcomes["equal"]) >= 45
