"""RowCodec: one table's encoders, in column order, with the inexact-value policy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pg2edge.config import TranslateConfig
from pg2edge.translators.codec.base import CodecError, Inexact
from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.schema import Column, Table

if TYPE_CHECKING:
    from pg2edge.translators.typemap import TypeRule

log = logging.getLogger(__name__)

_MAX_SHOWN = 80

# Built-in type oids -> typname, for columns described only by oid (pgoutput Relation messages).
BUILTIN_TYPES = {
    16: "bool", 17: "bytea", 18: "char", 19: "name", 20: "int8", 21: "int2", 23: "int4", 25: "text", 26: "oid",
    114: "json", 142: "xml", 600: "point", 650: "cidr", 700: "float4", 701: "float8", 774: "macaddr8",
    790: "money", 829: "macaddr", 869: "inet", 1042: "bpchar", 1043: "varchar", 1082: "date", 1083: "time",
    1114: "timestamp", 1184: "timestamptz", 1186: "interval", 1266: "timetz", 1560: "bit", 1562: "varbit",
    1700: "numeric", 2950: "uuid", 3614: "tsvector", 3802: "jsonb", 3904: "int4range", 3926: "int8range",
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "...'"


class RowCodec:
    """Encode one table's rows. ``columns``: the SQLite column names that are copied, in table order."""

    def __init__(self, table: Table, rules: dict[str, TypeRule], *, options: TranslateConfig) -> None:
        self.table = table
        self.options = options
        self.rules = rules
        self.columns: tuple[str, ...] = tuple(c.name for c in table.columns if c.name in rules)
        self.skipped: tuple[str, ...] = tuple(c.name for c in table.columns if c.name not in rules)
        self.inexact = options.inexact
        self._text = {name: rules[name].text for name in self.columns}
        self._python = {name: rules[name].python for name in self.columns}
        self._row_text = [rules[name].text for name in self.columns]
        self._by_columns: dict[tuple[str, ...], Callable[[Sequence[str | None]], tuple[Any, ...]]] = {}
        self._found: dict[tuple[str, str], list[Any]] = {}  # (column, code) -> [count, first value, reason]

    # -- findings -------------------------------------------------------------------------------------
    @property
    def findings(self) -> list[Finding]:
        """One Finding per (column, kind of inexact value) met so far, with a count and the first value."""
        out = []
        for (column, code), (count, value, reason) in self._found.items():
            out.append(Finding(Level.WARN, code, f"{self.table.qualified}.{column}",
                               f"{reason} (value {_shown(value)}; {count} value(s))"))
        return out

    def _inexact(self, column: str, value: Any, exc: Inexact) -> Any:
        if self.inexact == "raise":
            raise CodecError(f"{self.table.qualified}.{column}: value {_shown(value)}: {exc.reason}",
                             table=self.table.qualified, column=column, value=value, code=exc.code)
        key = (column, exc.code)
        seen = self._found.get(key)
        if seen is None:
            self._found[key] = [1, value, exc.reason]
            log.warning("%s.%s: value %s: %s", self.table.qualified, column, _shown(value), exc.reason)
        else:
            seen[0] += 1
        return exc.substitute

    def _invalid(self, column: str, value: Any, exc: Exception) -> CodecError:
        return CodecError(f"{self.table.qualified}.{column}: cannot encode value {_shown(value)}: {exc}",
                          table=self.table.qualified, column=column, value=value)

    def _encoder(self, table: dict[str, Any], column: str) -> Any:
        try:
            return table[column]
        except KeyError:
            why = "is not copied (see the schema findings)" if column in self.skipped else "does not exist"
            raise CodecError(f"{self.table.qualified}.{column} {why}", table=self.table.qualified,
                             column=column) from None

    # -- encoding -------------------------------------------------------------------------------------
    def encode_text(self, column_name: str, text: str | None) -> Any:
        """PostgreSQL text (COPY text after unescaping, pgoutput) -> SQLite value."""
        if text is None:
            return None
        encode = self._encoder(self._text, column_name)
        try:
            return encode(text)
        except Inexact as exc:
            return self._inexact(column_name, text, exc)
        except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
            raise self._invalid(column_name, text, exc) from exc

    def encode_row_text(self, values: Sequence[str | None]) -> tuple[Any, ...]:
        """A whole row of PostgreSQL text values, in ``columns`` order."""
        try:
            return tuple([None if v is None else f(v) for f, v in zip(self._row_text, values, strict=True)])
        except Exception:  # slow path: find the column, apply the policy, name it
            if len(values) != len(self.columns):
                raise CodecError(f"{self.table.qualified}: row has {len(values)} values for "
                                 f"{len(self.columns)} columns", table=self.table.qualified) from None
            return tuple(self.encode_text(c, v) for c, v in zip(self.columns, values))

    def columns_encoder(self, columns: tuple[str, ...]) -> Callable[[Sequence[str | None]], tuple[Any, ...]] | None:
        """``encode_text`` of each of ``columns`` at once, as one function of the values (cached per column tuple):
        the same values, errors and inexact-value policy (an exception retries the row column by column through
        ``encode_text``). None when a column has no rule here (not copied, or unknown)."""
        fn = self._by_columns.get(columns)
        if fn is not None:
            return fn
        text = self._text
        if any(c not in text for c in columns):
            return None
        funcs = tuple(text[c] for c in columns)
        encode_text = self.encode_text

        def encode(values: Sequence[str | None]) -> tuple[Any, ...]:
            try:
                return tuple([None if v is None else f(v) for f, v in zip(funcs, values)])
            except Exception:  # slow path: the column's name, the policy
                return tuple([encode_text(c, v) for c, v in zip(columns, values)])

        self._by_columns[columns] = encode
        return encode

    def encode_python(self, column_name: str, value: Any) -> Any:
        """A psycopg-loaded Python value -> the same SQLite value encode_text gives for its text."""
        if value is None:
            return None
        encode = self._encoder(self._python, column_name)
        try:
            return encode(value)
        except Inexact as exc:
            return self._inexact(column_name, value, exc)
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, AttributeError) as exc:
            raise self._invalid(column_name, value, exc) from exc

    def sqlite_type_for_relation_column(self, column: Any) -> str:
        """Declared SQLite type for a column known only by pgoutput (name, type_oid, type_modifier)."""
        from pg2edge.translators.typemap import rule_for  # typemap registers this codec's encoders: a cycle

        name = BUILTIN_TYPES.get(getattr(column, "type_oid", 0), "text")
        col = Column(name=column.name, pg_type=name, type_name=name, type_oid=getattr(column, "type_oid", 0),
                     typmod=getattr(column, "type_modifier", -1))
        return rule_for(col, options=self.options).declaration


def row_codec(table: Table, *, options: TranslateConfig | None = None) -> RowCodec:
    """The codec of ``table`` under ``options`` (columns whose rule says not copied are left out)."""
    from pg2edge.translators.typemap import rule_for  # typemap registers this codec's encoders: a cycle

    options = options or TranslateConfig()
    rules = {}
    for column in table.columns:
        if column.generated is not None:
            continue
        rule = rule_for(column, options=options)
        if rule.copied:
            rules[column.name] = rule
    return RowCodec(table, rules, options=options)
