"""Full-text search with ``[translate] fts5 = true``: FTS5 tables for what PostgreSQL indexes, and tsquery -> MATCH.

A table gets an external-content FTS5 table ``<table>_fts`` (porter stemmer,
unicode61) over the text columns that its tsvector columns are generated from
(``GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || body))``) or
that its ``to_tsvector(...)`` expression indexes read; triggers keep it in
step with every insert, update and delete (snapshot, stream, application
writes). The table needs an integer primary key (the FTS rowid). The query
translator turns ``x @@ to_tsquery('...')`` into ``pk IN (SELECT rowid FROM
<table>_fts WHERE <table>_fts MATCH '...')``.

FTS5's porter stemmer without stop words approximates PostgreSQL's
``english`` configuration: the translation carries an info finding saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.quoting import quote_ident
from pg2edge.translators.schema import Table

_INTEGERS = ("int2", "int4", "int8")


@dataclass(frozen=True)
class FtsIndex:
    table: str  # SQLite name of the content table
    fts_table: str
    key: str  # integer primary key = FTS rowid
    columns: tuple[str, ...]  # indexed text columns
    vectors: tuple[str, ...]  # tsvector columns (not copied) this index stands for

    def as_dict(self) -> dict[str, object]:
        return {"table": self.table, "fts_table": self.fts_table, "key": self.key, "columns": list(self.columns),
                "vectors": list(self.vectors)}


def _tsvector_columns(expression: str) -> list[str]:
    """Column names read by the to_tsvector(...) in ``expression`` (PostgreSQL text)."""
    try:
        tree = sqlglot.parse_one(expression, read="postgres")
    except (ParseError, TokenError):
        return []
    calls = [a for a in tree.find_all(exp.Anonymous) if str(a.this).lower() == "to_tsvector"]
    return list(dict.fromkeys(c.name for call in calls for c in call.find_all(exp.Column)))


def plan_fts(table: Table, text_columns: set[str]) -> tuple[FtsIndex | None, list[str], list[Finding]]:
    """The FTS5 index of ``table`` (or None), its statements and findings."""
    vectors = [c.name for c in table.columns if c.type_name == "tsvector"]
    columns: list[str] = []
    for col in table.columns:
        if col.type_name == "tsvector" and col.generated:
            columns += _tsvector_columns(col.generated)
    for pg_index in table.indexes:
        for key, is_expr in zip(pg_index.keys, pg_index.expressions or (False,) * len(pg_index.keys)):
            if is_expr and "to_tsvector" in key:
                columns += _tsvector_columns(f"SELECT {key}")
    columns = [c for c in dict.fromkeys(columns) if c in text_columns]
    if not columns:
        if vectors:
            return None, [], [Finding(Level.WARN, "fts5-not-planned", table.qualified,
                                      "its tsvector columns are not generated from text columns of the table")]
        return None, [], []
    pk = table.primary_key
    if len(pk) != 1 or table.column(pk[0]).type_name not in _INTEGERS:
        return None, [], [Finding(Level.WARN, "fts5-not-planned", table.qualified,
                                  "FTS5 needs an integer primary key (the FTS rowid)")]
    name = sqlite_table_name(table.schema, table.name)
    index = FtsIndex(table=name, fts_table=f"{name}_fts", key=pk[0], columns=tuple(columns), vectors=tuple(vectors))
    fts, t, key = quote_ident(index.fts_table), quote_ident(name), quote_ident(index.key)
    cols = ", ".join(quote_ident(c) for c in columns)
    new = ", ".join(f"new.{quote_ident(c)}" for c in columns)
    old = ", ".join(f"old.{quote_ident(c)}" for c in columns)
    literal = "'" + name.replace("'", "''") + "'"
    key_literal = "'" + index.key.replace("'", "''") + "'"
    statements = [
        f"CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content={literal}, content_rowid={key_literal}, "
        "tokenize='porter unicode61')",
        f"CREATE TRIGGER {quote_ident(name + '_fts_insert')} AFTER INSERT ON {t} BEGIN "
        f"INSERT INTO {fts} (rowid, {cols}) VALUES (new.{key}, {new}); END",
        f"CREATE TRIGGER {quote_ident(name + '_fts_delete')} AFTER DELETE ON {t} BEGIN "
        f"INSERT INTO {fts} ({fts}, rowid, {cols}) VALUES ('delete', old.{key}, {old}); END",
        f"CREATE TRIGGER {quote_ident(name + '_fts_update')} AFTER UPDATE ON {t} BEGIN "
        f"INSERT INTO {fts} ({fts}, rowid, {cols}) VALUES ('delete', old.{key}, {old}); "
        f"INSERT INTO {fts} (rowid, {cols}) VALUES (new.{key}, {new}); END",
    ]
    note = Finding(Level.INFO, "fts5-index", table.qualified,
                   f"full-text search over {', '.join(columns)} in FTS5 table {index.fts_table} (porter stemmer, "
                   "no stop words: close to, not the same as, PostgreSQL's english configuration)")
    return index, statements, [note]


# -- tsquery -> FTS5 MATCH ------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<op>[&|!()])|(?P<phrase><->)|(?P<word>[^\s&|!()<>:']+)(?P<prefix>:\*)?)")


class TsQueryError(ValueError):
    """A tsquery this translation has no FTS5 form for."""


def _quote(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def tsquery_to_fts5(text: str) -> str:
    """``to_tsquery`` syntax (``a & (b | c:*) & !d``, ``a <-> b``) as an FTS5 query."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise TsQueryError(f"cannot read the tsquery at {text[pos:]!r}")
        if m.group("op"):
            tokens.append(("op", m.group("op")))
        elif m.group("phrase"):
            tokens.append(("op", "<->"))
        else:
            tokens.append(("word", _quote(m.group("word").lower()) + ("*" if m.group("prefix") else "")))
        pos = m.end()
    parser = _Parser(tokens)
    out = parser.expr_or()
    if parser.pos != len(tokens):
        raise TsQueryError(f"unexpected {tokens[parser.pos][1]!r} in the tsquery")
    return out


class _Parser:
    """PostgreSQL precedence: ! binds tightest, then <->, then &, then |."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.pos = tokens, 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def expr_or(self) -> str:
        parts = [self.expr_and()]
        while self._peek() == "|":
            self.pos += 1
            parts.append(self.expr_and())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def expr_and(self) -> str:
        positive: list[str] = []
        negative: list[str] = []
        while True:
            if self._peek() == "!":
                self.pos += 1
                negative.append(self.phrase())
            else:
                positive.append(self.phrase())
            if self._peek() != "&":
                break
            self.pos += 1
        if not positive:
            raise TsQueryError("a tsquery of only negated terms has no FTS5 form (FTS5's NOT is binary)")
        out = positive[0] if len(positive) == 1 else "(" + " AND ".join(positive) + ")"
        for term in negative:
            out = f"({out} NOT {term})"
        return out

    def phrase(self) -> str:
        parts = [self.atom()]
        while self._peek() == "<->":
            self.pos += 1
            parts.append(self.atom())
        if len(parts) == 1:
            return parts[0]
        if any(not p.startswith('"') or p.endswith("*") for p in parts):
            raise TsQueryError("<-> joins words only in this translation")
        return "(" + " + ".join(parts) + ")"  # FTS5: "a" + "b" is the phrase "a b"

    def atom(self) -> str:
        if self.pos >= len(self.tokens):
            raise TsQueryError("the tsquery ends early")
        kind, value = self.tokens[self.pos]
        self.pos += 1
        if kind == "word":
            return value
        if value == "(":
            inner = self.expr_or()
            if self._peek() != ")":
                raise TsQueryError("unbalanced parentheses in the tsquery")
            self.pos += 1
            return inner
        raise TsQueryError(f"unexpected {value!r} in the tsquery")


def plain_to_fts5(text: str) -> str:
    """``plainto_tsquery('a b')``: every word, AND-ed."""
    words = [w for w in re.split(r"[^\w]+", text.lower()) if w]
    if not words:
        raise TsQueryError("plainto_tsquery of no words")
    return " AND ".join(_quote(w) for w in words)


def phrase_to_fts5(text: str) -> str:
    """``phraseto_tsquery('a b')``: the words as one phrase."""
    words = [w for w in re.split(r"[^\w]+", text.lower()) if w]
    if not words:
        raise TsQueryError("phraseto_tsquery of no words")
    return " + ".join(_quote(w) for w in words)
