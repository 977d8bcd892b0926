"""Source table -> replica table and codec: the mappings every sink applies changes with.

Built once per run from the source catalog (the published tables, translated by
the schema translator; missing replica tables created), each with the value
codec of its table (:mod:`pg2edge.translators.codec`): the one place
PostgreSQL values become SQLite values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import apsw

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.pipeline.sinks.statements import TableMapping
from pg2edge.pipeline.sources.pgoutput import Column
from pg2edge.pipeline.sources.snapshot import prepare_tables, published_tables
from pg2edge.translators.codec import row_codec
from pg2edge.translators.introspect import introspect
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.schema import Table

log = logging.getLogger(__name__)


class TableEncoder:
    """A table's codec that rebuilds itself when the source gained a column (ADD COLUMN while streaming)."""

    def __init__(self, dsn: str, table: Table, options: TranslateConfig) -> None:
        self.dsn, self.table, self.options = dsn, table, options
        self.codec = row_codec(table, options=options)

    def _refresh(self) -> None:
        with dsnlib.control(self.dsn) as conn:
            schema = introspect(conn, schemas=[self.table.schema], tables=[self.table.name])
        self.table = schema.table(self.table.qualified)
        self.codec = row_codec(self.table, options=self.options)

    def use(self, table: Table) -> None:
        """The source table's new shape, from a schema change at its stream position."""
        self.table = table
        self.codec = row_codec(table, options=self.options)

    def encode(self, column: str, text: str | None) -> Any:
        if column not in self.codec.rules:
            self._refresh()
        return self.codec.encode_text(column, text)

    def encode_many(self, columns: tuple[str, ...], values: Sequence[str | None]) -> tuple[Any, ...]:
        """:meth:`encode` of each column, at once (the codec's per-column-set encoder)."""
        fn = self.codec.columns_encoder(columns)
        if fn is None:  # a column the codec does not know: encode() refreshes the table first
            return tuple(self.encode(c, v) for c, v in zip(columns, values))
        return fn(values)

    def skip(self, column: str) -> bool:
        """A column the codec does not copy (its rule says so); unknown columns are new, not skipped."""
        return column in self.codec.skipped

    def column_type(self, column: Column) -> str:
        return str(self.codec.sqlite_type_for_relation_column(column))


def mapping_for(dsn: str, table: Table, options: TranslateConfig) -> TableMapping:
    """The mapping of one source table (its replica table and codec encoder)."""
    enc = TableEncoder(dsn, table, options)
    return TableMapping(target=sqlite_table_name(table.schema, table.name), encode=enc.encode,
                        column_type=enc.column_type, skip=enc.skip, reshape=enc.use, encode_many=enc.encode_many)


def build_mappings(dsn: str, db: apsw.Connection, publication: str,
                   options: TranslateConfig) -> dict[tuple[str, str], TableMapping]:
    """Source (schema, table) -> target table and codec encoder, for every published table
    (creating the replica tables ``db`` lacks)."""
    model = prepare_tables(dsn, db, published_tables(dsn, publication), options=options, say=log.info)
    return {(table.schema, table.name): mapping_for(dsn, table, options) for table in model.values()}
