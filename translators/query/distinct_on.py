"""DISTINCT ON -> ROW_NUMBER() in a subquery, keeping the outer ORDER BY, LIMIT and OFFSET."""

from __future__ import annotations

from sqlglot import exp

ROW_NUMBER = "_row_number"
SUBQUERY = "_distinct_on"


def _output_name(projection: exp.Expression, index: int) -> str:
    name = projection.alias_or_name
    return name if name and name != "*" else f"_col{index}"


def rewrite_distinct_on(select: exp.Select) -> exp.Expression:
    """The rewrite proper (see ``rewrites.distinct_on_to_row_number``)."""
    inner = select.copy()
    keys = [k.copy() for k in inner.args["distinct"].args["on"].expressions]
    order = inner.args.get("order")
    limit, offset = inner.args.get("limit"), inner.args.get("offset")
    for arg in ("distinct", "order", "limit", "offset"):
        inner.set(arg, None)

    star = any(isinstance(p, exp.Star) or (isinstance(p, exp.Column) and p.is_star) for p in inner.expressions)
    taken: set[str] = set()
    inner_projections: list[exp.Expr] = []  # sqlglot's builders (alias_) return the Expr base type
    outer_projections: list[exp.Expr] = []
    by_sql: dict[str, str] = {}
    for i, projection in enumerate(inner.expressions):
        if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column) and projection.is_star):
            inner_projections.append(projection.copy())
            continue
        name = _output_name(projection, i)
        alias = name
        while alias.lower() in taken:
            alias = f"{alias}_{i}"
        taken.add(alias.lower())
        body = projection.this if isinstance(projection, exp.Alias) else projection
        inner_projections.append(exp.alias_(body.copy(), alias, quoted=False))
        by_sql[body.sql()] = alias
        by_sql.setdefault(name, alias)
        out = exp.column(alias)
        outer_projections.append(out if alias == name else exp.alias_(out, name))

    outer_order: list[exp.Expression] = []
    for k, ordered in enumerate(order.expressions if order else []):
        expr = ordered.this
        key = expr.name if isinstance(expr, exp.Column) and not expr.table and expr.name in by_sql else expr.sql()
        if key in by_sql:
            alias = by_sql[key]
        else:
            alias = f"_order{k}"
            inner_projections.append(exp.alias_(expr.copy(), alias))
        outer_ordered = ordered.copy()
        outer_ordered.set("this", exp.column(alias))
        outer_order.append(outer_ordered)

    window = exp.Window(
        this=exp.RowNumber(),
        partition_by=keys,
        order=order.copy() if order else None,
    )
    inner_projections.append(exp.alias_(window, ROW_NUMBER))
    inner.set("expressions", inner_projections)

    source = exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(SUBQUERY)))
    projections = [exp.Star()] if star or not outer_projections else outer_projections
    outer = exp.select(*projections).from_(source).where(exp.EQ(this=exp.column(ROW_NUMBER), expression=exp.Literal.number(1)))
    if outer_order:
        outer.set("order", exp.Order(expressions=outer_order))
    if limit is not None:
        outer.set("limit", limit.copy())
    if offset is not None:
        outer.set("offset", offset.copy())
    return outer
