"""``vector @@ query`` -> an FTS5 MATCH, when the schema was translated with ``fts5 = true``.

The left side is a tsvector column the FTS5 index stands for, or
``to_tsvector([config,] text columns)`` over indexed columns; the right side
is ``to_tsquery``/``plainto_tsquery``/``phraseto_tsquery`` of a literal. The
result is ``<alias>.<pk> IN (SELECT rowid FROM <table>_fts WHERE <table>_fts
MATCH '<query>')`` (a column filter ``{col1 col2} : (...)`` when only some
indexed columns are searched). Anything else stays an error finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlglot import exp

from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.fts import TsQueryError, phrase_to_fts5, plain_to_fts5, tsquery_to_fts5
from pg2edge.translators.query.columns import _scope_sources
from pg2edge.translators.query.infer import TypeContext
from pg2edge.translators.query.tree import Rewrite, excerpt, literal_text, string

_QUERIES = {"to_tsquery": tsquery_to_fts5, "plainto_tsquery": plain_to_fts5, "phraseto_tsquery": phrase_to_fts5}


def _query_text(node: exp.Expression) -> tuple[str | None, str]:
    """(FTS5 query or None, reason)."""
    if not isinstance(node, exp.Anonymous) or str(node.this).lower() not in _QUERIES:
        return None, "the query side is not to_tsquery/plainto_tsquery/phraseto_tsquery"
    args = node.expressions
    text = literal_text(args[-1]) if args and isinstance(args[-1], exp.Literal) else None
    if text is None:
        return None, "the tsquery is not a literal (its syntax is converted when translating)"
    try:
        return _QUERIES[str(node.this).lower()](text), ""
    except TsQueryError as exc:
        return None, str(exc)


def _index_of(column: exp.Column, fts: Mapping[str, Mapping[str, Any]]) -> tuple[str, Mapping[str, Any]] | None:
    """(alias, index) of the table ``column`` belongs to, when that table has an FTS5 index."""
    candidates = []
    for alias, source in _scope_sources(column):
        if not isinstance(source, exp.Table) or source.name not in fts:
            continue
        if column.table and alias.lower() != column.table.lower():
            continue
        index = fts[source.name]
        if column.name in index["columns"] or column.name in index["vectors"]:
            candidates.append((alias, index))
    return candidates[0] if len(candidates) == 1 else None


def fulltext_to_fts5(context: TypeContext, found: list[Finding]) -> Rewrite:
    """Build the rewrite (it needs the FTS5 indexes the replica recorded)."""

    def refuse(node: exp.Expression, reason: str) -> exp.Expression:
        finding = Finding(Level.ERROR, "fulltext", excerpt(node), f"no FTS5 form: {reason}")
        if finding not in found:
            found.append(finding)
        return node

    def rewrite(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.MatchAgainst) or not context.fts:
            return node
        query, reason = _query_text(node.this)
        if query is None:
            return refuse(node, reason)
        vector = node.expressions[0] if len(node.expressions) == 1 else None
        if isinstance(vector, exp.Anonymous) and str(vector.this).lower() == "to_tsvector":
            columns = list(vector.find_all(exp.Column))
        elif isinstance(vector, exp.Column):
            columns = [vector]
        else:
            return refuse(node, "the vector side is not a tsvector column or to_tsvector(columns)")
        located = {(_index_of(c, context.fts) or ("", {}))[0] for c in columns}
        if not columns or "" in located or len(located) != 1:
            return refuse(node, "the searched columns are not in one table's FTS5 index")
        alias, index = _index_of(columns[0], context.fts) or ("", {})
        names = [c.name for c in columns if c.name in index["columns"]]
        if names and set(names) != set(index["columns"]):
            query = "{" + " ".join(names) + "} : (" + query + ")"
        fts_table = exp.to_identifier(str(index["fts_table"]), quoted=True)
        match = exp.Match(this=exp.Column(this=fts_table.copy()), expression=string(query))
        inner = exp.select(exp.column("rowid")).from_(exp.Table(this=fts_table)).where(match)
        key = exp.Column(this=exp.to_identifier(str(index["key"]), quoted=True),
                         table=exp.to_identifier(alias, quoted=True))
        note = Finding(Level.INFO, "fulltext_fts5", excerpt(node),
                       f"searched in FTS5 table {index['fts_table']}: porter stemming without stop words, close to "
                       "but not the same as PostgreSQL's english configuration; no ranking")
        if note not in found:
            found.append(note)
        return exp.In(this=key, query=exp.Subquery(this=inner))

    rewrite.__name__ = "fulltext_to_fts5"
    return rewrite
