"""The schema model: what introspection (or a dump) found, as frozen dataclasses.

Every later step (type rules, DDL, codec, analyzer, pipeline) reads this model
and never the catalog directly. Names are PostgreSQL's, unquoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pg2edge.translators.naming import sqlite_table_name


@dataclass(frozen=True, slots=True)
class Domain:
    """A domain: its base type and its CHECK expressions (PostgreSQL text, VALUE as the operand)."""

    schema: str
    name: str
    base_type: str  # format_type() of the base, e.g. 'numeric(12,2)'
    base_type_name: str  # pg_type.typname of the base, e.g. 'numeric'
    not_null: bool = False
    default: str | None = None
    checks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Enum:
    schema: str
    name: str
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Column:
    """One column. ``type_name`` is the base type's typname ('int4', 'numeric', 'timestamptz').

    For arrays ``type_name`` is the array typname ('_int4') and ``element_type``
    the element's base typname; for domains ``type_name`` is the domain's base
    typname and ``domain`` describes the domain; for enums ``enum_labels`` is set.
    """

    name: str
    pg_type: str
    type_name: str
    type_oid: int = 0
    typmod: int = -1
    not_null: bool = False
    default: str | None = None
    identity: str | None = None  # 'a' always, 'd' by default
    generated: str | None = None  # stored generation expression
    is_array: bool = False
    array_ndims: int = 0
    element_type: str | None = None
    enum_labels: tuple[str, ...] | None = None
    domain: Domain | None = None
    sequence: str | None = None  # 'schema.seq' behind a nextval() default or identity

    @property
    def base_type(self) -> str:
        """format_type() of the storage type: the domain's base type, else ``pg_type``."""
        return self.domain.base_type if self.domain else self.pg_type

    @property
    def kind(self) -> str:
        """The key the type rules are looked up by: 'array', 'enum' or the base typname."""
        if self.is_array:
            return "array"
        if self.enum_labels is not None:
            return "enum"
        return self.type_name

    @property
    def numeric_precision_scale(self) -> tuple[int, int] | None:
        """(precision, scale) of a numeric with a typmod, else None."""
        if self.type_name != "numeric" or self.typmod < 4:
            return None
        mod = self.typmod - 4
        return (mod >> 16) & 0xFFFF, mod & 0xFFFF


@dataclass(frozen=True, slots=True)
class Unique:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    expression: str  # PostgreSQL text without the CHECK keyword, e.g. '(price > (0)::numeric)'


@dataclass(frozen=True, slots=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str = "NO ACTION"
    on_update: str = "NO ACTION"
    deferrable: bool = False
    initially_deferred: bool = False

    @property
    def ref_qualified(self) -> str:
        return f"{self.ref_schema}.{self.ref_table}"


@dataclass(frozen=True, slots=True)
class Index:
    """A non-constraint index. ``keys`` are column names or expressions (PostgreSQL text)."""

    name: str
    keys: tuple[str, ...]
    unique: bool = False
    predicate: str | None = None
    expressions: tuple[bool, ...] = ()  # per key: True when the key is an expression
    method: str = "btree"
    descending: tuple[bool, ...] = ()


@dataclass(frozen=True, slots=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    uniques: tuple[Unique, ...] = ()
    checks: tuple[Check, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    indexes: tuple[Index, ...] = ()
    partitioned: bool = False
    partitions: tuple[str, ...] = ()  # qualified names of the leaf partitions folded in
    replica_identity: str = "d"  # d default, n nothing, f full, i index
    sequences: tuple[str, ...] = ()  # qualified sequences behind defaults / identities

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.qualified} has no column {name!r}")


@dataclass(frozen=True, slots=True)
class View:
    schema: str
    name: str
    definition: str
    materialized: bool = False
    columns: tuple[tuple[str, str], ...] = ()  # (name, format_type) in order

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class Schema:
    tables: tuple[Table, ...] = ()
    enums: tuple[Enum, ...] = ()
    domains: tuple[Domain, ...] = ()
    views: tuple[View, ...] = ()
    findings: tuple[object, ...] = field(default=())  # Finding, from parse_dump

    def column_types(self) -> dict[str, dict[str, str]]:
        """table -> column -> PostgreSQL type, for ``translate_sql(column_types=...)`` (public tables
        by bare name, others by their SQLite name ``schema_table``)."""

        types = {sqlite_table_name(t.schema, t.name): {c.name: c.pg_type for c in t.columns} for t in self.tables}
        for view in self.views:
            types.setdefault(sqlite_table_name(view.schema, view.name), dict(view.columns))
        return types

    def enum_labels(self) -> dict[str, list[str]]:
        """enum type name (unqualified) -> labels in declaration order, for ``translate_sql(enums=...)``."""
        return {e.name: list(e.labels) for e in self.enums}

    def table(self, qualified: str) -> Table:
        for table in self.tables:
            if table.qualified == qualified or (table.schema == "public" and table.name == qualified):
                return table
        raise KeyError(f"no table {qualified!r} in the schema")
