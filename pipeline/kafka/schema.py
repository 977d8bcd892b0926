"""Schema records: the publisher's schema travels in the topic, so a replica needs only the broker.

A schema record is a control record (``pg2edge.kind: control``) whose JSON value is::

    {"type": "schema", "v": 1,
     "reason": "snapshot" | "relation",       # before a snapshot, or a table's shape changed
     "publication": "pg2edge_pub",
     "selection": ["public.items", ...],      # every published table (the table selection)
     "translate": {...},                      # the publisher's [translate] options (TranslateConfig)
     "model": {"tables": [...], "enums": [...], "domains": [...]}}   # translators.schema, as JSON

``model`` holds the tables the record describes: all of them before a
snapshot (key ``snapshot-schema``: a new replica may start there), the changed
ones after a Relation message showed a new shape (key ``schema``). A replica
rebuilds each :class:`~pg2edge.translators.schema.Table` from it and runs the
same DDL planner (:func:`translators.ddl.plan_ddl`) and value codec
(:func:`translators.codec.row_codec` with the record's options) as a replica
fed from PostgreSQL: one set of type rules. ``v`` is the format version; a
replica refuses (parks) a record of a newer version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import apsw

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.errors import Pg2EdgeError
from pg2edge.pipeline import state
from pg2edge.pipeline.events import Transaction
from pg2edge.pipeline.sinks.statements import TableMapping
from pg2edge.pipeline.sources.pgoutput import Column as RelColumn
from pg2edge.pipeline.sources.pgoutput import Relation, ReplicaIdentity
from pg2edge.translators.codec import row_codec
from pg2edge.translators.ddl import plan_ddl
from pg2edge.translators.introspect import introspect
from pg2edge.translators.modeljson import model_from_json, model_to_json, table_from_json
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.quoting import quote_ident
from pg2edge.translators.schema import Domain, Enum, Schema, Table

log = logging.getLogger(__name__)

VERSION = 1
SCOPE, NAME = "kafka", "schema"  # where a replica (and the publisher) keeps the schema it follows
Key = tuple[str, str]


def table_key(qualified: str) -> Key:
    schema, _, table = qualified.partition(".")
    return schema, table


class SchemaRecordError(Pg2EdgeError):
    """A schema record cannot be used (newer format version, unknown field, missing table)."""


# -- the publisher's side ------------------------------------------------------------------
def introspect_tables(dsn: str, tables: Sequence[Key]) -> Schema:
    with dsnlib.control(dsn) as conn:
        return introspect(conn, schemas=sorted({s for s, _ in tables}), tables=[t for _, t in tables])


def document(schema: Schema, *, publication: str, selection: Sequence[Key], options: TranslateConfig,
             reason: str) -> dict[str, Any]:
    """The JSON document of a schema record describing ``schema``'s tables."""
    model = {"tables": model_to_json(schema.tables), "enums": model_to_json(schema.enums),
             "domains": model_to_json(schema.domains)}
    return {"type": "schema", "v": VERSION, "reason": reason, "publication": publication,
            "selection": [f"{s}.{t}" for s, t in selection], "translate": options.model_dump(), "model": model}


def shape(columns: Sequence[tuple[str, int, int]]) -> list[list[Any]]:
    return [[n, o, m] for n, o, m in columns]


def table_shape(table: Table) -> list[list[Any]]:
    """What pgoutput's Relation message tells of ``table``: (name, type oid, typmod) of published columns."""
    return shape([(c.name, c.type_oid, c.typmod) for c in table.columns if c.generated is None])


def relation_shape(rel: Relation) -> list[list[Any]]:
    return shape([(c.name, c.type_oid, c.type_modifier) for c in rel.columns])


def table_relation(table: Table) -> Relation:
    """The Relation message pgoutput would send for ``table`` (its published columns), from a schema record:
    a replica runs the drift rule (:func:`pipeline.drift.plan`) with it where its stream carried no Relation
    message for the new shape (a partition of a topic partitioned by tenant without that transaction's rows)."""
    full = table.replica_identity == "f"
    return Relation(relid=0, schema=table.schema, name=table.name,
                    replica_identity=ReplicaIdentity(table.replica_identity),
                    columns=tuple(RelColumn(c.name, c.type_oid, c.typmod, full or c.name in table.primary_key)
                                  for c in table.columns if c.generated is None))


class SchemaTracker:
    """The publisher's view of what the topic's schema records said, per table; finds new shapes."""

    def __init__(self, db: apsw.Connection, dsn: str, publication: str, options: TranslateConfig) -> None:
        self.db, self.dsn, self.publication, self.options = db, dsn, publication, options
        self._baselines: dict[str, dict[str, Any] | None] = {}  # followed by published DDL, stored once flushed
        stored = state.read_record(db, SCOPE, NAME) or {}
        self.shapes: dict[str, list[list[Any]]] = stored.get("shapes", {})
        self.selection: list[Key] = [table_key(q) for q in stored.get("selection", [])]

    def snapshot_record(self, selection: Sequence[Key]) -> dict[str, Any]:
        """The full schema record published before a snapshot (remembered once flushed: :meth:`remember`)."""
        model = introspect_tables(self.dsn, selection)
        self.selection = list(selection)
        return document(model, publication=self.publication, selection=selection, options=self.options,
                        reason="snapshot")

    def full_record(self, selection: Sequence[Key]) -> dict[str, Any]:
        """Every selected table, outside a snapshot (a topic begun before schema records existed)."""
        self.selection = list(selection)
        return document(introspect_tables(self.dsn, selection), publication=self.publication, selection=selection,
                        options=self.options, reason="relation")

    def changed(self, relations: Sequence[Relation]) -> dict[str, Any] | None:
        """A schema record for the relations whose shape differs from the last published one, or None."""
        known = {f"{s}.{t}" for s, t in self.selection}
        new = [(r.schema, r.name) for r in relations if f"{r.schema}.{r.name}" in known
               and self.shapes.get(f"{r.schema}.{r.name}") != relation_shape(r)]
        if not new:
            return None
        model = introspect_tables(self.dsn, new)
        return document(model, publication=self.publication, selection=self.selection, options=self.options,
                        reason="relation")

    def annotate(self, txn: Transaction) -> Transaction:
        """``txn`` with each schema change carrying the baselines (attribute numbers before it) of the
        tables it is about, under ``catalog["baselines"]``: a replica without source access tells a RENAME
        from a DROP + ADD with them (pipeline.schema_apply). The publisher's own baselines follow the change
        (stored with :meth:`remember_baselines` once the records are flushed)."""
        if not txn.schema_changes:
            return txn
        from pg2edge.pipeline import schema_model

        known = {**schema_model.read_baselines(self.db), **self._baselines}
        by_oid = {int(r["oid"]): (q, r) for q, r in known.items() if r is not None}
        out = []
        for change in txn.schema_changes:
            before: dict[str, Any] = {}
            for oid, d in schema_model.describe(change).items():
                if oid in by_oid:
                    old, record = by_oid[oid]
                    before[old] = record
                    if old != d.table.qualified:
                        self._baselines[old] = None
                record = schema_model.baseline_record(d)
                self._baselines[d.table.qualified] = record
                by_oid[oid] = (d.table.qualified, record)
            for dropped in change.dropped:
                if dropped.get("type") == "table":
                    self._baselines[f"{dropped.get('schema')}.{dropped.get('name')}"] = None
            out.append(replace(change, catalog={**change.catalog, "baselines": before}))
        return replace(txn, schema_changes=tuple(out))

    def remember_baselines(self) -> None:
        """After the records were flushed: store the baselines of the published DDL (caller's transaction)."""
        from pg2edge.pipeline import schema_model

        for qualified, record in self._baselines.items():
            if record is None:
                self.db.execute(f"DELETE FROM {quote_ident(state.STATE_TABLE)} WHERE scope = ? AND name = ?",
                                (schema_model.BASELINE_SCOPE, qualified))
            else:
                schema_model.write_baseline(self.db, qualified, record)
        self._baselines = {}

    def remember(self, doc: Mapping[str, Any]) -> None:
        """After the record was flushed: store the shapes it published (inside the caller's transaction)."""
        for t in doc["model"]["tables"]:
            table = table_from_json(t)
            self.shapes[table.qualified] = table_shape(table)
        state.write_record(self.db, SCOPE, NAME, {"shapes": self.shapes, "selection": doc["selection"]})


# -- the replica's side ----------------------------------------------------------------------
def check(doc: Mapping[str, Any]) -> None:
    """Refuse a record this version cannot read (by name)."""
    v = doc.get("v")
    if not isinstance(v, int) or v > VERSION:
        raise SchemaRecordError(f"schema record format version {v!r} is newer than this pg2edge reads ({VERSION}): "
                                "upgrade pg2edge on this replica")
    for key in ("publication", "selection", "translate", "model"):
        if key not in doc:
            raise SchemaRecordError(f"schema record has no {key!r}")


def merge(stored: Mapping[str, Any] | None, doc: Mapping[str, Any]) -> dict[str, Any]:
    """The replica's whole schema after ``doc``: a snapshot record replaces it, a relation record updates tables."""
    if stored is None or doc.get("reason") == "snapshot":
        return {k: v for k, v in doc.items() if k != "reason"}
    tables = {f"{t['schema']}.{t['name']}": t for t in stored["model"]["tables"]}
    for t in doc["model"]["tables"]:
        tables[f"{t['schema']}.{t['name']}"] = t
    enums = {f"{e['schema']}.{e['name']}": e for e in [*stored["model"]["enums"], *doc["model"]["enums"]]}
    domains = {f"{d['schema']}.{d['name']}": d for d in [*stored["model"]["domains"], *doc["model"]["domains"]]}
    return {**stored, "selection": doc["selection"], "translate": doc["translate"],
            "model": {"tables": list(tables.values()), "enums": list(enums.values()),
                      "domains": list(domains.values())}}


def model_of(doc: Mapping[str, Any]) -> Schema:
    model = doc["model"]
    return Schema(tables=tuple(model_from_json(Table, t) for t in model["tables"]),
                  enums=tuple(model_from_json(Enum, e) for e in model["enums"]),
                  domains=tuple(model_from_json(Domain, d) for d in model["domains"]))


def options_of(doc: Mapping[str, Any]) -> TranslateConfig:
    return TranslateConfig(**doc["translate"])


class TopicEncoder:
    """A table's codec built from schema records (no source access); :meth:`update` follows a new shape."""

    def __init__(self, table: Table, options: TranslateConfig) -> None:
        self.options = options
        self.update(table)

    def update(self, table: Table) -> None:
        self.table = table
        self.codec = row_codec(table, options=self.options)

    def encode(self, column: str, text: str | None) -> Any:
        return self.codec.encode_text(column, text)

    def encode_many(self, columns: tuple[str, ...], values: Sequence[str | None]) -> tuple[Any, ...]:
        """:meth:`encode` of each column, at once (the codec's per-column-set encoder)."""
        fn = self.codec.columns_encoder(columns)
        if fn is None:  # a column the codec does not know: encode_text names it
            return tuple(self.codec.encode_text(c, v) for c, v in zip(columns, values))
        return fn(values)

    def skip(self, column: str) -> bool:
        return column in self.codec.skipped

    def column_type(self, column: RelColumn) -> str:
        if column.name in self.codec.rules:
            return str(self.codec.rules[column.name].decl)
        return str(self.codec.sqlite_type_for_relation_column(column))


class TopicSchema:
    """The tables and codecs of a replica, as the topic's schema records describe them."""

    def __init__(self) -> None:
        self.encoders: dict[Key, TopicEncoder] = {}
        self.mappings: dict[Key, TableMapping] = {}

    def apply(self, db: apsw.Connection, doc: Mapping[str, Any], *, say: Any = log.info) -> dict[Key, TableMapping]:
        """Create the tables ``db`` lacks (the DDL planner, the record's options) and (re)build every codec.
        Runs inside the caller's transaction when one is open."""
        model, options = model_of(doc), options_of(doc)
        existing = {r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        missing = tuple(t for t in model.tables if sqlite_table_name(t.schema, t.name) not in existing)
        if missing:
            plan = plan_ddl(Schema(tables=missing, enums=model.enums, domains=model.domains), options=options)
            for finding in plan.findings:
                say(f"schema finding: {finding}")
            for statement in plan.statements:
                db.execute(statement)
        for table in model.tables:
            key = (table.schema, table.name)
            enc = self.encoders.get(key)
            if enc is None or enc.options != options:
                enc = self.encoders[key] = TopicEncoder(table, options)
            else:
                enc.update(table)
            self.mappings[key] = TableMapping(target=sqlite_table_name(table.schema, table.name), encode=enc.encode,
                                              column_type=enc.column_type, encode_many=enc.encode_many,
                                              reshape=enc.update,  # schema changes
                                              skip=enc.skip if enc.codec.skipped else None)  # None: no filtering
        return self.mappings
