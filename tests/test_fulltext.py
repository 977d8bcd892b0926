"""Full-text search with fts5 = true: FTS5 tables kept in step by triggers, and @@ translated to MATCH."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from pg2edge.config import TranslateConfig
from pg2edge.pipeline.sources.snapshot import run_snapshot
from pg2edge.translators.fts import TsQueryError, tsquery_to_fts5
from pg2edge.translators.query import translate_sql
from pg2edge.translators.recorded import SourceTypes, read_replica_types
from tests.query_corpus import CorpusQuery
from tests.support.corpus import run_corpus

FTS_CORPUS = (
    CorpusQuery("fts_word", "SELECT id, title FROM films WHERE search @@ to_tsquery('english', 'academy') ORDER BY id"),
    CorpusQuery("fts_stemmed", "SELECT id FROM films WHERE search @@ to_tsquery('english', 'chases') ORDER BY id"),
    CorpusQuery("fts_and_not", """
        SELECT id FROM films WHERE search @@ to_tsquery('english', 'drama & !dentist') ORDER BY id"""),
    CorpusQuery("fts_or_prefix", """
        SELECT id FROM films WHERE search @@ to_tsquery('english', 'astro:* | (shark <-> tank)') ORDER BY id"""),
    CorpusQuery("fts_plain_on_one_column", """
        SELECT id FROM films WHERE to_tsvector('english', description) @@ plainto_tsquery('english', 'Epic robot')
        ORDER BY id"""),
    CorpusQuery("fts_phrase", """
        SELECT id FROM films WHERE search @@ phraseto_tsquery('english', 'mad scientist') ORDER BY id"""),
    CorpusQuery("fts_count_join", """
        SELECT count(*) FROM films f JOIN inventory i ON i.film_id = f.id
        WHERE f.search @@ to_tsquery('english', 'documentary')"""),
    CorpusQuery("fts_websearch_refused", """
        SELECT id FROM films WHERE search @@ websearch_to_tsquery('english', 'drama -dentist')""",
                untranslatable=("fulltext",)),
    CorpusQuery("fts_rank_refused", """
        SELECT id, ts_rank(search, to_tsquery('english', 'drama')) FROM films WHERE search @@ to_tsquery('english', 'drama')""",
                untranslatable=("fulltext",)),
)


@pytest.fixture(scope="module")
def fts_replica(rental_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SourceTypes]:
    path = tmp_path_factory.mktemp("fts") / "rental.db"
    run_snapshot(dsn=rental_dsn, target=path, options=TranslateConfig(fts5=True), say=lambda _: None)
    return path, read_replica_types(str(path))


def test_fts5_index_is_recorded_and_filled(fts_replica: tuple[Path, SourceTypes]) -> None:
    path, types = fts_replica
    assert sorted(types.fts["films"]["columns"]) == ["description", "title"]
    assert types.fts["films"]["vectors"] == ["search"]
    db = apsw.Connection(str(path))
    assert db.execute("SELECT count(*) FROM films_fts").fetchone() == db.execute("SELECT count(*) FROM films").fetchone()


def test_fts_corpus_matches_postgres(rental_dsn: str, fts_replica: tuple[Path, SourceTypes]) -> None:
    path, types = fts_replica
    outcomes = run_corpus(FTS_CORPUS, rental_dsn, str(path), types)
    assert len(outcomes["equal"]) == 7


def test_fts_follows_writes_on_the_replica(fts_replica: tuple[Path, SourceTypes], tmp_path: Path) -> None:
    import shutil

    path, types = fts_replica
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    db = apsw.Connection(str(copy))
    sql = translate_sql("SELECT id FROM films WHERE search @@ to_tsquery('english', 'zeppelin') ORDER BY id",
                        column_types=types.tables, fts=types.fts).sql
    assert db.execute(sql).fetchall() == []
    db.execute("UPDATE films SET description = 'A Zeppelin' WHERE id = 3")
    db.execute("DELETE FROM films WHERE id = 5")
    assert db.execute(sql).fetchall() == [(3,)]
    db.execute("UPDATE films SET description = 'gone' WHERE id = 3")
    assert db.execute(sql).fetchall() == []


def test_without_fts5_it_is_an_error() -> None:
    result = translate_sql("SELECT id FROM films WHERE search @@ to_tsquery('english', 'drama')")
    assert "fulltext" in {f.code for f in result.errors}


@pytest.mark.parametrize(("tsquery", "fts5"), [
    ("a & b", '("a" AND "b")'),
    ("a | b & c", '("a" OR ("b" AND "c"))'),
    ("(a | b) & !c", '(("a" OR "b") NOT "c")'),
    ("pre:*", '"pre"*'),
    ("a <-> b", '("a" + "b")'),
])
def test_tsquery_to_fts5(tsquery: str, fts5: str) -> None:
    assert tsquery_to_fts5(tsquery) == fts5


def test_tsquery_without_fts5_form() -> None:
    with pytest.raises(TsQueryError):
        tsquery_to_fts5("!a")
