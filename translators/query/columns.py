"""Rewrites and checks that need the column types (table -> column -> PostgreSQL type).

Numeric values are stored as canonical TEXT (exact), so a comparison,
arithmetic, an aggregate or an ORDER BY on a numeric column must read it as
REAL; an enum is stored as its label, so ordering by it sorts by label.
"""

from __future__ import annotations

from sqlglot import exp

from pg2edge.translators.query.tree import Rewrite

ColumnTypes = dict[str, dict[str, str]]

NUMERIC_CONTEXTS: tuple[type[exp.Expression], ...] = (
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.In,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg,
    exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Ordered, exp.Round, exp.Abs,
    exp.Least, exp.Greatest, exp.Ceil, exp.Floor,
)
INTEGER_TYPES = frozenset({exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT,
                           exp.DataType.Type.TINYINT})
ORDER_CONTEXTS: tuple[type[exp.Expression], ...] = (
    exp.Ordered, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.Min, exp.Max,
)
_BUILTIN_PREFIXES = (
    "smallint", "int", "bigint", "serial", "bigserial", "numeric", "decimal", "real", "double", "float",
    "money", "text", "varchar", "character", "char", "bpchar", "name", "citext", "uuid", "bool",
    "date", "time", "interval", "json", "bytea", "inet", "cidr", "macaddr", "oid", "xml",
    "tsvector", "tsquery", "bit", "point", "line", "box", "polygon", "circle", "path", "lseg",
)


def in_numeric_context(column: exp.Column) -> bool:
    """Compared, computed, aggregated, ordered, or cast to an integer (PostgreSQL rounds, so read as REAL first)."""
    parent = column.parent
    if isinstance(parent, exp.Cast):
        return parent.to.this in INTEGER_TYPES
    return isinstance(parent, NUMERIC_CONTEXTS)


def is_numeric_type(pg_type: str) -> bool:
    t = pg_type.strip().lower()
    return t.startswith(("numeric", "decimal", "money")) and not t.endswith("]")


def is_user_defined_type(pg_type: str) -> bool:
    """An enum (or other user type): not a builtin and not an array."""
    t = pg_type.strip().lower().split(".")[-1].strip('"')
    return not t.endswith("]") and not t.startswith(_BUILTIN_PREFIXES)


def _ctes(node: exp.Expression) -> dict[str, exp.Expression]:
    """CTE name -> its query, for every WITH enclosing ``node``."""
    found: dict[str, exp.Expression] = {}
    current: exp.Expr | None = node
    while current is not None:
        with_ = current.args.get("with_") or current.args.get("with")
        if isinstance(with_, exp.With):
            for cte in with_.expressions:
                found.setdefault(cte.alias_or_name.lower(), cte.this)
        current = current.parent
    return found


def _scope_sources(column: exp.Column) -> list[tuple[str, exp.Expression]]:
    """(alias, source) pairs visible to ``column``: its SELECT's FROM/JOINs, then the enclosing ones.

    A source is an ``exp.Table`` or, for a derived table or CTE, the query that defines it."""
    found: list[tuple[str, exp.Expression]] = []
    ctes = _ctes(column)
    node: exp.Expr | None = column
    while node is not None:
        if isinstance(node, (exp.Select, exp.Update, exp.Delete)):
            sources = []
            for key in ("from_", "from", "this"):
                part = node.args.get(key)
                if isinstance(part, exp.From):
                    sources.append(part.this)
                elif isinstance(part, exp.Table) and not isinstance(node, exp.Select):
                    sources.append(part)
            sources += [j.this for j in node.args.get("joins") or []]
            for source in sources:
                if isinstance(source, exp.Table) and source.name:
                    cte = ctes.get(source.name.lower()) if not source.db else None
                    found.append((source.alias_or_name, cte if cte is not None else source))
                elif isinstance(source, exp.Subquery) and source.alias:
                    found.append((source.alias, source.this))
        node = node.parent
    return found


def _derived_type(query: exp.Expression, name: str, column_types: ColumnTypes, depth: int) -> str | None:
    """The type of output column ``name`` of a CTE / derived table, when it is a plain column."""
    while isinstance(query, (exp.Union, exp.Except, exp.Intersect)):
        query = query.this
    if not isinstance(query, exp.Select) or depth > 8:
        return None
    for projection in query.expressions:
        if projection.alias_or_name.lower() == name:
            inner = projection.unalias()
            return column_type(inner, column_types, depth + 1) if isinstance(inner, exp.Column) else None
    return None


def column_type(column: exp.Column, column_types: ColumnTypes, depth: int = 0) -> str | None:
    """The PostgreSQL type of ``column`` when it resolves to exactly one known table (or CTE/derived) column."""
    lowered = {t.lower(): {c.lower(): ty for c, ty in cols.items()} for t, cols in column_types.items()}
    name = column.name.lower()
    scope = _scope_sources(column)
    if column.table:
        sources = [source for alias, source in scope if alias.lower() == column.table.lower()][:1]
        if not sources:
            sources = [exp.to_table(column.table)]
    else:
        sources = [source for _, source in scope]
    types = set()
    for source in sources:
        if isinstance(source, exp.Table):
            found = lowered.get(source.name.lower(), {}).get(name)
        else:
            found = _derived_type(source, name, column_types, depth)
        if found is not None:
            types.add(found)
    return types.pop() if len(types) == 1 else None


def numeric_columns_to_real(column_types: ColumnTypes) -> Rewrite:
    """Build the rewrite: a numeric column compared, computed, aggregated or ordered -> ``CAST(col AS REAL)``."""

    def rewrite(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Column) or not in_numeric_context(node):
            return node
        pg_type = column_type(node, column_types)
        if pg_type is None or not is_numeric_type(pg_type):
            return node
        return exp.Cast(this=node.copy(), to=exp.DataType.build("REAL"))

    rewrite.__name__ = "numeric_columns_to_real"
    return rewrite
